/**
 * What a conformance scenario is: a named async function over one session, written once with
 * `node:assert/strict` so it runs under vitest and under the `vmed conformance` command alike.
 */
import type { ConformanceSession } from './target.js';

/** What a scenario gets besides its session. */
export interface ScenarioContext {
  /** The target's name (`"sim"`, `"kvm"`…), for messages only: scenarios do not branch on it. */
  readonly target: string;
  /** Opens another session of the same target; the runner closes it after the scenario, pass or fail. */
  openSession(): Promise<ConformanceSession>;
}

export interface Scenario {
  /** `"<area>.<behaviour>"`, e.g. `"msi.mask-pending-unmask-once"`. */
  readonly name: string;
  /** One line: what the contract demands here. */
  readonly summary: string;
  run(session: ConformanceSession, context: ScenarioContext): Promise<void>;
}

export type ScenarioStatus = 'pass' | 'fail' | 'skip';

export interface ScenarioResult {
  readonly scenario: string;
  readonly status: ScenarioStatus;
  /** Why it failed or was skipped. */
  readonly reason?: string;
  readonly ms: number;
}

/** Declares a scenario (a typed identity, so each file reads as a list of them). */
export function scenario(name: string, summary: string, run: Scenario['run']): Scenario {
  return Object.freeze({ name, summary, run });
}
