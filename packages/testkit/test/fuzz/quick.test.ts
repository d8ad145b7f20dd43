/**
 * The bounded fuzz run inside `pnpm test`: every target with a fixed seed, at least 100,000
 * guest accesses for each device target, fewer for the others (migration-stream counts streams
 * fed, each worth 50 accesses). Any violation fails the test and
 * prints the shrunk program (paste it into regressions.test.ts once fixed). The rate is printed,
 * not asserted: this machine is shared.
 */
import { describe, expect, it } from 'vitest';
import { runFuzz } from '../../src/fuzz/index.js';

const SEED = 20_261_124;

const QUICK: ReadonlyArray<{ target: string; accesses: number }> = [
  { target: 'serial', accesses: 100_000 },
  { target: 'edu', accesses: 100_000 },
  { target: 'framebuffer', accesses: 100_000 },
  { target: 'config-space', accesses: 40_000 },
  { target: 'msi-msix', accesses: 40_000 },
  { target: 'dispatcher', accesses: 40_000 },
  // Its budget is divided by its access cost (50): about 1,000 streams fed.
  { target: 'migration-stream', accesses: 50_000 },
];

describe('fuzz: quick run', () => {
  for (const q of QUICK) {
    it(`${q.target}: ${q.accesses.toLocaleString('en-US')} accesses break no invariant`, async () => {
      const { results } = await runFuzz({ targets: [q.target], accessesPerTarget: q.accesses, seed: SEED, shrinkMs: 10_000 });
      const r = results[0];
      expect(r?.target).toBe(q.target);
      if (r === undefined) return;
      console.log(`fuzz ${r.target}: ${r.accesses} accesses in ${r.runs} programs, ${r.perSecond} accesses/s`);
      if (r.counterexample !== undefined) {
        console.log(`counterexample (${r.counterexample.words.length} words): ${JSON.stringify(r.counterexample.words)}\n${r.counterexample.trace.slice(-30).join('\n')}`);
      }
      expect(r.counterexample?.violations ?? []).toEqual([]);
      expect(r.accesses).toBeGreaterThanOrEqual(r.budget);
      expect(r.budget * (q.target === 'migration-stream' ? 50 : 1)).toBe(q.accesses);
    }, 180_000);
  }
});
