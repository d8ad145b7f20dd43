import assert from 'node:assert/strict';
import { describe, expect, it } from 'vitest';
import type {
  SimBackend} from '../../src/index.js';
import {
  conformanceScenarios,
  createConformanceTarget,
  registerConformanceSuite,
  runConformance,
  runScenario,
  scenario,
  selectScenarios,
  type ConformanceSession,
  type ConformanceTarget,
} from '../../src/index.js';

/** A sim target that remembers every session it opened. */
function counting(skips: Record<string, string> = {}): { target: ConformanceTarget; sessions: ConformanceSession[] } {
  const base = createConformanceTarget();
  const sessions: ConformanceSession[] = [];
  return {
    sessions,
    target: {
      name: 'counting',
      skips,
      async open() {
        const s = await base.open();
        sessions.push(s);
        return s;
      },
    },
  };
}

const closed = (s: ConformanceSession) => (s.backend as SimBackend).closed;

describe('runConformance', () => {
  it('skips only what the target names, with its reason, without opening a session', async () => {
    const { target, sessions } = counting({ 'memory.bounds': 'no RAM map on this target' });
    const results = await runConformance(target, { only: ['memory.bounds', 'memory.coherent'] });
    expect(results.map((r) => [r.scenario, r.status, r.reason])).toEqual([
      ['memory.coherent', 'pass', undefined],
      ['memory.bounds', 'skip', 'no RAM map on this target'],
    ]);
    expect(sessions).toHaveLength(1);
    expect(sessions.every(closed)).toBe(true);
  });

  it('reports a failing scenario with its message and still closes every session it opened', async () => {
    const { target, sessions } = counting();
    const failing = scenario('test.fails', 'always fails', async (_s, ctx) => {
      await ctx.openSession();
      assert.equal(1, 2, 'one is not two');
    });
    const [result] = await runConformance(target, { scenarios: [failing] });
    expect(result?.status).toBe('fail');
    expect(result?.reason).toContain('one is not two');
    expect(sessions).toHaveLength(2);
    expect(sessions.every(closed)).toBe(true);
  });

  it('fails a scenario that outlives its time limit and closes its session', async () => {
    const { target, sessions } = counting();
    const hangs = scenario('test.hangs', 'never ends', () => new Promise<void>(() => {}));
    const result = await runScenario(target, hangs, { timeoutMs: 50 });
    expect(result.status).toBe('fail');
    expect(result.reason).toMatch(/timed out after \d+ ms/);
    expect(sessions.every(closed)).toBe(true);
  });

  it('fails a scenario whose session will not close', async () => {
    const target: ConformanceTarget = {
      name: 'sticky',
      skips: {},
      async open() {
        const s = await createConformanceTarget().open();
        return {
          ...s,
          close: async () => {
            throw new Error('the guest would not stop');
          },
        };
      },
    };
    const result = await runScenario(target, scenario('test.passes', 'passes', async () => {}));
    expect(result).toMatchObject({ status: 'fail', reason: expect.stringContaining('the guest would not stop') });
  });

  it('selects by exact name and by area prefix', () => {
    expect(selectScenarios(['msi.']).map((s) => s.name)).toEqual(conformanceScenarios.filter((s) => s.name.startsWith('msi.')).map((s) => s.name));
    expect(selectScenarios(['msi.deliver', 'nope']).map((s) => s.name)).toEqual(['msi.deliver']);
    expect(selectScenarios(undefined)).toHaveLength(conformanceScenarios.length);
  });

  it('names every scenario the brief asks for', () => {
    const names = new Set(conformanceScenarios.map((s) => s.name));
    for (const n of [
      'memory.bounds',
      'memory.partial-access',
      'memory.views',
      'memory.pin-unpin',
      'memory.span-regions',
      'io.overlap-refused',
      'io.zero-length-refused',
      'io.straddle',
      'io.unclaimed-all-ones',
      'io.guest-access-reaches-sink',
      'doorbell.datamatch',
      'doorbell.any-value',
      'msi.deliver',
      'msi.mask-pending-unmask-once',
      'msi.route-exhaustion-nospace',
      'line-irq.edge',
      'line-irq.level-resample',
      'dirty.device-writes-visible',
      'dirty.guest-writes-visible',
      'dirty.aborted-collection-keeps-bits',
      'page-tracking.write-caught',
      'direct-region.guest-sees-memory',
      'dispose.bad-handle',
      'dispose.no-leaks',
    ]) {
      expect(names.has(n), n).toBe(true);
    }
  });
});

describe('registerConformanceSuite', () => {
  it('registers one test per scenario, skips with their reason, and disposes the target after', async () => {
    const tests: string[] = [];
    const skipped: string[] = [];
    const after: Array<() => Promise<void>> = [];
    let disposed = false;
    const target: ConformanceTarget = { ...createConformanceTarget({ skips: { 'msi.deliver': 'because' } }), dispose: async () => void (disposed = true) };
    const it_ = Object.assign((name: string) => void tests.push(name), { skip: (name: string) => void skipped.push(name) });
    registerConformanceSuite(target, { describe: (_n, body) => body(), it: it_, afterAll: (fn) => void after.push(fn) }, { only: ['msi.'] });
    expect(skipped).toEqual(['msi.deliver (skipped: because)']);
    expect(tests).toEqual(['msi.mask-pending-unmask-once', 'msi.unprogrammed-behaves-masked', 'msi.route-exhaustion-nospace']);
    for (const fn of after) await fn();
    expect(disposed).toBe(true);
  });
});
