/**
 * Write-protect page tracking on KVM: each tracked range of guest RAM becomes a read-only
 * memory slot (the RAM slot is split around it), so guest reads go on without exits while
 * every guest write exits as MMIO. The exit reaches {@link PageTracker.handleWrite} before the
 * sink; the tracked-write handler says whether the store lands in RAM (`apply`, written through
 * the host mapping and marked dirty when logging) or is swallowed (`drop`).
 *
 * Every MMIO write exit asks here first, so the question is cheap: {@link PageTracker.tracking}
 * is false while nothing is tracked (the exit path then does not call in at all), and an
 * address outside the span of all tracked ranges is refused with two comparisons.
 */
import {
  ExistsError,
  InvalidError,
  formatRange,
  rangeContains,
  rangesOverlap,
  type AccessSize,
  type AddressRange,
  type PageTrack,
  type TrackedWriteAction,
  type TrackedWriteHandler,
} from '@vmed/core';
import type { HostRam, HostRamRegion } from '../memory/host-ram.js';
import type { SlotTable } from '../memory/slots.js';
import { HOST_PAGE_SIZE } from '../host/memfd.js';
import { readLe } from '../vcpu/bytes.js';
import type { TrackedWriteSink } from '../vcpu/exit-server.js';

const PAGE = BigInt(HOST_PAGE_SIZE);

interface Tracked {
  readonly range: AddressRange;
  readonly region: HostRamRegion;
  readonly handler: TrackedWriteHandler;
}

class KvmPageTrack implements PageTrack {
  readonly range: AddressRange;
  #disposed = false;
  readonly #release: () => void;

  constructor(range: AddressRange, release: () => void) {
    this.range = range;
    this.#release = release;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Brings every vCPU out of KVM_RUN until the returned function is called. */
export type Quiesce = () => () => void;

export class PageTracker implements TrackedWriteSink {
  readonly #ram: HostRam;
  readonly #slots: SlotTable;
  readonly #quiesce: Quiesce;
  readonly #onError: (error: unknown) => void;
  readonly #tracked = new Map<KvmPageTrack, Tracked>();
  /** The span of every tracked range, [low, high): most exits miss it with two comparisons. */
  #low = 0n;
  #high = 0n;

  constructor(ram: HostRam, slots: SlotTable, quiesce: Quiesce, onError: (error: unknown) => void) {
    this.#ram = ram;
    this.#slots = slots;
    this.#quiesce = quiesce;
    this.#onError = onError;
  }

  get count(): number {
    return this.#tracked.size;
  }

  /**
   * Starts tracking `range`: page aligned, inside one RAM region, not overlapping another
   * tracked range (`Exists`).
   */
  track(range: AddressRange, handler: TrackedWriteHandler): PageTrack {
    const op = 'kvm.trackWrites';
    if (typeof handler !== 'function') throw new InvalidError(op, 'handler is not a function');
    if (range.base % PAGE !== 0n || range.length % PAGE !== 0n || range.length <= 0n) {
      throw new InvalidError(op, `${formatRange(range)} is not page aligned`);
    }
    const region = this.#ram.ram.find(range.base);
    if (region === undefined || !rangeContains(region, range)) {
      throw new InvalidError(op, `${formatRange(range)} is not inside one RAM region`);
    }
    for (const t of this.#tracked.values()) {
      if (rangesOverlap(t.range, range)) throw new ExistsError(op, `${formatRange(range)} overlaps tracked ${formatRange(t.range)}`);
    }
    const track = new KvmPageTrack(range, () => this.#untrack(track));
    this.#tracked.set(track, { range, region, handler });
    this.#span();
    try {
      this.#relayout(region);
    } catch (error) {
      this.#tracked.delete(track);
      this.#span();
      throw error;
    }
    return track;
  }

  /** Stops every tracking (backend close) and restores the RAM slots. */
  releaseAll(): void {
    for (const track of [...this.#tracked.keys()]) track.dispose();
  }

  /** True while some range is tracked (the exit path asks before calling {@link handleWrite}). */
  get tracking(): boolean {
    return this.#tracked.size > 0;
  }

  handleWrite(address: bigint, data: DataView, at: number, size: number): boolean {
    if (address < this.#low || address >= this.#high) return false;
    let hit: Tracked | undefined;
    for (const t of this.#tracked.values()) {
      if (address >= t.range.base && address < t.range.base + t.range.length) {
        hit = t;
        break;
      }
    }
    if (hit === undefined) return false;
    const end = address + BigInt(size);
    if (end > hit.region.base + hit.region.length) return false; // not RAM past the region: let the sink see it
    // A tracked write is rare next to an ordinary exit: copy its bytes out of kvm_run (or the
    // mailbox) once, here, rather than on every exit.
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = data.getUint8(at + i);
    const pieces: Array<{ at: number; size: AccessSize }> =
      size === 1 || size === 2 || size === 4 || size === 8 ? [{ at: 0, size }] : Array.from({ length: size }, (_, i) => ({ at: i, size: 1 as const }));
    for (const piece of pieces) {
      const pieceAddress = address + BigInt(piece.at);
      let action: TrackedWriteAction = 'apply';
      try {
        action = hit.handler({ address: pieceAddress, size: piece.size, value: readLe(bytes, piece.at, piece.size) });
      } catch (error) {
        // A failing handler cannot say what the guest's store should do; the store lands, so
        // the guest's view of its own memory stays consistent.
        this.#onError(error);
      }
      if (action === 'apply') {
        this.#ram.forEachWindow(hit.region, pieceAddress - hit.region.base, piece.size, (window, done) =>
          window.set(bytes.subarray(piece.at + done, piece.at + done + window.length)),
        );
        this.#slots.markDirty(hit.region, pieceAddress, piece.size);
      }
    }
    return true;
  }

  #untrack(track: KvmPageTrack): void {
    const t = this.#tracked.get(track);
    if (t === undefined) return;
    this.#tracked.delete(track);
    this.#span();
    try {
      this.#relayout(t.region);
    } catch (error) {
      // The range stays read-only in KVM; writes to it still exit and reach the sink.
      this.#onError(error);
    }
  }

  #span(): void {
    let low: bigint | undefined;
    let high = 0n;
    for (const t of this.#tracked.values()) {
      if (low === undefined || t.range.base < low) low = t.range.base;
      const end = t.range.base + t.range.length;
      if (end > high) high = end;
    }
    this.#low = low ?? 0n;
    this.#high = high;
  }

  #relayout(region: HostRamRegion): void {
    const ranges = [...this.#tracked.values()]
      .filter((t) => t.region === region)
      .map((t) => t.range)
      .sort((a, b) => (a.base < b.base ? -1 : 1));
    const release = this.#quiesce();
    try {
      this.#slots.layoutRam(region, ranges);
    } finally {
      release();
    }
  }
}
