/**
 * MSI routes (eventfd + KVM_IRQFD on a routed GSI) and KVM_SIGNAL_MSI reach a 32-bit guest's
 * handler through the in-kernel LAPIC, with the contract's mask/pending semantics; the GSI
 * table refuses the route past its capacity with nothing half-made.
 *
 * Guest: handler for vector 0x40 counts in EBX and reports the count on port 0x520; handler
 * for vector 0x30 counts in ECX and reports on port 0x21; both EOI the LAPIC. After setup it
 * writes port 0x530 ("ready") and waits in `sti; hlt`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { PROLOGUE } from './helpers/guest32.js';
import { KVM_SKIP, RecordingSink, osResources, settledOsResources, until } from './helpers/kvm.js';

const GUEST = `${PROLOGUE}
  gate 0x40, handler_a
  gate 0x30, handler_b
  xor %ebx, %ebx
  xor %ecx, %ecx
  mov $0x530, %dx
  out %al, %dx
idle:
  sti
  hlt
  jmp idle
handler_a:
  inc %ebx
  mov %ebx, %eax
  mov $0x520, %dx
  out %eax, %dx
  movl $0, 0xfee000b0
  iret_emulated
handler_b:
  inc %ecx
  mov %ecx, %eax
  mov $0x521, %dx
  out %eax, %dx
  movl $0, 0xfee000b0
  iret_emulated
`;

const MSI_A = { address: 0xfee0_0000n, data: 0x40 };
const MSI_B = { address: 0xfee0_0000n, data: 0x30 };

async function startGuest(execution: 'inline' | 'worker'): Promise<{ backend: KvmBackend; sink: RecordingSink; run: Promise<unknown> }> {
  const backend = await createBackend({ mode: 'standalone', memoryMiB: 2, vcpus: 1 });
  const sink = new RecordingSink();
  backend.attach(sink);
  backend.guest.load(0x1000n, assemble(GUEST, 0x1000));
  backend.guest.setEntry(0, { mode: 'protected32', ip: 0x1000, stack: 0x8000 });
  const run = backend.guest.run({ execution });
  await until(() => sink.writes('pio', 0x530n).length === 1);
  return { backend, sink, run };
}

describe('MSI routes', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  for (const execution of ['worker', 'inline'] as const) {
    it(`delivers through irqfd, holds while masked and replays once on unmask (${execution})`, async () => {
      const started = await startGuest(execution);
      backend = started.backend;
      const { sink } = started;
      const a = backend.createMsiRoute();
      const b = backend.createMsiRoute();
      expect(a.masked).toBe(true);
      expect(a.id).toBeGreaterThanOrEqual(24);
      // No message yet: a trigger only marks it pending, even unmasked.
      a.unmask();
      a.trigger();
      expect(a.pending).toBe(true);
      a.mask();
      a.setMsi(MSI_A);
      b.setMsi(MSI_B);
      b.unmask();
      a.trigger();
      a.trigger();
      expect(a.pending).toBe(true);
      // A masked route delivers nothing: B's interrupt is handled, A's count stays 0.
      b.trigger();
      await until(() => sink.writes('pio', 0x521n).length === 1);
      expect(sink.writes('pio', 0x520n)).toEqual([]);
      // Unmask delivers the pending interrupt exactly once.
      a.unmask();
      expect(a.pending).toBe(false);
      await until(() => sink.writes('pio', 0x520n).length === 1);
      // A duplicate of vector 0x40 would be serviced before vector 0x30 (higher priority class).
      b.trigger();
      await until(() => sink.writes('pio', 0x521n).length === 2);
      expect(sink.writes('pio', 0x520n)).toEqual([1n]);
      // Unmasked triggers go straight through.
      a.trigger();
      await until(() => sink.writes('pio', 0x520n).length === 2);
      expect(sink.writes('pio', 0x520n)).toEqual([1n, 2n]);
      // Reprogramming moves the route to the other vector.
      a.setMsi(MSI_B);
      a.trigger();
      await until(() => sink.writes('pio', 0x521n).length === 3);
      expect(sink.writes('pio', 0x521n)).toEqual([1n, 2n, 3n]);
      a.dispose();
      expect(() => a.trigger()).toThrowError(expect.objectContaining({ code: 'BadHandle' }) as Error);
      const result = await backend.guest.stop();
      expect(result?.vcpus[0]?.reason).toBe('stopped');
    });
  }

  it('signalMsi injects without a route', async () => {
    const started = await startGuest('worker');
    backend = started.backend;
    backend.signalMsi(MSI_A);
    await until(() => started.sink.writes('pio', 0x520n).length === 1);
    backend.signalMsi(MSI_B);
    await until(() => started.sink.writes('pio', 0x521n).length === 1);
    expect(started.sink.writes('pio', 0x520n)).toEqual([1n]);
  });

  it('refuses the route past capacity with NoSpace and leaves nothing behind', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const capacity = backend.capabilities.maxMsiRoutes;
    // 4096 routing entries, minus the irqchip's 40 default entries for GSIs 0-23.
    expect(capacity).toBe(4096 - 40);
    const routes = Array.from({ length: capacity }, () => backend!.createMsiRoute());
    expect(new Set(routes.map((r) => r.id)).size).toBe(capacity);
    // The kernel accepts the full table: program the highest GSI and a low one.
    routes[routes.length - 1]!.setMsi(MSI_A);
    routes[0]!.setMsi(MSI_B);
    const before = { resources: backend.resources(), os: await settledOsResources() };
    let error: unknown;
    try {
      backend.createMsiRoute();
    } catch (e) {
      error = e;
    }
    expect(isVmedError(error, 'NoSpace')).toBe(true);
    expect(backend.resources()).toEqual(before.resources);
    expect(osResources().fds).toBe(before.os.fds);
    // Freeing one makes room for exactly one.
    routes.pop()!.dispose();
    routes.push(backend.createMsiRoute());
    expect(() => backend!.createMsiRoute()).toThrowError(expect.objectContaining({ code: 'NoSpace' }) as Error);
  });
});
