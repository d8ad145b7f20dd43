// The benchmark loops on this machine's real KVM: each makes exactly the exits it promises,
// parameterised by entry registers (flat) or by the image header (PVH entry).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DONE_BAD_PARAMS, DONE_OK, loadGuestSync, withGuestParams } from '../../src/guests/index.js';
import { KvmRunner, doneCode, field, kvmSkipReason } from './kvm-run.js';

describe.skipIf(kvmSkipReason !== undefined)(`bench loops on KVM${kvmSkipReason ? ` (skipped: ${kvmSkipReason})` : ''}`, () => {
  let kvm: KvmRunner;
  beforeAll(() => {
    kvm = new KvmRunner();
  });
  afterAll(() => kvm?.dispose());

  const regs = (ebx: number, ecx: number, edx: number, edi?: number) =>
    ['-R', `ebx=${ebx}`, '-R', `ecx=${ecx}`, '-R', `edx=${edx}`, ...(edi === undefined ? [] : ['-R', `edi=${edi}`])];

  it('bench-mmio makes N MMIO writes of the value, then exits 0', () => {
    const run = kvm.run(loadGuestSync('bench-mmio', 'flat'), [...regs(0xfebf0000, 300, 0x55)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'stats', 'mmio_writes')).toBe(300);
    expect(field(run, 'stats', 'pio_writes')).toBe(0);
  });

  it('bench-pio makes N port writes', () => {
    const run = kvm.run(loadGuestSync('bench-pio', 'flat'), [...regs(0x3000, 300, 0x55)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'stats', 'pio_writes')).toBe(300);
  });

  it.each([
    ['an MMIO address', 0xfebf1000],
    ['a port', 0x3010],
  ])('bench-doorbell rings %s that an ioeventfd absorbs, with no exit to the runner', (_what, target) => {
    const run = kvm.run(loadGuestSync('bench-doorbell', 'flat'), [...regs(target, 300, 1), '-D', String(target)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'ioeventfd', 'count')).toBe(300);
    expect(field(run, 'stats', 'mmio_writes')).toBe(0);
    expect(field(run, 'stats', 'pio_writes')).toBe(0);
  });

  it.each([
    ['a port', 0x3020],
    ['an MMIO address', 0xfebf2000],
  ])('bench-irq makes N interrupt round trips through a doorbell at %s', (_what, target) => {
    const n = 100;
    const run = kvm.run(loadGuestSync('bench-irq', 'flat'), [...regs(target, n, 0x48), '-I', `${target}:0x48:${n}`]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'irq-echo', 'sent')).toBe(n);
    // The "ready" ring, then one per handled interrupt.
    const writes = target < 0x10000 ? field(run, 'stats', 'pio_writes') : field(run, 'stats', 'mmio_writes');
    expect(writes).toBe(n + 1);
  });

  it('bench-irq refuses a vector it cannot own', () => {
    for (const vector of [0x10, 0xfe]) {
      const run = kvm.run(loadGuestSync('bench-irq', 'flat'), [...regs(0x3020, 5, vector)]);
      expect(doneCode(run)).toBe(DONE_BAD_PARAMS);
    }
  });

  it('bench-mmio-smp has two vCPUs hammer the same address; the last to finish ends the run', () => {
    const run = kvm.run(loadGuestSync('bench-mmio-smp', 'flat'), ['-c', '2', ...regs(0xfebf0000, 300, 7)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'stats', 'mmio_writes')).toBe(600);
  });

  it('bench-mmio on two vCPUs with the default of one participant: only vCPU 0 writes', () => {
    const run = kvm.run(loadGuestSync('bench-mmio', 'flat'), ['-c', '2', ...regs(0xfebf0000, 300, 7)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'stats', 'mmio_writes')).toBe(300);
  });

  it('bench-mmio-smp entered as PVH (one vCPU) does not wait for a second participant', () => {
    const pvhEntry = loadGuestSync('bench-mmio-smp', 'pvh').entry;
    const image = withGuestParams(loadGuestSync('bench-mmio-smp', 'flat'), { ebx: 0xfebf0000, ecx: 50 });
    const run = kvm.run(image, ['-p', String(pvhEntry)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'stats', 'mmio_writes')).toBe(50);
  });

  it('takes its parameters from the image header when entered as PVH', () => {
    const pvhEntry = loadGuestSync('bench-pio', 'pvh').entry;
    const image = withGuestParams(loadGuestSync('bench-pio', 'flat'), { ebx: 0x3000, ecx: 123, edx: 1 });
    // Registers that differ from the header: the PVH entry must ignore them.
    const run = kvm.run(image, ['-p', String(pvhEntry), ...regs(0x3000, 5, 1)]);
    expect(doneCode(run)).toBe(DONE_OK);
    expect(field(run, 'stats', 'pio_writes')).toBe(123);
  });
});
