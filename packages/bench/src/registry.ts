/**
 * Every benchmark `vmed bench` knows, in the order they run. A module adds benchmarks by
 * exporting a `Benchmark[]` from its own folder and being listed here — the Xen benchmarks
 * (`xen.ioreq_roundtrip`, `xen.inject_msi`) come as `src/xen/index.ts` exporting
 * `xenBenchmarks`, whose `available()` says why they skip outside the Xen lab and whose `run`
 * imports `@vmed/backend-xen` only when it runs. Modules must not load hypervisor bindings at
 * import time (see {@link Benchmark}).
 */
import { dmaBenchmarks } from './dma/index.js';
import { kvmBenchmarks } from './kvm/index.js';
import { lifecycleBenchmarks } from './lifecycle/index.js';
import type { Benchmark } from './types.js';
import { xenBenchmarks } from './xen/index.js';

const MODULES: ReadonlyArray<readonly Benchmark[]> = [kvmBenchmarks, dmaBenchmarks, lifecycleBenchmarks, xenBenchmarks];

/** Benchmarks added at run time (by an embedding tool or a test), after the listed modules. */
const extra: Benchmark[] = [];

/** Adds a benchmark; a duplicate name is refused. */
export function registerBenchmark(benchmark: Benchmark): void {
  if (allBenchmarks().some((b) => b.name === benchmark.name)) throw new Error(`a benchmark named ${benchmark.name} is registered`);
  extra.push(benchmark);
}

/** Every benchmark, listed modules first. */
export function allBenchmarks(): Benchmark[] {
  return [...MODULES.flat(), ...extra];
}

/** The benchmarks whose name contains `filter` (all when it is undefined or empty). */
export function selectBenchmarks(filter?: string): Benchmark[] {
  return allBenchmarks().filter((b) => filter === undefined || filter === '' || b.name.includes(filter));
}
