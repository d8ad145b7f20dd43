// The demo guest on this machine's real KVM, with kvm-run's stand-ins for the serial and edu
// functions on PCI bus 0 (BARs assigned as firmware would), and its error paths.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEMO_EDU_VECTOR,
  DEMO_ERR_DMA,
  DEMO_ERR_EDU_NO_MSI,
  DEMO_ERR_NO_EDU,
  DEMO_ERR_NO_SERIAL,
  DEMO_ERR_UART_STUCK,
  DEMO_OK,
  demoExitMessage,
  loadGuestSync,
  type GuestImage,
} from '../../src/guests/index.js';
import { KvmRunner, doneCode, field, kvmSkipReason, type KvmRun } from './kvm-run.js';

describe.skipIf(kvmSkipReason !== undefined)(`demo on KVM${kvmSkipReason ? ` (skipped: ${kvmSkipReason})` : ''}`, () => {
  let kvm: KvmRunner;
  let demo: GuestImage;
  beforeAll(() => {
    kvm = new KvmRunner();
    demo = loadGuestSync('demo', 'flat');
  });
  afterAll(() => kvm?.dispose());

  function runDemo(args: string[] = []): KvmRun & { serial: string[] } {
    const run = kvm.run(demo, args);
    expect(run.status, run.lines.join('\n') + run.stderr).toBe(0);
    return { ...run, serial: run.lines.filter((l) => l.startsWith('serial: ')).map((l) => l.slice('serial: '.length)) };
  }

  it('finds serial and edu, prints, has edu compute and DMA with MSI completions, and exits 0', () => {
    const run = runDemo();
    expect(run.serial).toEqual([
      "vmed demo guest: hello from the guest's own code (flat entry)",
      'pci 00:00.0 8086:1237 class 060000',
      'pci 00:02.0 1b36:0002 class 070002',
      'pci 00:03.0 1234:11e8 class 00ff00',
      'serial: 16550 at 00:02.0, I/O port 0xc000',
      'edu: at 00:03.0, MMIO 0xfea00000, id 0x010000ed (version 1.0)',
      'edu: liveness ok',
      `edu: MSI vector 0x${DEMO_EDU_VECTOR.toString(16)} to APIC id 0`,
      'factorial(10) = 3628800',
      'DMA ok',
      'demo done',
    ]);
    expect(doneCode(run)).toBe(DEMO_OK);
    // One MSI for the factorial, one per DMA direction.
    expect(field(run, 'stats', 'msis')).toBe(3);
  });

  it('says which entry it came through', () => {
    const run = runDemo(['-p', String(loadGuestSync('demo', 'pvh').entry)]);
    expect(run.serial[0]).toBe("vmed demo guest: hello from the guest's own code (PVH entry)");
    expect(doneCode(run)).toBe(DEMO_OK);
  });

  it('exits silently with DEMO_ERR_NO_SERIAL when no function has the serial ids', () => {
    for (const args of [['-N', 'serial'], ['-s', '1b36:0003']]) {
      const run = runDemo(args);
      expect(run.serial).toEqual([]);
      expect(doneCode(run)).toBe(DEMO_ERR_NO_SERIAL);
    }
  });

  it.each([
    [['-N', 'edu'], DEMO_ERR_NO_EDU],
    [['-F', 'edu-no-msi'], DEMO_ERR_EDU_NO_MSI],
    [['-F', 'edu-dma-corrupt'], DEMO_ERR_DMA],
  ] as const)('reports %j as error %i through the UART', (args, code) => {
    const run = runDemo([...args]);
    expect(run.serial.at(-1)).toBe(`demo failed: error ${code}: ${demoExitMessage(code)}`);
    expect(doneCode(run)).toBe(code);
    if (code === DEMO_ERR_DMA) expect(run.serial).toContain('DMA bad');
  });

  it('gives up on a UART that never drains instead of hanging', () => {
    const run = runDemo(['-F', 'uart-stuck']);
    expect(run.serial).toEqual([]);
    expect(doneCode(run)).toBe(DEMO_ERR_UART_STUCK);
  });
});
