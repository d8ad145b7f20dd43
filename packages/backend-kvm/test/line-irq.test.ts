/**
 * Wired lines through the in-kernel PIC: an edge line pulses once per assert; a level line
 * (irqfd with KVM_IRQFD_FLAG_RESAMPLE) is raised again at each guest EOI while asserted, and
 * stops once deasserted.
 *
 * Guest (real mode, CS=0 at 0x1000): programs the master PIC (vectors 0x20-0x27, only IRQ 5
 * and IRQ 7 unmasked), installs real-mode handlers in the IVT and waits in `sti; hlt`.
 * IRQ 5's handler counts in BX and reports on port 0x550, IRQ 7's counts in CX and reports
 * on port 0x552; both send a non-specific EOI to the PIC. Port 0x530 = "ready".
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink, until } from './helpers/kvm.js';

const GUEST = `
.code16
  cli
  xor %ax, %ax
  mov %ax, %ds
  mov %ax, %ss
  mov $0x8000, %sp
  mov $0x11, %al
  out %al, $0x20
  mov $0x20, %al
  out %al, $0x21
  mov $0x04, %al
  out %al, $0x21
  mov $0x01, %al
  out %al, $0x21
  mov $0x5f, %al
  out %al, $0x21
  movw $irq5, 0x94
  movw $0, 0x96
  movw $irq7, 0x9c
  movw $0, 0x9e
  xor %bx, %bx
  xor %cx, %cx
  mov $0x530, %dx
  out %al, %dx
idle:
  sti
  hlt
  jmp idle
irq5:
  inc %bx
  mov %bx, %ax
  mov $0x550, %dx
  out %ax, %dx
  mov $0x20, %al
  out %al, $0x20
  iret
irq7:
  inc %cx
  mov %cx, %ax
  mov $0x552, %dx
  out %ax, %dx
  mov $0x20, %al
  out %al, $0x20
  iret
`;

describe('line interrupts', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  for (const execution of ['worker', 'inline'] as const) {
    it(`re-raises a level line at each EOI until deasserted; edge lines pulse (${execution})`, async () => {
      backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
      expect(backend.capabilities.lineIrq).toEqual({ edge: true, level: true, resample: true });
      const sink = new RecordingSink();
      backend.attach(sink);
      const level = backend.createLineIrq({ kind: 'gsi', line: 5 }, 'level');
      const edge = backend.createLineIrq({ kind: 'gsi', line: 7 }, 'edge');
      // The device stops asserting while the guest's third handler runs (before its EOI).
      sink.onAccess = (a) => {
        if (a.write && a.address === 0x550n && a.value === 3n) level.deassert();
      };
      backend.guest.load(0x1000n, assemble(GUEST, 0x1000));
      backend.guest.setEntry(0, { mode: 'real', ip: 0x1000 });
      void backend.guest.run({ execution });
      await until(() => sink.writes('pio', 0x530n).length === 1);
      level.assert();
      expect(level.asserted).toBe(true);
      await until(() => level.resamples === 3);
      expect(level.asserted).toBe(false);
      // IRQ 7 has lower priority than IRQ 5: a stray re-raise of IRQ 5 would be serviced first.
      edge.assert();
      await until(() => sink.writes('pio', 0x552n).length === 1);
      expect(sink.writes('pio', 0x550n)).toEqual([1n, 2n, 3n]);
      expect(level.resamples).toBe(3);
      expect(edge.resamples).toBe(0);
      expect(edge.asserted).toBe(false);
      // Asserting again starts a new train.
      sink.onAccess = (a) => {
        if (a.write && a.address === 0x550n && a.value === 4n) level.deassert();
      };
      level.assert();
      await until(() => level.resamples === 4);
      edge.assert();
      await until(() => sink.writes('pio', 0x552n).length === 2);
      expect(sink.writes('pio', 0x550n)).toEqual([1n, 2n, 3n, 4n]);
      await backend.guest.stop();
    });
  }

  it('refuses a second line on the same GSI, a pin outside the IOAPIC and bad triggers', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    b.createLineIrq({ kind: 'gsi', line: 10 }, 'edge');
    expect(() => b.createLineIrq({ kind: 'gsi', line: 10 }, 'level')).toThrowError(expect.objectContaining({ code: 'Exists' }) as Error);
    expect(() => b.createLineIrq({ kind: 'gsi', line: 24 }, 'edge')).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(() => b.createLineIrq({ kind: 'gsi', line: 3 }, 'pulse' as never)).toThrowError(expect.objectContaining({ code: 'Invalid' }) as Error);
    expect(b.resources().lineIrqs).toBe(1);
  });

  it('has no lines or MSI routes without an in-kernel irqchip', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1, irqchip: 'none' });
    const b = backend;
    expect(b.capabilities.lineIrq).toBe(false);
    expect(b.capabilities.maxMsiRoutes).toBe(0);
    expect(b.capabilities.signalMsi).toBe(false);
    expect(() => b.createLineIrq({ kind: 'gsi', line: 4 }, 'edge')).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
    expect(() => b.createMsiRoute()).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
    expect(() => b.signalMsi({ address: 0xfee00000n, data: 0x30 })).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
  });
});
