/**
 * Registers the suite with a test framework, given its `describe` and `it`, so this entry
 * does not import vitest (or any framework) itself:
 *
 * ```ts
 * import { describe, it, afterAll } from 'vitest';
 * registerConformanceSuite(createConformanceTarget(), { describe, it, afterAll });
 * ```
 */
import { selectScenarios } from './registry.js';
import { executeScenario, scenarioTimeout } from './runner.js';
import type { Scenario } from './scenario.js';
import type { ConformanceTarget } from './target.js';

type Body = () => Promise<void>;

/** The part of a framework's `it` the suite uses (vitest's and jest's fit). */
export interface SuiteTest {
  (name: string, body: Body, timeout?: number): void;
  skip(name: string, body: Body): void;
}

export interface SuiteApi {
  describe(name: string, body: () => void): void;
  it: SuiteTest;
  /** Where given, disposes the target after the suite. */
  afterAll?(body: Body): void;
}

export interface RegisterOptions {
  readonly timeoutMs?: number;
  readonly only?: readonly string[];
  readonly scenarios?: readonly Scenario[];
}

/** One test per scenario under `conformance: <target>`; the target's skips become skipped tests with their reason. */
export function registerConformanceSuite(target: ConformanceTarget, api: SuiteApi, options: RegisterOptions = {}): void {
  const timeoutMs = scenarioTimeout(target, options);
  api.describe(`conformance: ${target.name}`, () => {
    for (const s of selectScenarios(options.only, options.scenarios)) {
      const reason = target.skips[s.name];
      if (reason !== undefined) {
        api.it.skip(`${s.name} (skipped: ${reason})`, async () => {});
        continue;
      }
      api.it(
        s.name,
        async () => {
          const { result, error } = await executeScenario(target, s, timeoutMs);
          if (result.status === 'fail') throw error ?? new Error(result.reason);
        },
        // The runner enforces the scenario's limit; the framework's only backs it up.
        timeoutMs + 15_000,
      );
    }
    api.afterAll?.(async () => {
      await target.dispose?.();
    });
  });
}
