/**
 * Every benchmark runs with tiny counts (the figures mean nothing; nothing here is timed):
 * the result has the reported shape, and both the vmed side and the C side did exactly the
 * operations they were given. Benchmarks this machine cannot run skip with their reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CProgram,
  allBenchmarks,
  formatJson,
  formatTable,
  gccAvailable,
  measure,
  median,
  parseResult,
  quantile,
  runBenchmarks,
  type BenchContext,
  type BenchResult,
  type Benchmark,
} from '../src/index.js';

const quiet = () => undefined;

describe('vmed bench (tiny counts)', () => {
  let program: CProgram | undefined;
  beforeAll(() => {
    if (gccAvailable() === true) program = CProgram.compile();
  });
  afterAll(() => program?.dispose());

  for (const benchmark of allBenchmarks()) {
    const available = benchmark.available();
    it.skipIf(available !== true)(`${benchmark.name}: both sides do the expected operations${available === true ? '' : ` (skipped: ${available})`}`, async () => {
      const rounds = 2;
      const result = await benchmark.run({ rounds, scale: 'tiny', c: program as CProgram, log: quiet });
      expect(result.name).toBe(benchmark.name);
      expect(result.unit).toBe(benchmark.unit);
      expect(result.goal).toBe(benchmark.goal);
      for (const value of [result.vmed, result.c, result.ratio]) {
        expect(Number.isFinite(value)).toBe(true);
        expect(value).toBeGreaterThan(0);
      }
      expect(result.ratio).toBeCloseTo(result.vmed / result.c, 12);
      expect(result.met).toBe(result.ratio <= result.goal);
      expect(result.samples.vmed).toHaveLength(rounds);
      expect(result.samples.c).toHaveLength(rounds);
      expect(result.vmed).toBe(median(result.samples.vmed));
      expect(result.ratioSpread[0]).toBeLessThanOrEqual(result.ratioSpread[1]);
      expect(result.operations.expected).toBeGreaterThan(0);
      expect(result.operations.vmed).toEqual(Array(rounds).fill(result.operations.expected));
      expect(result.operations.c).toEqual(Array(rounds).fill(result.operations.expected));
    }, 180_000);
  }
});

/** A benchmark whose sides report what the test says, to check the harness itself. */
function fakeBenchmark(vmedOps: number, cOps: number): Benchmark {
  const benchmark: Benchmark = {
    name: 'test.fake',
    unit: 'µs/op',
    goal: 2,
    description: 'a fake',
    available: () => true,
    run: (context: BenchContext): Promise<BenchResult> =>
      measure(benchmark, context, {
        expectedOps: 10,
        vmed: async () => ({ perOp: 3, ops: vmedOps }),
        c: async () => ({ perOp: 2, ops: cOps }),
      }),
  };
  return benchmark;
}

const fakeContext: BenchContext = { rounds: 3, scale: 'tiny', c: { run: () => Promise.reject(new Error('no C here')) }, log: quiet };

describe('the harness', () => {
  it('refuses a sample that did not do the expected operations, on either side', async () => {
    await expect(fakeBenchmark(9, 10).run(fakeContext)).rejects.toThrow(/vmed side did 9 operations, not 10/);
    await expect(fakeBenchmark(10, 11).run(fakeContext)).rejects.toThrow(/C side did 11 operations, not 10/);
    const ok = await fakeBenchmark(10, 10).run(fakeContext);
    expect(ok.ratio).toBe(1.5);
    expect(ok.met).toBe(true);
  });

  it('reports a failing benchmark and still runs the others; the JSON line has the results', async () => {
    const report = await runBenchmarks({ benchmarks: [fakeBenchmark(1, 10), fakeBenchmark(10, 10)], rounds: 1, scale: 'tiny' });
    expect(report.failed).toEqual([{ name: 'test.fake', error: 'test.fake: the vmed side did 1 operations, not 10' }]);
    expect(report.results).toHaveLength(1);
    expect(report.maxRssKiB).toBeGreaterThan(0);
    const json = JSON.parse(formatJson(report)) as { results: Array<Record<string, unknown>> };
    expect(json.results).toEqual([{ name: 'test.fake', unit: 'µs/op', vmed: 3, c: 2, ratio: 1.5, goal: 2, met: true, ratioSpread: [1.5, 1.5] }]);
    const table = formatTable(report);
    expect(table).toMatch(/test\.fake\s+µs\/op\s+3\.000\s+2\.000\s+1\.50\s+≤ 2\.00\s+yes\s+1\.50–1\.50/);
    expect(table).toContain('test.fake: FAILED');
    expect(table).toMatch(/peak RSS of the vmed process: [\d.]+ MiB/);
  });

  it('medians and C result lines', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(quantile([1, 2, 3, 4, 5], 0.25)).toBe(2);
    expect(quantile([1, 2], 0.5)).toBe(1.5);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
    expect(parseResult('noise\n{"ops":3,"timedOps":2,"ns":100}\n')).toEqual({ ops: 3, timedOps: 2, ns: 100 });
    expect(() => parseResult('{"ops":3,"ns":100}')).toThrow(/timedOps/);
    expect(() => parseResult('')).toThrow();
  });
});
