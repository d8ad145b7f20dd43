/**
 * `--profile`: one extra vmed sample of each benchmark runs under V8's CPU profiler
 * (`node:inspector`, `Profiler.start`/`stop` on this thread) and is saved as a `.cpuprofile`
 * (open it in Chrome DevTools or VS Code). Only the I/O thread is profiled: in worker
 * execution the vCPU thread's side of the exit path does not appear (its time shows as the
 * I/O thread waiting). Native calls through koffi (`KVM_RUN`, `read`, `write`) show under the
 * nearest symbol V8 finds in libc, which may not be the function called (often `fcntl`).
 */
import { Session } from 'node:inspector/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProfileCapture, Sample } from '../types.js';

/** The parts of a `.cpuprofile` the summary reads. */
interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

/** One function's share of a profile's samples. */
export interface ProfileEntry {
  readonly function: string;
  readonly location: string;
  /** Percent of samples with this function on top of the stack. */
  readonly selfPercent: number;
}

/** Profiles into `directory`, one file per benchmark. */
export class Profiler implements ProfileCapture {
  readonly directory: string;
  /** Sampling interval in µs (V8's default is 1000, too coarse for µs-scale exits). */
  readonly intervalUs: number;

  constructor(directory: string, intervalUs = 50) {
    this.directory = directory;
    this.intervalUs = intervalUs;
  }

  async capture(name: string, sample: () => Promise<Sample>): Promise<{ sample: Sample; path: string }> {
    const session = new Session();
    session.connect();
    try {
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: this.intervalUs });
      await session.post('Profiler.start');
      const outcome = await sample().then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      );
      const { profile } = await session.post('Profiler.stop');
      mkdirSync(this.directory, { recursive: true });
      const path = join(this.directory, `vmed-bench-${name}-${process.pid}.cpuprofile`);
      writeFileSync(path, JSON.stringify(profile));
      if ('error' in outcome) throw outcome.error;
      return { sample: outcome.value, path };
    } finally {
      await session.post('Profiler.disable').catch(() => undefined);
      session.disconnect();
    }
  }
}

/** The functions with the most self time in a `.cpuprofile` (idle and GC included, as V8 names them). */
export function summarizeProfile(profile: CpuProfile, top = 12): ProfileEntry[] {
  const samples = profile.samples ?? [];
  if (samples.length === 0) return [];
  const counts = new Map<number, number>();
  for (const id of samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  const byFunction = new Map<string, { function: string; location: string; count: number }>();
  for (const node of profile.nodes) {
    const count = counts.get(node.id) ?? 0;
    if (count === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    // Under tsx the code is transformed onto one line: a line number of 0 says nothing.
    const file = url.replace(/^file:\/\//, '').replace(/^.*\/packages\//, '');
    const location = url === '' ? '' : lineNumber > 0 ? `${file}:${lineNumber + 1}` : file;
    const key = `${functionName}@${location}`;
    // A native frame (no script): V8 names it after the nearest libc symbol, not the call made.
    const name = functionName === '' ? '(anonymous)' : url === '' && !functionName.startsWith('(') ? `${functionName} [native]` : functionName;
    const entry = byFunction.get(key) ?? { function: name, location, count: 0 };
    entry.count += count;
    byFunction.set(key, entry);
  }
  return [...byFunction.values()]
    .sort((a, b) => b.count - a.count)
    .slice(0, top)
    .map((e) => ({ function: e.function, location: e.location, selfPercent: (100 * e.count) / samples.length }));
}
