/**
 * Fuzzing for vmed: fast-check programs of guest accesses, lifecycle and migration steps driven
 * through the real core path on an instrumented `sim` backend, with invariants checked after
 * every step. {@link runFuzz} is what `pnpm fuzz` and the quick test run call.
 */
export { runFuzz, replayProgram, fuzzTargetNames, DEFAULT_ACCESSES_PER_TARGET } from './runner.js';
export { FUZZ_TARGETS, fuzzTarget } from './targets/index.js';
export { probeDevice, ProbeDevice, PROBE_PCI_FUNCTION } from './probe-device.js';
export { InstrumentedBackend } from './backend.js';
export { buildConfigOracle, judgeConfigWrite } from './config-oracle.js';
export type { ConfigOracle, ConfigWrite } from './config-oracle.js';
export { FuzzViolationError } from './types.js';
export type {
  FuzzCounterexample,
  FuzzOptions,
  FuzzResults,
  FuzzTarget,
  FuzzTargetResult,
  InvariantName as FuzzInvariant,
  ProgramOutcome as FuzzProgramOutcome,
  Violation as FuzzViolation,
} from './types.js';
