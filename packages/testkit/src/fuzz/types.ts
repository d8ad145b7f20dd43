/**
 * Types shared by the fuzz targets, the runner and the CLI.
 */

/** The invariants a run can break, by name (see `invariants.ts` and each target). */
export type InvariantName =
  | 'sink-throws'
  | 'read-width'
  | 'config-read-only'
  | 'config-rw1c'
  | 'config-identity'
  | 'config-untouched-bytes'
  | 'config-paths-agree'
  | 'config-refused-access'
  | 'bar-sizing'
  | 'msi-delivery'
  | 'msi-pending-lost'
  | 'intx-level'
  | 'dma-bounds'
  | 'dma-gating'
  | 'savable'
  | 'restore-identical'
  | 'resume-roundtrip'
  | 'stream-refused'
  | 'stream-unchanged'
  | 'broken-all-ones'
  | 'stopped-all-ones'
  | 'crash-isolation'
  | 'resources-baseline'
  | 'lifecycle'
  | 'dispatch-pieces'
  | 'dispatch-value'
  | 'dispatch-claims'
  | 'unexpected-throw';

/** One broken invariant, with where in the program it happened. */
export interface Violation {
  readonly invariant: InvariantName;
  readonly message: string;
  /** Index of the program step (decoded operation) that exposed it. */
  readonly step: number;
}

/** Thrown out of a fast-check property so that fast-check records and shrinks the program. */
export class FuzzViolationError extends Error {
  override readonly name = 'FuzzViolationError';
  constructor(readonly violations: readonly Violation[]) {
    super(violations.map((v) => `[${v.invariant}] step ${v.step}: ${v.message}`).join('\n'));
  }
}

/**
 * What one run of a program gives back: the violations it found (empty when all held) and a
 * readable trace of the operations it decoded, when tracing was asked for.
 */
export interface ProgramOutcome {
  readonly violations: Violation[];
  readonly trace: string[];
  /** Words of the program the run read: a failing program cut there fails the same way. */
  readonly consumed: number;
}

/** A fuzz target: a family of programs driving one part of vmed through the real core path. */
export interface FuzzTarget {
  readonly name: string;
  readonly description: string;
  /**
   * How many ordinary guest accesses one of this target's accesses is worth, when it is much
   * heavier (a whole state stream resumed): its budget is the per-target budget divided by this.
   */
  readonly accessCost?: number;
  /** Program length in words; fast-check generates lengths in this range. */
  readonly words: { readonly min: number; readonly max: number };
  /**
   * Runs one program on a fresh session. `count(n)` is called with the guest accesses issued
   * (the runner's budget counts these, not fast-check runs). Never throws for a violation:
   * violations are returned.
   */
  run(program: Uint32Array, count: (accesses: number) => void, trace: boolean): Promise<ProgramOutcome>;
}

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  /** Target names; all when omitted. */
  readonly targets?: readonly string[];
  /** Guest accesses to issue per target (default 1,000,000). */
  readonly accessesPerTarget?: number;
  /** fast-check seed; runs with the same seed issue the same programs. */
  readonly seed?: number;
  /** Most milliseconds fast-check may spend shrinking a failing program (default 20,000). */
  readonly shrinkMs?: number;
  /** Called after each batch of programs with the target's progress so far. */
  readonly onProgress?: (target: string, accesses: number) => void;
}

/** What {@link runFuzz} found for one target. */
export interface FuzzTargetResult {
  readonly target: string;
  /** Guest accesses issued (shrinking included); for a target with an `accessCost`, streams fed count too. */
  readonly accesses: number;
  /** The accesses this target was asked for (the budget divided by its `accessCost`). */
  readonly budget: number;
  /** Invariant violations in the failing program (0 when none failed). */
  readonly violations: number;
  /** Accesses per second of wall time for this target. */
  readonly perSecond: number;
  /** fast-check runs (programs) executed. */
  readonly runs: number;
  readonly milliseconds: number;
  /** The shrunk failing program, when one failed. */
  readonly counterexample?: FuzzCounterexample;
}

/** A shrunk failing program, ready to be pasted into a regression test. */
export interface FuzzCounterexample {
  /** The program's words. */
  readonly words: number[];
  /** The seed and fast-check path that reproduce it. */
  readonly seed: number;
  readonly path: string | undefined;
  readonly violations: Violation[];
  /** The decoded operations, one per line. */
  readonly trace: string[];
}

export interface FuzzResults {
  readonly results: FuzzTargetResult[];
}
