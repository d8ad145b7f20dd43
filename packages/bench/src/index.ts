/**
 * `@vmed/bench`: vmed against C programs doing the same work on the same machine in the same
 * run (`vmed bench`). Each benchmark reports the median cost per operation of each side over
 * alternating rounds and the ratio vmed/C.
 *
 * ```ts
 * const report = await runBenchmarks({ filter: 'kvm.', rounds: 5 });
 * console.log(formatTable(report));
 * ```
 */
export { runBenchmarks, DEFAULT_ROUNDS, type RunOptions, type RunReport, type BenchFailure } from './run.js';
export { formatJson, formatTable } from './report.js';
export { allBenchmarks, registerBenchmark, selectBenchmarks } from './registry.js';
export { summarizeProfile, Profiler, type ProfileEntry } from './harness/profile.js';
export { measure, median, quantile, cSample, WrongOperationCount, type Sides } from './harness/rounds.js';
export { CProgram, parseResult } from './harness/c-program.js';
export { allAvailable, gccAvailable, kvmAvailable } from './harness/environment.js';
export type { BenchContext, BenchResult, BenchScale, BenchSkip, Benchmark, CResult, CRunner, ProfileCapture, Sample } from './types.js';
