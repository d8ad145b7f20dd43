/**
 * Every scenario of the suite, by name, in the order they run: cheap checks of the contract's
 * shape first, lifecycle and leak checks last.
 */
import type { Scenario } from './scenario.js';
import { capabilityScenarios } from './scenarios/capabilities.js';
import { directRegionScenarios } from './scenarios/direct-region.js';
import { dirtyScenarios } from './scenarios/dirty.js';
import { disposeScenarios } from './scenarios/dispose.js';
import { doorbellScenarios } from './scenarios/doorbell.js';
import { eventChannelScenarios } from './scenarios/event-channel.js';
import { ioScenarios } from './scenarios/io.js';
import { lineIrqScenarios } from './scenarios/line-irq.js';
import { memoryScenarios } from './scenarios/memory.js';
import { msiScenarios } from './scenarios/msi.js';
import { pageTrackingScenarios } from './scenarios/page-tracking.js';

export const conformanceScenarios: readonly Scenario[] = Object.freeze([
  ...capabilityScenarios,
  ...memoryScenarios,
  ...ioScenarios,
  ...doorbellScenarios,
  ...msiScenarios,
  ...lineIrqScenarios,
  ...eventChannelScenarios,
  ...dirtyScenarios,
  ...pageTrackingScenarios,
  ...directRegionScenarios,
  ...disposeScenarios,
]);

const byName = new Map<string, Scenario>();
for (const s of conformanceScenarios) {
  if (byName.has(s.name)) throw new Error(`duplicate conformance scenario ${s.name}`);
  byName.set(s.name, s);
}

/** The scenario called `name`, if there is one. */
export function findScenario(name: string): Scenario | undefined {
  return byName.get(name);
}

/**
 * Scenarios matching any of `filters`: an exact name, or an area prefix ending in a dot
 * (`"msi."`). No filters: all of them.
 */
export function selectScenarios(filters: readonly string[] | undefined, from: readonly Scenario[] = conformanceScenarios): Scenario[] {
  if (filters === undefined || filters.length === 0) return [...from];
  return from.filter((s) => filters.some((f) => (f.endsWith('.') ? s.name.startsWith(f) : s.name === f)));
}
