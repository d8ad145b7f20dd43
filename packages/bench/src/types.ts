/**
 * What a benchmark is, what it is given and what it reports. Every benchmark compares vmed
 * with a C program doing the same work (same guest, same number of operations, same handler
 * work) in the same run, and reports the ratio of the medians: vmed / C, lower is better.
 */

/** How much work each sample does: `full` for real figures, `tiny` for tests (shape only). */
export type BenchScale = 'full' | 'tiny';

/** One measurement of one side: the cost of one operation, and how many operations were seen. */
export interface Sample {
  /** Cost of one operation, in the benchmark's unit. */
  readonly perOp: number;
  /** Operations the handler saw (exits, doorbells, interrupts, MiB, cycles). */
  readonly ops: number;
  /** Other counts worth reporting, e.g. how many handler calls the doorbells coalesced into. */
  readonly detail?: Readonly<Record<string, number>>;
}

/** A place to run one extra vmed sample under the CPU profiler (see `harness/profile.ts`). */
export interface ProfileCapture {
  /** Runs `sample` while the profiler records; returns its result and the `.cpuprofile` path. */
  capture(name: string, sample: () => Promise<Sample>): Promise<{ sample: Sample; path: string }>;
}

/** What a benchmark's `run` is given. */
export interface BenchContext {
  /** Alternating rounds; each round takes one vmed sample and one C sample. */
  readonly rounds: number;
  readonly scale: BenchScale;
  /** Runs a subcommand of the compiled C program (see `harness/c-program.ts`). */
  readonly c: CRunner;
  /** When set, the benchmark's vmed side is profiled once after the rounds. */
  readonly profiler?: ProfileCapture;
  /** Progress lines (stderr in the CLI). */
  readonly log: (line: string) => void;
}

/** The compiled C side. */
export interface CRunner {
  /**
   * Runs `vmed-bench-c <args…>` and returns its JSON result line. `inheritFd` is passed to the
   * child as its fd 3 (the DMA benchmark hands over vmed's RAM memfd this way).
   */
  run(args: readonly string[], options?: { readonly inheritFd?: number }): Promise<CResult>;
}

/** The line every C subcommand prints: `ns` for `timedOps` operations, `ops` seen in total. */
export interface CResult {
  readonly ops: number;
  readonly timedOps: number;
  readonly ns: number;
  readonly [key: string]: number | boolean;
}

/** A benchmark's figures. */
export interface BenchResult {
  readonly name: string;
  readonly unit: string;
  /** Median cost per operation, vmed side. */
  readonly vmed: number;
  /** Median cost per operation, C side. */
  readonly c: number;
  /** vmed / c; lower is better. */
  readonly ratio: number;
  /**
   * The middle half (first to third quartile) of the per-round ratios: each round's vmed
   * figure over the C figure taken next to it. Wide on a busy machine; the median decides.
   */
  readonly ratioSpread: readonly [number, number];
  /** The ratio this benchmark should stay at or below. */
  readonly goal: number;
  readonly met: boolean;
  /** Every round's figure, in round order. */
  readonly samples: { readonly vmed: readonly number[]; readonly c: readonly number[] };
  /** Operations each sample was to do, and what each side's handler counted per round. */
  readonly operations: { readonly expected: number; readonly vmed: readonly number[]; readonly c: readonly number[] };
  /** Each round's {@link Sample.detail}, per side, when the benchmark reports one. */
  readonly details?: { readonly vmed: ReadonlyArray<Readonly<Record<string, number>>>; readonly c: ReadonlyArray<Readonly<Record<string, number>>> };
  /** What the comparison rests on (modes, sizes, shared memory), one line each. */
  readonly notes: readonly string[];
  /** The `.cpuprofile` of the profiled vmed sample, with `--profile`. */
  readonly profile?: string;
}

/** A benchmark that did not run here, and why. */
export interface BenchSkip {
  readonly name: string;
  readonly unit: string;
  readonly goal: number;
  readonly skipped: string;
}

/**
 * One benchmark. Modules export these; `registry.ts` lists the modules. A module must not
 * load hypervisor bindings at import time: do it in `run` (after `available()` said yes), so
 * listing benchmarks on a KVM host never loads Xen's libraries and vice versa.
 */
export interface Benchmark {
  /** `area.what`, e.g. `kvm.mmio_exit`. */
  readonly name: string;
  /** Unit of one operation's cost, e.g. `µs/exit`. */
  readonly unit: string;
  /** Largest acceptable vmed/C ratio. */
  readonly goal: number;
  /** One line: what is measured on each side. */
  readonly description: string;
  /** `true` when it can run here, else the reason it cannot (printed as `skipped: <reason>`). */
  available(): true | string;
  run(context: BenchContext): Promise<BenchResult>;
}
