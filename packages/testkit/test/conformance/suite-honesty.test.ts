/**
 * The suite must be able to fail: each mutant below breaks one rule of the contract on top of
 * the sim, and the scenarios guarding that rule must report it. Crippled sims (capabilities
 * taken away) must still pass, by checking `Unsupported` instead of skipping.
 */
import { closeSync, openSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend, DirtyBitmap, DirtyLog, GuestMemory, IoClaim, LineIrq, MsiRoute } from '@vmed/core';
import type {
  SimBackend} from '../../src/index.js';
import {
  createConformanceTarget,
  registerConformanceSuite,
  runConformance,
  type ConformanceSession,
  type ConformanceTarget,
} from '../../src/index.js';

/** Wraps `real` so that `overrides` replace some members; everything else is the real member, bound. */
function wrap<T extends object>(real: T, overrides: Partial<T>): T {
  return new Proxy(real, {
    get(target, prop) {
      if (Object.prototype.hasOwnProperty.call(overrides, prop)) return (overrides as Record<PropertyKey, unknown>)[prop];
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A sim target whose sessions' backends are rewritten by `mutate`. */
function mutant(name: string, mutate: (backend: SimBackend) => Partial<Backend>, backendOptions = {}): ConformanceTarget {
  const base = createConformanceTarget({ name, backend: backendOptions });
  return {
    name,
    skips: {},
    async open(): Promise<ConformanceSession> {
      const session = await base.open();
      const real = session.backend as SimBackend;
      return { ...session, osResources: session.osResources, close: session.close, backend: wrap<Backend>(real, mutate(real)) };
    },
  };
}

async function statusOf(target: ConformanceTarget, only: string[]): Promise<Record<string, string>> {
  const results = await runConformance(target, { only });
  return Object.fromEntries(results.map((r) => [r.scenario, r.status]));
}

describe('the suite catches a backend that breaks the contract', () => {
  it('an unmask that replays a pending interrupt twice', async () => {
    const target = mutant('double-replay', (real) => ({
      createMsiRoute: () => {
        const route = real.createMsiRoute();
        return wrap<MsiRoute>(route, {
          unmask: () => {
            const wasPending = route.pending;
            route.unmask();
            if (wasPending) route.trigger();
          },
        });
      },
    }));
    expect(await statusOf(target, ['msi.mask-pending-unmask-once', 'msi.deliver'])).toEqual({
      'msi.mask-pending-unmask-once': 'fail',
      'msi.deliver': 'pass',
    });
  });

  it('a pull that does not clear the log', async () => {
    const target = mutant('sticky-pull', (real) => {
      let sticky: DirtyBitmap[] | undefined;
      return {
        dirty: wrap<DirtyLog>(real.dirty, {
          pull: () => {
            const fresh = real.dirty.pull();
            sticky = sticky === undefined ? fresh : sticky.map((b, i) => ({ ...b, bits: b.bits.map((w, j) => w | ((fresh[i] as DirtyBitmap).bits[j] as number)) }));
            return sticky;
          },
        }),
      };
    });
    expect(await statusOf(target, ['dirty.pull-returns-once', 'dirty.aborted-collection-keeps-bits', 'dirty.guest-writes-visible'])).toEqual({
      'dirty.guest-writes-visible': 'pass',
      'dirty.pull-returns-once': 'fail',
      'dirty.aborted-collection-keeps-bits': 'fail',
    });
  });

  it('a claim whose dispose releases nothing', async () => {
    const target = mutant('leaky-claim', (real) => ({
      claimIo: (space, range) => {
        const claim = real.claimIo(space, range);
        let disposed = false;
        return wrap<IoClaim>(claim, {
          get disposed() {
            return disposed;
          },
          dispose: () => {
            disposed = true;
          },
        } as Partial<IoClaim>);
      },
    }));
    expect(await statusOf(target, ['io.overlap-refused', 'dispose.no-leaks'])).toEqual({
      'io.overlap-refused': 'fail',
      'dispose.no-leaks': 'fail',
    });
  });

  it('an absent capability that is a silent no-op', async () => {
    const target = mutant(
      'silent-no-op',
      () => ({ trackWrites: (range) => ({ range, disposed: false, dispose() {}, [Symbol.dispose]() {} }) }),
      { capabilities: { pageTracking: false } },
    );
    expect(await statusOf(target, ['page-tracking.write-caught', 'capabilities.honest'])).toEqual({
      'capabilities.honest': 'fail',
      'page-tracking.write-caught': 'fail',
    });
  });

  it('a disposed line that still asserts', async () => {
    const target = mutant('zombie-line', (real) => ({
      createLineIrq: (t, trigger) => {
        const line = real.createLineIrq(t, trigger);
        return wrap<LineIrq>(line, { assert: () => (line.disposed ? undefined : line.assert()) });
      },
    }));
    expect(await statusOf(target, ['dispose.bad-handle', 'line-irq.edge'])).toEqual({
      'line-irq.edge': 'fail',
      'dispose.bad-handle': 'fail',
    });
  });

  it('a read that copies the in-RAM part before refusing', async () => {
    const target = mutant('partial-read', (real) => ({
      memory: wrap<GuestMemory>(real.memory, {
        read: (address, dst) => {
          for (let i = 0; i < dst.length; i++) {
            const one = dst.subarray(i, i + 1);
            real.memory.read(address + BigInt(i), one);
          }
        },
      }),
    }));
    expect(await statusOf(target, ['memory.partial-access', 'memory.coherent'])).toEqual({
      'memory.coherent': 'pass',
      'memory.partial-access': 'fail',
    });
  });

  it('a session that leaks a file descriptor each time it opens', async () => {
    const leaked: number[] = [];
    const base = createConformanceTarget();
    const target: ConformanceTarget = {
      name: 'fd-leak',
      skips: {},
      async open() {
        leaked.push(openSync('/dev/null', 'r'));
        return base.open();
      },
    };
    try {
      const [result] = await runConformance(target, { only: ['dispose.no-leaks'] });
      expect(result?.status).toBe('fail');
      expect(result?.reason).toMatch(/open fds grew in every batch/);
    } finally {
      for (const fd of leaked) closeSync(fd);
    }
  });

  it('a level line that never goes quiet', async () => {
    const target = mutant('stuck-level', (real) => ({
      createLineIrq: (t, trigger) => {
        const line = real.createLineIrq(t, trigger);
        return wrap<LineIrq>(line, { deassert: () => {} });
      },
    }));
    expect(await statusOf(target, ['line-irq.level-resample'])).toEqual({ 'line-irq.level-resample': 'fail' });
  }, 60_000);
});

// Crippled sims: every capability-dependent scenario must pass by checking Unsupported.
const minimal = createConformanceTarget({
  name: 'sim without optional capabilities',
  backend: {
    capabilities: {
      signalMsi: false,
      lineIrq: false,
      dirtyTracking: false,
      pageTracking: false,
      pinning: false,
      directRegions: false,
      doorbellDatamatch: false,
    },
  },
});
registerConformanceSuite(minimal, { describe, it, afterAll });

registerConformanceSuite(
  createConformanceTarget({
    name: 'sim in push mode, edge-only lines, RAM regions mapped apart',
    backend: { hostGaps: true, capabilities: { dirtyTracking: 'push', lineIrq: { edge: true, level: false, resample: false } } },
  }),
  { describe, it, afterAll },
);

registerConformanceSuite(
  createConformanceTarget({ name: 'sim with level lines but no resample count', backend: { capabilities: { lineIrq: { edge: true, level: true, resample: false } } } }),
  { describe, it, afterAll },
  { only: ['line-irq.'] },
);
