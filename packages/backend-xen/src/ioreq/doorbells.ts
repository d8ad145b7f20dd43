/**
 * Doorbells on Xen are served in the ioreq path (`doorbells: 'userspace'`): KVM's ioeventfd
 * has no Xen counterpart, so a write that matches a doorbell is answered like any write (the
 * vCPU waits for the response) and the handler runs right after the vCPU is released, with a
 * count of 1. A doorbell outside every claim still needs Xen to route its address to us, so it
 * holds its own reference on the server's ranges.
 */
import { ExistsError, InvalidError, UnsupportedError, hex, type Doorbell, type DoorbellHandler, type IoEventSpec } from '@vmed/core';
import type { DoorbellEntry } from './loop.js';

class XenDoorbell implements Doorbell, DoorbellEntry {
  readonly spec: IoEventSpec;
  readonly space: 'mmio' | 'pio';
  readonly address: bigint;
  readonly length: 1 | 2 | 4 | 8;
  readonly datamatch: bigint | undefined;
  #rings = 0;
  #disposed = false;
  readonly #handler: DoorbellHandler;
  readonly #release: (bell: XenDoorbell) => void;

  constructor(spec: IoEventSpec, length: 1 | 2 | 4 | 8, handler: DoorbellHandler, release: (bell: XenDoorbell) => void) {
    this.spec = spec;
    this.space = spec.space;
    this.address = spec.address;
    this.length = length;
    this.datamatch = spec.datamatch;
    this.#handler = handler;
    this.#release = release;
  }

  get rings(): number {
    return this.#rings;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  ring(): void {
    if (this.#disposed) return;
    this.#rings++;
    this.#handler(1);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#release(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Routes a doorbell's address to the server (and back) — `IoRouting.acquire`/`release`. */
export interface DoorbellRouting {
  acquire(space: 'mmio' | 'pio', start: bigint, end: bigint): void;
  release(space: 'mmio' | 'pio', start: bigint, end: bigint): void;
}

/** The doorbells of one session. */
export class DoorbellTable {
  readonly #bells: XenDoorbell[] = [];
  readonly #routing: DoorbellRouting;

  constructor(routing: DoorbellRouting) {
    this.#routing = routing;
  }

  get count(): number {
    return this.#bells.length;
  }

  /** Registers a doorbell; see the module doc. */
  register(spec: IoEventSpec, handler: DoorbellHandler): Doorbell {
    const op = 'xen.registerIoEvent';
    if (spec.space !== 'mmio' && spec.space !== 'pio') throw new InvalidError(op, `unknown space ${String(spec.space)}`);
    if (typeof handler !== 'function') throw new InvalidError(op, 'handler is not a function');
    if (spec.length === 0) throw new UnsupportedError(op, 'Xen serves doorbells from ioreqs, which carry a size: length 0 (any width) is KVM only');
    if (spec.length !== 1 && spec.length !== 2 && spec.length !== 4 && spec.length !== 8) throw new InvalidError(op, `length ${String(spec.length)}`);
    if (spec.space === 'pio' && spec.length === 8) throw new InvalidError(op, 'port doorbells are at most 4 bytes');
    const limit = spec.space === 'pio' ? 0x10000n : 1n << 64n;
    if (typeof spec.address !== 'bigint' || spec.address < 0n || spec.address + BigInt(spec.length) > limit) {
      throw new InvalidError(op, `doorbell at ${String(spec.address)} leaves the ${spec.space} space`);
    }
    if (spec.datamatch !== undefined && (spec.datamatch < 0n || spec.datamatch >= 1n << BigInt(spec.length * 8))) {
      throw new InvalidError(op, `datamatch ${hex(spec.datamatch)} does not fit ${spec.length} bytes`);
    }
    const end = spec.address + BigInt(spec.length);
    // KVM's rule for ioeventfds: overlapping doorbells clash unless both match distinct values.
    const clash = this.#bells.find(
      (b) =>
        b.space === spec.space &&
        b.address < end &&
        spec.address < b.address + BigInt(b.length) &&
        (b.datamatch === undefined || spec.datamatch === undefined || b.datamatch === spec.datamatch),
    );
    if (clash !== undefined) throw new ExistsError(op, `a doorbell at ${hex(clash.address)} would ring for the same writes`);
    this.#routing.acquire(spec.space, spec.address, end);
    const bell = new XenDoorbell({ ...spec }, spec.length, handler, (b) => {
      const i = this.#bells.indexOf(b);
      if (i >= 0) this.#bells.splice(i, 1);
      this.#routing.release(b.space, b.address, b.address + BigInt(b.length));
    });
    this.#bells.push(bell);
    return bell;
  }

  /** The doorbell a write of `value` (`size` bytes at `address`) rings, if any. */
  match(space: 'mmio' | 'pio', address: bigint, size: number, value: bigint): DoorbellEntry | undefined {
    for (const b of this.#bells) {
      if (b.space !== space || b.address !== address || b.length !== size) continue;
      if (b.datamatch === undefined || b.datamatch === value) return b;
    }
    return undefined;
  }

  /** Every live doorbell (for close). */
  all(): Doorbell[] {
    return [...this.#bells];
  }
}
