/**
 * {@link GuestMemory} over KVM guest RAM: copies, zero-copy views and pins, every one checked
 * against the RAM map before a byte moves. A guest address outside RAM is `Invalid` (with
 * `bytesDone: 0`), never a host access. Behind that check, standalone RAM sits between
 * `PROT_NONE` guard pages (`guarded-ram.ts`): a host access that got past it would fault
 * rather than read or write the memory next to guest RAM.
 *
 * Views alias the RAM mapping directly (`koffi.view`, no syscall). An external ArrayBuffer
 * cannot be detached, so a disposed view refuses `bytes`/`data` but an array taken from it
 * earlier still points at guest RAM; it must not be used after the backend closes. A `read`
 * view is a promise of the caller, not enforced: the RAM mapping is writable (Xen maps such
 * views read-only).
 */
import {
  BytesMemoryView,
  BadHandleError,
  InvalidError,
  hex,
  isVmedError,
  type GuestMemory,
  type MemoryAccess,
  type MemoryView,
  type PinnedRange,
  type RangeSet,
} from '@vmed/core';
import { hostView } from '../abi/libc.js';
import { MAX_VIEW_BYTES } from '../host/memfd.js';
import type { HostRam, HostRamRegion } from './host-ram.js';
import { PinTable } from './pins.js';

interface Piece {
  readonly range: HostRamRegion;
  readonly offset: bigint;
  readonly length: bigint;
}

class KvmPinnedRange implements PinnedRange {
  readonly address: bigint;
  readonly length: number;
  #disposed = false;
  readonly #memory: KvmGuestMemory;
  readonly #views = new Set<MemoryView>();
  readonly #onDispose: (pin: KvmPinnedRange) => void;

  constructor(memory: KvmGuestMemory, address: bigint, length: number, onDispose: (pin: KvmPinnedRange) => void) {
    this.#memory = memory;
    this.address = address;
    this.length = length;
    this.#onDispose = onDispose;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  view(access: MemoryAccess): MemoryView {
    if (this.#disposed) throw new BadHandleError('memory.pin.view');
    const view = this.#memory.view(this.address, this.length, access);
    this.#views.add(view);
    return view;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const v of this.#views) v.dispose();
    this.#views.clear();
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export class KvmGuestMemory implements GuestMemory {
  readonly #host: HostRam;
  readonly #pins: PinTable;
  readonly #views = new Set<BytesMemoryView>();
  readonly #pinned = new Set<KvmPinnedRange>();
  #closed = false;

  constructor(host: HostRam) {
    this.#host = host;
    this.#pins = new PinTable(host);
  }

  get ram(): RangeSet<HostRamRegion> {
    return this.#host.ram;
  }

  /** Live pins and views (for `resources()`). */
  get pinCount(): number {
    return this.#pinned.size;
  }

  get viewCount(): number {
    return this.#views.size;
  }

  read(address: bigint, dst: Uint8Array): void {
    const pieces = this.#split('memory.read', address, dst.length);
    let at = 0;
    for (const p of pieces) {
      this.#host.forEachWindow(p.range, p.offset, Number(p.length), (window, done) => dst.set(window, at + done));
      at += Number(p.length);
    }
  }

  write(address: bigint, src: Uint8Array): void {
    const pieces = this.#split('memory.write', address, src.length);
    let at = 0;
    for (const p of pieces) {
      this.#host.forEachWindow(p.range, p.offset, Number(p.length), (window, done) => window.set(src.subarray(at + done, at + done + window.length)));
      at += Number(p.length);
    }
  }

  view(address: bigint, length: number, access: MemoryAccess): MemoryView {
    const op = 'memory.view';
    if (access !== 'read' && access !== 'readwrite') throw new InvalidError(op, `access ${String(access)} is not read or readwrite`);
    if (length <= 0 || length > MAX_VIEW_BYTES) throw new InvalidError(op, `length ${length} is not in [1, ${MAX_VIEW_BYTES}]`);
    const pieces = this.#split(op, address, length);
    const first = pieces[0] as Piece;
    const host = this.#host.hostAddressOf(first.range, address);
    let expected = host;
    for (const p of pieces) {
      const pieceHost = this.#host.hostAddressOf(p.range, p.range.base + p.offset);
      if (pieceHost !== expected) {
        throw new InvalidError(op, `guest range ${hex(address)}+${hex(length)} spans RAM regions that are not contiguous in the host`, { bytesDone: 0 });
      }
      expected += p.length;
    }
    // One region's cached window when the range fits in it; a fresh host view only for a range
    // across host-contiguous regions or a chunk boundary.
    const bytes = (pieces.length === 1 ? this.#host.windowAt(first.range, first.offset, length) : undefined) ?? new Uint8Array(hostView(host, length));
    const view = new BytesMemoryView(address, bytes, access, (v) => this.#views.delete(v));
    this.#views.add(view);
    return view;
  }

  pin(address: bigint, length: number): PinnedRange {
    const op = 'memory.pin';
    if (length <= 0) throw new InvalidError(op, `length ${length} is not positive`);
    this.#split(op, address, length);
    this.#pins.pin(address, length);
    const pin = new KvmPinnedRange(this, address, length, (p) => {
      this.#pinned.delete(p);
      if (!this.#closed) this.#pins.unpin(p.address, p.length);
    });
    this.#pinned.add(pin);
    return pin;
  }

  /** Disposes every view and pin and unlocks all pages (backend close). */
  close(): void {
    for (const v of [...this.#views]) v.dispose();
    for (const p of [...this.#pinned]) p.dispose();
    this.#pins.releaseAll();
    this.#closed = true;
    this.#host.forget();
  }

  /** Disposes the pins (the "mappings and pins" step of close) without closing memory. */
  releasePinsAndViews(): void {
    for (const v of [...this.#views]) v.dispose();
    for (const p of [...this.#pinned]) p.dispose();
    this.#pins.releaseAll();
  }

  #split(operation: string, address: bigint, length: number): Piece[] {
    if (this.#closed) throw new BadHandleError(operation);
    if (typeof address !== 'bigint') throw new InvalidError(operation, 'address must be a bigint', { bytesDone: 0 });
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidError(operation, `length ${length} is not a byte count`, { bytesDone: 0 });
    try {
      return this.#host.ram.split(address, BigInt(length), operation);
    } catch (cause) {
      if (isVmedError(cause, 'Invalid')) {
        throw new InvalidError(operation, `${hex(address)}+${hex(length)}: ${cause.message}`, { bytesDone: 0, cause });
      }
      throw cause;
    }
  }
}
