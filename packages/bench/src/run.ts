/**
 * Runs a selection of benchmarks: compiles the C side once, runs each available benchmark in
 * turn (a failure is reported and the others still run), and reports the results, the skips
 * and the vmed process's peak RSS.
 */
import { loadavg } from 'node:os';
import { CProgram } from './harness/c-program.js';
import { gccAvailable } from './harness/environment.js';
import { Profiler } from './harness/profile.js';
import { selectBenchmarks } from './registry.js';
import type { BenchResult, BenchScale, BenchSkip, Benchmark, CRunner } from './types.js';

export interface RunOptions {
  /** Substring of the benchmark names to run (all when absent). */
  readonly filter?: string;
  /** Alternating rounds per benchmark (default 5). */
  readonly rounds?: number;
  readonly scale?: BenchScale;
  /** Profile each benchmark's vmed side once, saving `.cpuprofile` files here. */
  readonly profileDirectory?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Run these instead of the registry's selection (tests). */
  readonly benchmarks?: readonly Benchmark[];
}

/** A benchmark that was available but threw: its figures would mean nothing. */
export interface BenchFailure {
  readonly name: string;
  readonly error: string;
}

export interface RunReport {
  readonly results: readonly BenchResult[];
  readonly skipped: readonly BenchSkip[];
  readonly failed: readonly BenchFailure[];
  /** `process.resourceUsage().maxRSS` after the run, in KiB. */
  readonly maxRssKiB: number;
  readonly rounds: number;
  readonly scale: BenchScale;
  /** 1-minute load average before and after: figures taken on a busy machine are noisier. */
  readonly load: { readonly before: number; readonly after: number };
}

export const DEFAULT_ROUNDS = 5;

export async function runBenchmarks(options: RunOptions = {}): Promise<RunReport> {
  const rounds = options.rounds ?? DEFAULT_ROUNDS;
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds must be a positive integer, got ${rounds}`);
  const scale = options.scale ?? 'full';
  const log = options.log ?? (() => undefined);
  const loadBefore = loadavg()[0] as number;
  const selected = options.benchmarks ?? selectBenchmarks(options.filter);
  const results: BenchResult[] = [];
  const skipped: BenchSkip[] = [];
  const failed: BenchFailure[] = [];
  const runnable: Benchmark[] = [];
  for (const b of selected) {
    const available = b.available();
    if (available === true) runnable.push(b);
    else skipped.push({ name: b.name, unit: b.unit, goal: b.goal, skipped: available });
  }
  let program: CProgram | undefined;
  try {
    if (runnable.length > 0) {
      const gcc = gccAvailable();
      if (gcc !== true) {
        for (const b of runnable.splice(0)) skipped.push({ name: b.name, unit: b.unit, goal: b.goal, skipped: gcc });
      } else {
        program = CProgram.compile();
        log(`compiled the C side: ${program.path}`);
      }
    }
    const c: CRunner | undefined = program;
    const profiler = options.profileDirectory === undefined ? undefined : new Profiler(options.profileDirectory);
    for (const b of runnable) {
      log(`${b.name}: ${b.description}`);
      try {
        results.push(await b.run({ rounds, scale, c: c as CRunner, log, ...(profiler === undefined ? {} : { profiler }) }));
      } catch (e) {
        failed.push({ name: b.name, error: e instanceof Error ? e.message : String(e) });
        log(`${b.name}: failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  } finally {
    program?.dispose();
  }
  return {
    results,
    skipped,
    failed,
    maxRssKiB: process.resourceUsage().maxRSS,
    rounds,
    scale,
    load: { before: loadBefore, after: loadavg()[0] as number },
  };
}
