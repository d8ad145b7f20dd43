/**
 * Resource limits, each giving its typed error and leaving nothing half-made:
 *
 * - RLIMIT_MEMLOCK too low for a pin (a child without CAP_IPC_LOCK under `prlimit`, running a
 *   mediator with a guest): `NoSpace`, the pages the pin had already locked unlocked again,
 *   and the guest's DMA through edu unaffected.
 * - The VM's GSI routing table full: two 2048-vector MSI-X devices programmed by a real guest
 *   ask for more routes than KVM holds. The guest's MSI-X enable on the second gets the vectors
 *   that do not fit marked undeliverable, one `warning` each with a `NoSpace` cause, and not
 *   one fd or route more than fit. Removing the first device frees its routes; the guest
 *   disabling and re-enabling MSI-X on the second then routes every vector.
 * - More devices than a type's `maxInstances`: `NoSpace`, with `resources()`, the fd count and
 *   the device list as they were.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isVmedError, type MediatedDevice, type VmedError } from '@vmed/core';
import { KVM_SKIP } from '../helpers/kvm.js';
import { HOLE_LAYOUT, kvmMediator, type KvmMediator } from './helpers/agent-guest.js';
import { processCounts } from './helpers/maps.js';
import { HOG_VECTORS, MSIX_ENABLE, msixHogDevice, pollerServing, runHogDriver } from './helpers/msix-hog.js';
import { runChild } from '../helpers/run-child.js';

const REPO = fileURLToPath(new URL('../../../..', import.meta.url));

function tool(name: string): boolean {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('resource limits', () => {
  let kvm: KvmMediator | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await kvm?.mediator.close();
    kvm = undefined;
  });

  it('RLIMIT_MEMLOCK too low: the pin is NoSpace, locks nothing, and the guest’s DMA carries on', { timeout: 120_000 }, async (ctx) => {
    ctx.skip(!tool('setpriv') || !tool('prlimit') || process.getuid?.() !== 0, 'needs root, setpriv and prlimit to drop CAP_IPC_LOCK');
    const script = fileURLToPath(new URL('./fixtures/memlock-child.ts', import.meta.url));
    const run = await runChild(
      'setpriv',
      ['--inh-caps=-ipc_lock', '--bounding-set=-ipc_lock', 'prlimit', '--memlock=65536', process.execPath, '--conditions=source', '--import', 'tsx', script],
      { cwd: REPO, timeoutMs: 110_000 },
    );
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as Record<string, { lockedKiB: number; fds: number; resources: Record<string, number> } & Record<string, unknown>>;
    expect(report['error']).toEqual({ code: 'NoSpace', errno: expect.stringMatching(/^(EAGAIN|ENOMEM|EPERM)$/) as string, operation: 'memory.pin' });
    // The first 16 KiB run was locked before the second failed, and unlocked again.
    expect(report['before']?.lockedKiB).toBe(8);
    expect(report['after']).toEqual(report['before']);
    expect(report['before']?.resources['pins']).toBe(1);
    expect(report['dma']).toEqual({ error: 0, moved: true });
    expect(report['lockedAfterRelease']).toBe(0);
    expect(report['finish']).toEqual(['done']);
    expect(Object.values(report['closed'] ?? {})).toEqual(Array(9).fill(0));
  });

  it('a full GSI routing table: the guest’s MSI-X enable gets undeliverable vectors and warnings, nothing half-made; freeing routes and re-enabling routes them all', { timeout: 300_000 }, async () => {
    kvm = await kvmMediator({ vcpus: 1, ramLayout: HOLE_LAYOUT, deviceTypes: [msixHogDevice] });
    const k = kvm;
    const m = k.mediator;
    const capacity = k.backend.capabilities.maxMsiRoutes;
    expect(capacity).toBeGreaterThan(HOG_VECTORS);
    expect(capacity).toBeLessThan(2 * HOG_VECTORS);
    const warnings: Array<{ message: string; device: MediatedDevice | undefined; cause: unknown }> = [];
    m.on('warning', (message, device, cause) => warnings.push({ message, device, cause }));
    const a = m.create('msix-hog', { slot: 5 });
    const b = m.create('msix-hog', { slot: 6 });
    a.open();
    b.open();
    const bar = (d: MediatedDevice): bigint => BigInt((Number(m.bus.configRead(d.address, 0x10, 4)) & ~0xf) >>> 0);
    // Warm-up, so that what the poller thread, guest runs and the test runner open once is in
    // the baseline: the guest routes every vector of the first device, which is then reset.
    await pollerServing(k.backend);
    expect(await runHogDriver(k.backend, m, a.address, bar(a), HOG_VECTORS, MSIX_ENABLE)).toBe('done');
    expect(k.backend.resources().msiRoutes).toBe(HOG_VECTORS);
    a.reset();
    const base = { fds: processCounts().fds, resources: k.backend.resources() };
    expect(base.resources.msiRoutes).toBe(0);

    // The guest programs and enables every vector of the first device: all fit.
    let t = performance.now();
    expect(await runHogDriver(k.backend, m, a.address, bar(a), HOG_VECTORS, MSIX_ENABLE)).toBe('done');
    const firstMs = performance.now() - t;
    expect(k.backend.resources().msiRoutes).toBe(HOG_VECTORS);
    expect(warnings).toEqual([]);

    // The second: the table fills up part way through the guest's enable.
    t = performance.now();
    expect(await runHogDriver(k.backend, m, b.address, bar(b), HOG_VECTORS, MSIX_ENABLE)).toBe('done');
    const secondMs = performance.now() - t;
    const refused = 2 * HOG_VECTORS - capacity;
    const full = k.backend.resources();
    expect(full.msiRoutes).toBe(capacity);
    // One eventfd per route that exists, and not one more: the refusals allocated nothing.
    expect(processCounts().fds - base.fds).toBe(capacity);
    expect(full.fds - base.resources.fds).toBe(capacity);
    expect(warnings).toHaveLength(refused);
    for (const w of warnings) {
      expect(w.device).toBe(b);
      expect(isVmedError(w.cause, 'NoSpace')).toBe(true);
      expect((w.cause as VmedError).operation).toBe('kvm.createMsiRoute');
    }
    // An undeliverable vector raised by the model is dropped quietly: no throw, no new route.
    expect(() => b.function.interrupts.raise(HOG_VECTORS - 1)).not.toThrow();
    expect(k.backend.resources()).toEqual(full);
    expect(b.broken).toBe(false);
    // Creating a route by hand is refused the same way, and changes nothing either.
    expect(isVmedError(errorOf(() => k.backend.createMsiRoute()), 'NoSpace')).toBe(true);
    expect(k.backend.resources()).toEqual(full);

    // Free some: the first device goes, and its routes with it.
    a.remove();
    expect(k.backend.resources().msiRoutes).toBe(capacity - HOG_VECTORS);
    expect(processCounts().fds - base.fds).toBe(capacity - HOG_VECTORS);
    // Retry: the guest disables MSI-X and enables it again; the vectors that failed are tried again.
    expect(await runHogDriver(k.backend, m, b.address, bar(b), 0, 0)).toBe('done');
    expect(await runHogDriver(k.backend, m, b.address, bar(b), 0, MSIX_ENABLE)).toBe('done');
    expect(k.backend.resources().msiRoutes).toBe(HOG_VECTORS);
    expect(processCounts().fds - base.fds).toBe(HOG_VECTORS);
    expect(warnings).toHaveLength(refused);
    b.remove();
    expect(k.backend.resources()).toEqual(base.resources);
    expect(processCounts().fds).toBe(base.fds);
    // Printed last: vitest opens fds of its own on a test's first console output.
    console.log(JSON.stringify({ capacity, firstDeviceMs: Math.round(firstMs), secondDeviceMs: Math.round(secondMs) }));
  });

  it('more devices than maxInstances: NoSpace, and nothing made', async () => {
    kvm = await kvmMediator({ vcpus: 1, ramLayout: HOLE_LAYOUT, deviceTypes: [msixHogDevice] });
    const m = kvm.mediator;
    const made = Array.from({ length: msixHogDevice.maxInstances }, (_, i) => m.create('msix-hog', { slot: 10 + i }));
    for (const d of made) d.open();
    const before = { fds: processCounts().fds, resources: kvm.backend.resources(), devices: m.list().length, claims: m.dispatcher.claims('mmio').length };
    expect(m.deviceTypes().find((t) => t.type === 'msix-hog')?.availableInstances).toBe(0);
    const error = errorOf(() => m.create('msix-hog', { slot: 20 }));
    expect(isVmedError(error, 'NoSpace')).toBe(true);
    expect((error as VmedError).message).toMatch(/no available instances \(max 3\)/);
    expect({ fds: processCounts().fds, resources: kvm.backend.resources(), devices: m.list().length, claims: m.dispatcher.claims('mmio').length }).toEqual(before);
    // The slot was not taken either: a device fits there once one instance is removed.
    made[0]?.remove();
    const again = m.create('msix-hog', { slot: 20 });
    again.open();
    expect(m.list()).toHaveLength(msixHogDevice.maxInstances);
  });
});
