/** What the Xen benchmarks share: their availability check and small waiting helpers. */
import { gccAvailable, allAvailable } from '../harness/environment.js';
import type { CResult, Sample } from '../types.js';
import { xenHeadersAvailable, xenLabAvailable } from './environment.js';

/** How long one sample (one guest's run, boot and teardown excluded) may take under emulation. */
export const SAMPLE_TIMEOUT_MS = 600_000;

/** Dom0 of the Xen lab, gcc and the Xen headers, or the first reason one is missing. */
export function xenBenchAvailable(): true | string {
  return allAvailable(xenLabAvailable, gccAvailable, xenHeadersAvailable);
}

export function hexArg(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

export interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}

export function deferred(): Deferred {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** `promise`, or a rejection naming `what` once `ms` pass. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stamps of consecutive timed operations (ms, `performance.now()`), and the figures both sides
 * report: the median gap — the lab's emulator stalls now and then, which moves the mean and
 * not the median — and the mean, in µs.
 */
export class Stamps {
  readonly #at: Float64Array;
  #n = 0;

  constructor(capacity: number) {
    this.#at = new Float64Array(capacity);
  }

  add(ms: number): void {
    if (this.#n < this.#at.length) this.#at[this.#n++] = ms;
  }

  /** `{ medianUs, meanUs }` over the gaps; throws with fewer than two stamps. */
  figures(): { readonly medianUs: number; readonly meanUs: number } {
    const n = this.#n;
    if (n < 2) throw new Error(`${n} timed operations: nothing to measure`);
    const gaps = new Float64Array(n - 1);
    for (let i = 1; i < n; i++) gaps[i - 1] = ((this.#at[i] as number) - (this.#at[i - 1] as number)) * 1000;
    gaps.sort();
    const mid = gaps.length >> 1;
    const medianUs = gaps.length % 2 === 1 ? (gaps[mid] as number) : ((gaps[mid - 1] as number) + (gaps[mid] as number)) / 2;
    return { medianUs, meanUs: (((this.#at[n - 1] as number) - (this.#at[0] as number)) * 1000) / (n - 1) };
  }
}

/** A C result line as a sample: the median gap, the mean as a detail. */
export function cMedianSample(result: CResult): Sample {
  const median = result['medianNs'];
  if (typeof median !== 'number' || !(median > 0) || result.timedOps <= 0) throw new Error(`the C side reported no median: ${JSON.stringify(result)}`);
  return { perOp: median / 1000, ops: result.ops, detail: { meanUs: result.ns / result.timedOps / 1000 } };
}
