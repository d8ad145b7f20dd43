/**
 * The plain runner behind `pnpm fuzz` and the quick run in the tests: for each target, fast-check
 * generates programs in batches until the target has issued its budget of guest accesses (the
 * budget counts accesses, not fast-check runs). A failing program is shrunk by fast-check, then
 * replayed with tracing to give a readable counterexample.
 */
import fc from 'fast-check';
import { performance } from 'node:perf_hooks';
import { FUZZ_TARGETS, fuzzTarget } from './targets/index.js';
import { FuzzViolationError, type FuzzCounterexample, type FuzzOptions, type FuzzResults, type FuzzTarget, type FuzzTargetResult, type ProgramOutcome } from './types.js';

/** Default budget of `pnpm fuzz`. */
export const DEFAULT_ACCESSES_PER_TARGET = 1_000_000;
/** Most programs one fast-check batch runs (a batch is one `fc.check`, one seed). */
const MAX_BATCH_RUNS = 100;

/** The names of every target. */
export function fuzzTargetNames(): string[] {
  return FUZZ_TARGETS.map((t) => t.name);
}

/** Runs `program` once on `target`, with a trace: what a regression test calls. */
export async function replayProgram(target: string, words: readonly number[]): Promise<ProgramOutcome & { accesses: number }> {
  const t = fuzzTarget(target);
  if (t === undefined) throw new Error(`unknown fuzz target "${target}"`);
  let accesses = 0;
  const outcome = await t.run(Uint32Array.from(words), (n) => (accesses += n), true);
  return { ...outcome, accesses };
}

/** Fuzzes each selected target until its access budget is spent or a program fails. */
export async function runFuzz(options: FuzzOptions = {}): Promise<FuzzResults> {
  const names = options.targets ?? fuzzTargetNames();
  const targets = names.map((n) => {
    const t = fuzzTarget(n);
    if (t === undefined) throw new Error(`unknown fuzz target "${n}" (targets: ${fuzzTargetNames().join(', ')})`);
    return t;
  });
  const budget = options.accessesPerTarget ?? DEFAULT_ACCESSES_PER_TARGET;
  if (!Number.isSafeInteger(budget) || budget < 1) throw new Error(`accessesPerTarget ${budget} is not a positive integer`);
  const seed = options.seed ?? Date.now() % 0x7fffffff;
  const results: FuzzTargetResult[] = [];
  const shrinkMs = options.shrinkMs ?? 20_000;
  for (const target of targets) results.push(await fuzzOne(target, budget, seed, shrinkMs, options.onProgress));
  return { results };
}

async function fuzzOne(target: FuzzTarget, perTarget: number, seed: number, shrinkMs: number, onProgress: FuzzOptions['onProgress']): Promise<FuzzTargetResult> {
  const started = performance.now();
  const budget = Math.max(1, Math.ceil(perTarget / (target.accessCost ?? 1)));
  let accesses = 0;
  let runs = 0;
  let counterexample: FuzzCounterexample | undefined;
  const count = (n: number) => {
    accesses += n;
  };
  const programs = fc.uint32Array({ minLength: target.words.min, maxLength: target.words.max });
  const property = fc.asyncProperty(programs, async (words) => {
    runs++;
    const outcome = await target.run(words, count, false);
    if (outcome.violations.length > 0) throw new FuzzViolationError(outcome.violations);
  });
  for (let batch = 0; accesses < budget; batch++) {
    const batchSeed = (seed + Math.imul(batch, 0x9e3779b1)) | 0;
    // Size the batch from what programs have cost so far, so the budget is not overshot much.
    const perRun = runs === 0 ? target.words.max / 8 : accesses / runs;
    const numRuns = Math.max(1, Math.min(MAX_BATCH_RUNS, Math.ceil((budget - accesses) / Math.max(1, perRun))));
    // Search without shrinking; a failure is shrunk afterwards, within a time limit.
    const found = await fc.check(property, { seed: batchSeed, numRuns, endOnFailure: true });
    onProgress?.(target.name, accesses);
    if (!found.failed) continue;
    const shrunk = await fc.check(property, { seed: batchSeed, path: found.counterexamplePath ?? undefined, interruptAfterTimeLimit: shrinkMs });
    const failing = shrunk.failed ? shrunk : found;
    counterexample = await explain(target, [...((failing.counterexample?.[0] as Uint32Array | undefined) ?? [])], batchSeed, failing.counterexamplePath ?? undefined, failing.errorInstance);
    break;
  }
  const milliseconds = performance.now() - started;
  return {
    target: target.name,
    accesses,
    budget,
    violations: counterexample?.violations.length ?? 0,
    perSecond: Math.round(accesses / Math.max(milliseconds / 1000, 1e-6)),
    runs,
    milliseconds: Math.round(milliseconds),
    ...(counterexample === undefined ? {} : { counterexample }),
  };
}

/**
 * Replays a failing program with a trace, cut to the words it read before the violation (the
 * rest cannot matter: a run stops at its first violation), checking the cut one still fails.
 */
async function explain(target: FuzzTarget, words: number[], seed: number, path: string | undefined, thrown: unknown): Promise<FuzzCounterexample> {
  let replay = await target.run(Uint32Array.from(words), () => undefined, true);
  let program = words;
  if (replay.violations.length > 0 && replay.consumed < words.length) {
    const cut = words.slice(0, replay.consumed);
    const again = await target.run(Uint32Array.from(cut), () => undefined, true);
    if (again.violations.length > 0) {
      program = cut;
      replay = again;
    }
  }
  const violations =
    replay.violations.length > 0
      ? replay.violations
      : thrown instanceof FuzzViolationError
        ? [...thrown.violations]
        : [{ invariant: 'unexpected-throw' as const, message: String(thrown), step: 0 }];
  return { words: program, seed, path, violations, trace: replay.trace };
}
