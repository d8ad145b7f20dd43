/**
 * Guest memory on Xen: the guest's frames mapped into dom0 with `xenforeignmemory_map`,
 * through the {@link MapCache}. Every range is checked against the RAM map before a frame is
 * mapped; views and pins hold their mapping for their life.
 *
 * A view's `bytes` alias the mapping: once the view (or its pin) is disposed, the getter
 * refuses, and a `Uint8Array` kept from before must not be used — the mapping may be gone
 * (JavaScript cannot detach a buffer over external memory). Views inside one cached bucket
 * keep that bucket mapped, so a stale reference there reads guest memory rather than faults;
 * the contract still forbids it.
 */
import {
  BytesMemoryView,
  BadHandleError,
  InvalidError,
  isVmedError,
  VmedError,
  hex,
  type GuestMemory,
  type MemoryAccess,
  type MemoryView,
  type PinnedRange,
  type RamRegion,
  type RangeSet,
} from '@vmed/core';
import type { RamAccess } from '../ioreq/loop.js';
import type { Lease, MapCache } from './map-cache.js';

/** Largest view or pin: 1 GiB (one mapping, well under `koffi.view`'s 4 GiB). */
export const MAX_VIEW_BYTES = 1 << 30;

/** Called after the device model wrote guest RAM (dirty reporting). */
export type WriteObserver = (address: bigint, length: number) => void;

class XenPinnedRange implements PinnedRange {
  readonly address: bigint;
  readonly length: number;
  #lease: Lease | undefined;
  readonly #views = new Set<BytesMemoryView>();
  readonly #onDispose: (pin: XenPinnedRange) => void;

  constructor(lease: Lease, onDispose: (pin: XenPinnedRange) => void) {
    this.address = lease.address;
    this.length = lease.bytes.length;
    this.#lease = lease;
    this.#onDispose = onDispose;
  }

  get disposed(): boolean {
    return this.#lease === undefined;
  }

  view(access: MemoryAccess): MemoryView {
    const lease = this.#lease;
    if (lease === undefined) throw new BadHandleError('memory.pin.view', `pin of ${hex(this.address)} is disposed`);
    if (access !== 'read' && access !== 'readwrite') throw new InvalidError('memory.pin.view', `unknown access ${String(access)}`);
    const view = new BytesMemoryView(this.address, lease.bytes, access, (v) => this.#views.delete(v));
    this.#views.add(view);
    return view;
  }

  dispose(): void {
    const lease = this.#lease;
    if (lease === undefined) return;
    for (const view of [...this.#views]) view.dispose();
    this.#lease = undefined;
    lease.release();
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** See the module doc. */
export class XenGuestMemory implements GuestMemory, RamAccess {
  readonly ram: RangeSet<RamRegion>;
  readonly #cache: MapCache;
  readonly #views = new Map<BytesMemoryView, Lease>();
  readonly #pins = new Set<XenPinnedRange>();
  #closed = false;
  /** Set by the backend while dirty tracking forwards device-model writes. */
  onWrite: WriteObserver | undefined;

  constructor(ram: RangeSet<RamRegion>, cache: MapCache) {
    this.ram = ram;
    this.#cache = cache;
  }

  /** Live pins. */
  get pins(): number {
    return this.#pins.size;
  }

  /**
   * Host mappings held for live views and pins. Idle cached buckets are not counted: they are
   * the cache's, and go on eviction, `INVALIDATE` or close.
   */
  get heldMappings(): number {
    return this.#cache.heldMappings;
  }

  /** Live views (not counting views made from pins). */
  get views(): number {
    return this.#views.size;
  }

  check(address: bigint, length: number): void {
    this.#open('memory.check');
    this.#split('memory.check', address, length);
  }

  read(address: bigint, dst: Uint8Array): void {
    this.#copy('memory.read', address, dst.length, (bytes, at) => dst.set(bytes, at));
  }

  write(address: bigint, src: Uint8Array): void {
    this.#copy('memory.write', address, src.length, (bytes, at) => bytes.set(src.subarray(at, at + bytes.length)));
    if (src.length > 0) this.onWrite?.(address, src.length);
  }

  view(address: bigint, length: number, access: MemoryAccess): MemoryView {
    const op = 'memory.view';
    this.#open(op);
    this.#checkLength(op, length);
    if (access !== 'read' && access !== 'readwrite') throw new InvalidError(op, `unknown access ${String(access)}`);
    this.#split(op, address, length);
    const lease = this.#cache.lease(address, length);
    const view = new BytesMemoryView(address, lease.bytes, access, (v) => {
      const held = this.#views.get(v);
      this.#views.delete(v);
      held?.release();
    });
    this.#views.set(view, lease);
    return view;
  }

  pin(address: bigint, length: number): PinnedRange {
    const op = 'memory.pin';
    this.#open(op);
    this.#checkLength(op, length);
    this.#split(op, address, length);
    const pin = new XenPinnedRange(this.#cache.lease(address, length), (p) => this.#pins.delete(p));
    this.#pins.add(pin);
    return pin;
  }

  /** Xen's `INVALIDATE`: idle cached mappings go; held views and pins keep theirs. */
  invalidate(): void {
    this.#cache.invalidate();
  }

  /** Disposes every view and pin and unmaps the cache. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const view of [...this.#views.keys()]) view.dispose();
    for (const pin of [...this.#pins]) pin.dispose();
    this.#cache.clear();
  }

  #open(operation: string): void {
    if (this.#closed) throw new BadHandleError(operation, 'guest memory is closed');
  }

  #checkLength(operation: string, length: number): void {
    if (!Number.isSafeInteger(length) || length <= 0 || length > MAX_VIEW_BYTES) {
      throw new InvalidError(operation, `length ${length} is outside 1..${MAX_VIEW_BYTES}`);
    }
  }

  #split(operation: string, address: bigint, length: number) {
    try {
      return this.ram.split(address, BigInt(length), operation);
    } catch (error) {
      if (error instanceof VmedError) throw new InvalidError(operation, error.message, { bytesDone: 0, cause: error });
      throw error;
    }
  }

  /**
   * Copies `length` bytes at `address` piece by piece (each piece inside one RAM region and one
   * cache bucket); `move` gets each piece's bytes and its offset in the caller's buffer.
   */
  #copy(operation: string, address: bigint, length: number, move: (bytes: Uint8Array, at: number) => void): void {
    this.#open(operation);
    if (length === 0) return;
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidError(operation, `length ${length}`, { bytesDone: 0 });
    const pieces = this.#split(operation, address, length);
    let done = 0;
    try {
      for (const piece of pieces) {
        let cursor = piece.range.base + piece.offset;
        const end = cursor + piece.length;
        const bucket = this.#cache.bucketBytes;
        while (cursor < end) {
          // Stay inside one aligned bucket so the lease shares the cached mapping.
          const windowEnd = (cursor / bucket + 1n) * bucket;
          const chunk = Number((windowEnd < end ? windowEnd : end) - cursor);
          const lease = this.#cache.lease(cursor, chunk);
          try {
            move(lease.bytes, done);
          } finally {
            lease.release();
          }
          done += chunk;
          cursor += BigInt(chunk);
        }
      }
    } catch (error) {
      if (isVmedError(error)) {
        throw new VmedError(error.code, operation, `${error.message} after ${done} of ${length} bytes at ${hex(address)}`, {
          bytesDone: done,
          cause: error,
          ...(error.errno === undefined ? {} : { errno: error.errno }),
        });
      }
      throw error;
    }
  }
}
