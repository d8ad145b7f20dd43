/**
 * Counts of what this process holds from the OS, for leak checks: open file descriptors,
 * mappings in `/proc/self/maps` and threads. Targets return these from `osResources()` so
 * every backend is measured the same way. Where `/proc` is missing, the counts are -1.
 */
import { readFileSync, readdirSync } from 'node:fs';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface OsResources {
  fds: number;
  mappings: number;
  threads: number;
}

export function processResources(): OsResources {
  return {
    // readdir holds one descriptor of its own while it runs; it is the same in every count.
    fds: count(() => readdirSync('/proc/self/fd').length),
    mappings: count(() => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.length > 0).length),
    threads: count(() => readdirSync('/proc/self/task').length),
  };
}

function count(f: () => number): number {
  try {
    return f();
  } catch {
    return -1;
  }
}

let gc: (() => void) | null | undefined;

/**
 * Collects garbage where it can (the JS heap otherwise holds freed buffers, and their
 * mappings, until it feels like collecting), lets finalisers and worker exits settle, then
 * measures.
 */
export async function quiesce(measure: () => OsResources): Promise<OsResources> {
  const collect = reachGc();
  for (let i = 0; i < 3; i++) {
    collect?.();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return measure();
}

function reachGc(): (() => void) | undefined {
  if (gc !== undefined) return gc ?? undefined;
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') {
    gc = exposed as () => void;
    return gc;
  }
  try {
    // Only a context made after the flag is set sees `gc`; the flag itself is harmless.
    v8.setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    gc = typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    gc = null;
  }
  return gc ?? undefined;
}
