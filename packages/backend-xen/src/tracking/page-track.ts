/**
 * Write-protect tracking of guest RAM on Xen, as GVT-g shadowed guest page tables: the server
 * claims the `HVMMEM_ioreq_server` memory type for writes
 * (`xendevicemodel_map_mem_type_to_ioreq_server(..., XEN_DMOP_IOREQ_MEM_ACCESS_WRITE)` — one
 * server per domain may hold it), then each tracked range is switched to that type with
 * `xendevicemodel_set_mem_type`. Guest reads still go straight to RAM; guest writes become
 * MMIO ioreqs that the ioreq loop hands to the range's handler and then applies through the
 * foreign mapping or drops. Disposing switches the range back to `HVMMEM_ram_rw`; the last one
 * releases the type. Needs HAP (the lab has it).
 */
import { ExistsError, InvalidError, formatRange, type AddressRange, type PageTrack, type RamRegion, type RangeSet, type TrackedWriteHandler } from '@vmed/core';
import type { TrackedRange } from '../ioreq/loop.js';

/** What page tracking needs from the session's DM handle. */
export interface MemTypeControl {
  /** Claims (`true`) or releases the ioreq_server memory type for this server. */
  claimType(claim: boolean): void;
  /** Sets `nr` frames from `firstPfn` to ioreq_server (`true`) or back to ram_rw. */
  setType(tracked: boolean, firstPfn: bigint, nr: number): void;
}

class XenPageTrack implements PageTrack, TrackedRange {
  readonly range: AddressRange;
  readonly base: bigint;
  readonly end: bigint;
  readonly handler: TrackedWriteHandler;
  #disposed = false;
  readonly #release: (track: XenPageTrack) => void;

  constructor(range: AddressRange, handler: TrackedWriteHandler, release: (track: XenPageTrack) => void) {
    this.range = range;
    this.base = range.base;
    this.end = range.base + range.length;
    this.handler = handler;
    this.#release = release;
  }

  get disposed(): boolean {
    return this.#disposed;
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

const PAGE = 4096n;
const MAX_TRACK_FRAMES = 0xffff_ffffn;

/** The tracked ranges of one session. */
export class PageTracker {
  readonly #ram: RangeSet<RamRegion>;
  readonly #control: MemTypeControl;
  readonly #tracks: XenPageTrack[] = [];
  #typeClaimed = false;

  constructor(ram: RangeSet<RamRegion>, control: MemTypeControl) {
    this.#ram = ram;
    this.#control = control;
  }

  get count(): number {
    return this.#tracks.length;
  }

  /** The tracked range holding `address`, for the ioreq loop. */
  find(address: bigint): TrackedRange | undefined {
    for (const t of this.#tracks) if (address >= t.base && address < t.end) return t;
    return undefined;
  }

  /** Starts tracking `range` (page-aligned, inside RAM, not already tracked). */
  track(range: AddressRange, handler: TrackedWriteHandler): PageTrack {
    const op = 'pageTrack.create';
    if (typeof handler !== 'function') throw new InvalidError(op, 'handler is not a function');
    if (range.length <= 0n || range.base % PAGE !== 0n || range.length % PAGE !== 0n) {
      throw new InvalidError(op, `${formatRange(range)} is not a non-empty page-aligned range`);
    }
    if (range.length / PAGE > MAX_TRACK_FRAMES) throw new InvalidError(op, `${formatRange(range)} is too large`);
    this.#ram.split(range.base, range.length, op);
    const end = range.base + range.length;
    const clash = this.#tracks.find((t) => t.base < end && range.base < t.end);
    if (clash !== undefined) throw new ExistsError(op, `${formatRange(range)} overlaps tracked ${formatRange(clash.range)}`);

    const firstClaim = !this.#typeClaimed;
    if (firstClaim) {
      this.#control.claimType(true);
      this.#typeClaimed = true;
    }
    try {
      this.#control.setType(true, range.base >> 12n, Number(range.length / PAGE));
    } catch (error) {
      if (firstClaim) this.#releaseType();
      throw error;
    }
    const track = new XenPageTrack(range, handler, (t) => this.#untrack(t));
    this.#tracks.push(track);
    return track;
  }

  #untrack(track: XenPageTrack): void {
    const i = this.#tracks.indexOf(track);
    if (i < 0) return;
    this.#tracks.splice(i, 1);
    try {
      this.#control.setType(false, track.base >> 12n, Number(track.range.length / PAGE));
    } finally {
      if (this.#tracks.length === 0) this.#releaseType();
    }
  }

  #releaseType(): void {
    if (!this.#typeClaimed) return;
    this.#typeClaimed = false;
    this.#control.claimType(false);
  }

  /** Disposes every track (session close); errors are collected, not thrown midway. */
  disposeAll(): unknown[] {
    const errors: unknown[] = [];
    for (const t of [...this.#tracks]) {
      try {
        t.dispose();
      } catch (error) {
        errors.push(error);
      }
    }
    return errors;
  }
}
