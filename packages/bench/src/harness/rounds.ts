/**
 * Alternating rounds and medians. Each round takes one sample of each side; the order flips
 * every round (vmed first, then C first) so a drift in machine load (this machine is shared)
 * lands on both sides alike. The figure is the median of the rounds, not the mean: one round
 * disturbed by another process's burst does not move it.
 */
import type { BenchContext, BenchResult, Benchmark, CResult, Sample } from '../types.js';

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The `q` quantile (0..1) of a non-empty list, linearly interpolated. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new RangeError('quantile of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (at - lo);
}

/** The two sides of a benchmark, each taking one sample per call. */
export interface Sides {
  /** Operations each sample must do; a sample that saw another count fails the benchmark. */
  readonly expectedOps: number;
  readonly vmed: () => Promise<Sample>;
  readonly c: () => Promise<Sample>;
  readonly notes?: readonly string[];
}

/** A benchmark's sample did not do the work it was given: its time would mean nothing. */
export class WrongOperationCount extends Error {
  override readonly name = 'WrongOperationCount';
}

function checked(benchmark: string, side: string, expected: number, sample: Sample): Sample {
  if (sample.ops !== expected) {
    throw new WrongOperationCount(`${benchmark}: the ${side} side did ${sample.ops} operations, not ${expected}`);
  }
  if (!Number.isFinite(sample.perOp) || sample.perOp <= 0) {
    throw new WrongOperationCount(`${benchmark}: the ${side} side measured ${sample.perOp} per operation`);
  }
  return sample;
}

/** Runs the rounds, then (with a profiler) one profiled vmed sample, and builds the result. */
export async function measure(benchmark: Benchmark, context: BenchContext, sides: Sides): Promise<BenchResult> {
  const vmed: Sample[] = [];
  const c: Sample[] = [];
  const takeVmed = async () => vmed.push(checked(benchmark.name, 'vmed', sides.expectedOps, await sides.vmed()));
  const takeC = async () => c.push(checked(benchmark.name, 'C', sides.expectedOps, await sides.c()));
  for (let round = 0; round < context.rounds; round++) {
    if (round % 2 === 0) {
      await takeVmed();
      await takeC();
    } else {
      await takeC();
      await takeVmed();
    }
    context.log(`${benchmark.name}: round ${round + 1}/${context.rounds}: vmed ${fmt(vmed.at(-1)?.perOp)} C ${fmt(c.at(-1)?.perOp)} ${benchmark.unit}`);
  }
  let profile: string | undefined;
  if (context.profiler !== undefined) {
    const captured = await context.profiler.capture(benchmark.name, sides.vmed);
    checked(benchmark.name, 'vmed (profiled)', sides.expectedOps, captured.sample);
    profile = captured.path;
  }
  const vmedMedian = median(vmed.map((s) => s.perOp));
  const cMedian = median(c.map((s) => s.perOp));
  const ratio = vmedMedian / cMedian;
  const paired = vmed.map((s, i) => s.perOp / (c[i] as Sample).perOp);
  return {
    name: benchmark.name,
    unit: benchmark.unit,
    vmed: vmedMedian,
    c: cMedian,
    ratio,
    ratioSpread: [quantile(paired, 0.25), quantile(paired, 0.75)],
    goal: benchmark.goal,
    met: ratio <= benchmark.goal,
    samples: { vmed: vmed.map((s) => s.perOp), c: c.map((s) => s.perOp) },
    operations: { expected: sides.expectedOps, vmed: vmed.map((s) => s.ops), c: c.map((s) => s.ops) },
    ...(vmed.some((s) => s.detail !== undefined) || c.some((s) => s.detail !== undefined)
      ? { details: { vmed: vmed.map((s) => s.detail ?? {}), c: c.map((s) => s.detail ?? {}) } }
      : {}),
    notes: sides.notes ?? [],
    ...(profile === undefined ? {} : { profile }),
  };
}

/**
 * A C result as a sample: nanoseconds over timed operations, scaled to the unit. `detail`
 * names result fields to report alongside.
 */
export function cSample(result: CResult, nsPerUnit: number, detail: readonly string[] = []): Sample {
  if (result.timedOps <= 0) throw new WrongOperationCount(`the C side timed ${result.timedOps} operations`);
  const sample = { perOp: result.ns / result.timedOps / nsPerUnit, ops: result.ops };
  if (detail.length === 0) return sample;
  return { ...sample, detail: Object.fromEntries(detail.map((k) => [k, Number(result[k])])) };
}

function fmt(value: number | undefined): string {
  return value === undefined ? '-' : value.toPrecision(4);
}
