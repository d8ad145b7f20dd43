/**
 * close() releases everything a session made, in the contract's order, and leaves no fd,
 * mapping or thread behind (counted in /proc/self); every handle refuses use afterwards.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addressRange, isVmedError } from '@vmed/core';
import { createBackend, type KvmBackend } from '../src/index.js';
import { uvHandleCounts } from '../src/poller/uv-loop.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink, osResources, until } from './helpers/kvm.js';

/** Two vCPUs: each reports on port 0x530, then spins writing RAM until the backend stops it. */
const SPIN = `.code32
  mov $0x530, %dx
  out %al, %dx
spin:
  incl 0x9000(,%esi,4)
  jmp spin
`;

/** Uses every kind of resource, with the guest running in `execution` mode. */
async function busySession(execution: 'worker' | 'inline'): Promise<KvmBackend> {
  const vcpus = execution === 'inline' ? 1 : 2;
  const b = await createBackend({ mode: 'standalone', memoryMiB: 4, vcpus });
  const sink = new RecordingSink();
  b.attach(sink);
  b.claimIo('mmio', addressRange(0xfebf0000n, 0x1000n));
  b.claimIo('pio', addressRange(0xc000n, 0x40n));
  const route = b.createMsiRoute();
  route.setMsi({ address: 0xfee00000n, data: 0x41 });
  b.createMsiRoute();
  b.createLineIrq({ kind: 'gsi', line: 5 }, 'level');
  b.createLineIrq({ kind: 'gsi', line: 6 }, 'edge');
  b.registerIoEvent({ space: 'mmio', address: 0xfebf1000n, length: 4 }, () => {});
  b.registerIoEvent({ space: 'pio', address: 0xc000n, length: 2, datamatch: 1n }, () => {});
  const shared = b.allocateSharedMemory(8192);
  b.mapDirect(addressRange(0xfe000000n, 0x2000n), shared);
  b.allocateSharedMemory(4096);
  b.memory.pin(0x100000n, 0x4000);
  b.memory.view(0x2000n, 64, 'readwrite');
  b.trackWrites(addressRange(0x200000n, 0x2000n), () => 'apply');
  b.dirty.start();
  b.guest.load(0x1000n, assemble(SPIN, 0x1000));
  b.guest.setEntry('all', { mode: 'protected32', ip: 0x1000 });
  void b.guest.run({ execution });
  await until(() => sink.writes('pio', 0x530n).length === vcpus);
  return b;
}

describe('close', () => {
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  for (const execution of ['worker', 'inline'] as const) {
    it(`releases every fd, mapping, route, doorbell, worker and thread (${execution})`, async () => {
      // Warm-up: the first session loads koffi, tsx in workers and libc's thread-stack cache.
      await (await busySession(execution)).close();
      const before = osResources();
      backend = await busySession(execution);
      const b = backend;
      const held = b.resources();
      expect(held).toEqual({
        // VM, vCPUs, RAM memfd, 2 shared memfds, 2 doorbells, 2 MSI eventfds, 2+1 line eventfds, epoll + control
        fds: 1 + (execution === 'worker' ? 2 : 1) + 1 + 2 + 2 + 2 + 3 + 2,
        // RAM, kvm_run per vCPU, 2 shared memories
        mappings: 1 + (execution === 'worker' ? 2 : 1) + 2,
        msiRoutes: 2,
        lineIrqs: 2,
        doorbells: 2,
        claims: 2,
        pins: 1,
        pageTracks: 1,
        workers: (execution === 'worker' ? 2 : 0) + 1,
        // The test runs on the main thread: the doorbells and the level line's resample fd
        // are watched by libuv poll handles on its loop.
        pollHandles: 3,
      });
      expect(uvHandleCounts().open).toBeGreaterThanOrEqual(3);
      // Each worker thread also holds fds of its own event loop, so only the kernel objects
      // above are compared exactly; after close everything must be back to the baseline.
      const during = osResources();
      expect(during.fds - before.fds).toBeGreaterThanOrEqual(held.fds);
      expect(during.kvmMappings - before.kvmMappings).toBe(held.mappings);
      // Under tsx each worker also runs an ESM-loader hooks thread: at least one thread per worker.
      expect(during.threads - before.threads).toBeGreaterThanOrEqual(held.workers);
      await b.close();
      expect(b.closed).toBe(true);
      expect(b.resources()).toEqual({ fds: 0, mappings: 0, msiRoutes: 0, lineIrqs: 0, doorbells: 0, claims: 0, pins: 0, pageTracks: 0, workers: 0 });
      // Every poll handle is stopped at close and its memory freed by libuv's close callback,
      // which runs on a later loop turn.
      expect(uvHandleCounts().open).toBe(0);
      await until(() => uvHandleCounts().closing === 0);
      // Threads and fds exactly; mappings: the session's own (memfds, kvm_run) exactly — the
      // total also counts allocator caches that outlive the worker threads (see osResources).
      const after = osResources();
      expect({ fds: after.fds, threads: after.threads, kvmMappings: after.kvmMappings }).toEqual({
        fds: before.fds,
        threads: before.threads,
        kvmMappings: before.kvmMappings,
      });
    });
  }

  it('refuses every method afterwards, for the backend and what it handed out', async () => {
    backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    const b = backend;
    const route = b.createMsiRoute();
    const line = b.createLineIrq({ kind: 'gsi', line: 4 }, 'edge');
    const doorbell = b.registerIoEvent({ space: 'pio', address: 0x600n, length: 1 }, () => {});
    const view = b.memory.view(0n, 16, 'read');
    const pin = b.memory.pin(0n, 16);
    const closing = b.close();
    expect(b.close()).toBe(closing);
    await closing;
    await b[Symbol.asyncDispose]();
    expect([route.disposed, line.disposed, doorbell.disposed, view.disposed, pin.disposed]).toEqual([true, true, true, true, true]);
    const calls: Array<() => unknown> = [
      () => b.attach(new RecordingSink()),
      () => b.claimIo('pio', addressRange(0x10n, 1n)),
      () => b.claimPciFunction({ bus: 0, device: 1, function: 0 }),
      () => b.allocateSharedMemory(4096),
      () => b.createMsiRoute(),
      () => b.signalMsi({ address: 0xfee00000n, data: 0x30 }),
      () => b.createLineIrq({ kind: 'gsi', line: 3 }, 'edge'),
      () => b.createEventChannel(),
      () => b.registerIoEvent({ space: 'pio', address: 0x10n, length: 1 }, () => {}),
      () => b.trackWrites(addressRange(0x1000n, 0x1000n), () => 'apply'),
      () => b.dirty.start(),
      () => b.memory.read(0n, new Uint8Array(1)),
      () => b.memory.view(0n, 1, 'read'),
      () => b.guest.load(0n, new Uint8Array(1)),
      () => b.guest.run(),
      () => b.forwardPio(0x10, 1, new Uint8Array(1), true),
      () => route.trigger(),
      () => route.setMsi({ address: 0xfee00000n, data: 0x30 }),
      () => line.assert(),
      () => view.bytes,
    ];
    for (const call of calls) {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(isVmedError(error, 'BadHandle'), String(call)).toBe(true);
    }
  });
});
