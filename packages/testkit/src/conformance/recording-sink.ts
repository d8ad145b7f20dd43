/**
 * A stand-in for the core's dispatcher in the suite: records every request a backend
 * delivers and answers reads from small per-range handlers, all-ones elsewhere (what the
 * dispatcher does for an unclaimed address). On KVM every exit reaches the sink, claimed or
 * not, so scenarios filter the log by range.
 */
import { allOnes, type AccessSize, type IoRequestSink, type IoSpace } from '@vmed/core';

export interface IoRequest {
  readonly kind: 'read' | 'write';
  readonly space: IoSpace;
  readonly address: bigint;
  readonly size: AccessSize;
  /** The value written, or the value the sink answered. */
  readonly value: bigint;
}

/** Answers reads for one range: `(address, size) → value`. */
export type ReadResponder = (address: bigint, size: AccessSize) => bigint;

interface Served {
  readonly space: IoSpace;
  readonly base: bigint;
  readonly end: bigint;
  readonly respond: ReadResponder;
}

export class RecordingSink implements IoRequestSink {
  readonly log: IoRequest[] = [];
  readonly #served: Served[] = [];

  /** Answers reads that start in `[base, base+length)` of `space` with `respond`. */
  serve(space: IoSpace, base: bigint, length: bigint, respond: ReadResponder): void {
    this.#served.push({ space, base, end: base + length, respond });
  }

  read(space: IoSpace, address: bigint, size: AccessSize): bigint {
    const s = this.#served.find((r) => r.space === space && address >= r.base && address < r.end);
    const value = s === undefined ? allOnes(size) : s.respond(address, size);
    this.log.push({ kind: 'read', space, address, size, value });
    return value;
  }

  write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    this.log.push({ kind: 'write', space, address, size, value });
  }

  /** Requests of `space` whose first byte lies in `[base, base+length)`. */
  within(space: IoSpace, base: bigint, length: bigint): IoRequest[] {
    return this.log.filter((r) => r.space === space && r.address >= base && r.address < base + length);
  }

  clear(): void {
    this.log.length = 0;
  }
}
