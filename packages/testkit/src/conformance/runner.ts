/**
 * Runs scenarios against a target: each in a fresh session that is always closed, under a
 * time limit, with skips only from the target's `skips` map.
 */
import { performance } from 'node:perf_hooks';
import { selectScenarios } from './registry.js';
import type { Scenario, ScenarioContext, ScenarioResult } from './scenario.js';
import type { ConformanceSession, ConformanceTarget } from './target.js';

/** Per-scenario limit when neither the caller nor the target gives one. */
export const DEFAULT_SCENARIO_TIMEOUT_MS = 30_000;
/** How long closing a session may take before it counts as a failure. */
const CLOSE_TIMEOUT_MS = 10_000;

export interface RunOptions {
  /** Per-scenario limit in ms; default the target's `timeoutMs`, else {@link DEFAULT_SCENARIO_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Only these scenarios: exact names or area prefixes ending in a dot (`"msi."`). */
  readonly only?: readonly string[];
  /** The scenarios to choose from; default the whole suite. */
  readonly scenarios?: readonly Scenario[];
  /** Called as each result is known (the CLI prints progress with it). */
  readonly onResult?: (result: ScenarioResult) => void;
}

/** Runs the suite (or `options.only` of it) one scenario at a time. */
export async function runConformance(target: ConformanceTarget, options: RunOptions = {}): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (const s of selectScenarios(options.only, options.scenarios)) {
    const { result } = await executeScenario(target, s, scenarioTimeout(target, options));
    results.push(result);
    options.onResult?.(result);
  }
  return results;
}

/** Runs one scenario; never throws. */
export async function runScenario(target: ConformanceTarget, scenario: Scenario, options: { timeoutMs?: number } = {}): Promise<ScenarioResult> {
  return (await executeScenario(target, scenario, scenarioTimeout(target, options))).result;
}

export function scenarioTimeout(target: ConformanceTarget, options: { timeoutMs?: number }): number {
  return options.timeoutMs ?? target.timeoutMs ?? DEFAULT_SCENARIO_TIMEOUT_MS;
}

/** The result, and on failure the original error (vitest shows its assertion diff). */
export async function executeScenario(
  target: ConformanceTarget,
  scenario: Scenario,
  timeoutMs: number,
): Promise<{ result: ScenarioResult; error?: unknown }> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const skip = target.skips[scenario.name];
  if (skip !== undefined) return { result: { scenario: scenario.name, status: 'skip', reason: skip, ms: 0 } };

  const sessions: ConformanceSession[] = [];
  const deadline = started + timeoutMs;
  const open = async (): Promise<ConformanceSession> => {
    let abandoned = false;
    const opening = target.open();
    // A session that opens after its scenario gave up on it is closed, not leaked.
    opening.then(
      (s) => {
        if (abandoned) void s.close().catch(() => {});
      },
      () => {},
    );
    try {
      const s = await within(opening, deadline - performance.now(), `opening a ${target.name} session did not finish within the scenario's ${timeoutMs} ms limit`);
      sessions.push(s);
      return s;
    } catch (e) {
      abandoned = true;
      throw e;
    }
  };
  const context: ScenarioContext = { target: target.name, openSession: open };

  let error: unknown;
  try {
    const session = await open();
    const running = scenario.run(session, context);
    running.catch(() => {});
    await within(running, deadline - performance.now(), `${scenario.name} timed out after ${timeoutMs} ms`);
  } catch (e) {
    error = e;
  }
  for (const s of sessions) {
    try {
      await within(s.close(), CLOSE_TIMEOUT_MS, `closing the session timed out after ${CLOSE_TIMEOUT_MS} ms`);
    } catch (e) {
      if (error === undefined) error = new Error(`closing the session failed: ${message(e)}`, { cause: e });
    }
  }
  const result: ScenarioResult =
    error === undefined
      ? { scenario: scenario.name, status: 'pass', ms: ms() }
      : { scenario: scenario.name, status: 'fail', reason: message(error), ms: ms() };
  return error === undefined ? { result } : { result, error };
}

/** `promise`, or a rejection with `timeoutMessage` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, timeoutMessage: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(timeoutMessage)), Math.max(0, ms));
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function message(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
