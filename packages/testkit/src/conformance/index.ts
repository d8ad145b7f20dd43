/**
 * The backend conformance suite: one set of scenarios, run on every backend (crosvm's
 * pattern), each backend's allowed differences written as `Unsupported` capabilities or as
 * skips with a reason in its target.
 *
 * Writing a target (`<backend>/conformance` exporting `createConformanceTarget(options)`):
 * - `open()` gives a fresh backend with nothing attached (scenarios attach their own sink),
 *   and a {@link GuestDriver} whose handlers count vectors 0x41..0x43 ({@link MSI_VECTORS})
 *   and the vector of `freeLine`, EOI-ing as they go.
 * - `guest.scratch` holds at least 3 whole pages the suite may overwrite, and contains a
 *   boundary between two adjacent RAM regions (`memory.span-regions`).
 * - `mmioWindow` (≥ 1 MiB) and `pioWindow` (≥ 256 ports) are free: the suite claims and maps
 *   inside them.
 * - `osResources()` returns {@link processResources}() unless the backend lives in another
 *   process.
 * - Skip a scenario only for a real limit of the hypervisor, with the reason.
 */
export type { GuestDriver, GuestEventChannel } from './guest-driver.js';
export type { ConformanceSession, ConformanceTarget } from './target.js';
export type { Scenario, ScenarioContext, ScenarioResult, ScenarioStatus } from './scenario.js';
export { scenario } from './scenario.js';
export { conformanceScenarios, findScenario, selectScenarios } from './registry.js';
export { DEFAULT_SCENARIO_TIMEOUT_MS, runConformance, runScenario } from './runner.js';
export type { RunOptions } from './runner.js';
export { registerConformanceSuite } from './register.js';
export type { RegisterOptions, SuiteApi, SuiteTest } from './register.js';
export { RecordingSink } from './recording-sink.js';
export type { IoRequest, ReadResponder } from './recording-sink.js';
export { processResources, quiesce } from './os-resources.js';
export type { OsResources } from './os-resources.js';
export { MSI_VECTORS } from './scenarios/msi.js';
export { attachRecorder, expectCode, expectUnsupported, rawRange, waitUntil } from './helpers.js';
