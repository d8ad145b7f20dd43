/**
 * The core's half of dirty tracking: a bitmap of the pages device models wrote (no hypervisor
 * sees writes made through a host mapping), OR-ed with what the backend reports.
 *
 * Collection is two-phase so that a migration that fails half-way loses nothing: `collect()`
 * takes the bits (pulling and clearing the hypervisor's log in `pull` mode), and the caller
 * either `commit()`s once the pages are sent, or `abort()`s, which puts every collected bit
 * back into the core's bitmap for the next round.
 */
import type { RangeSet } from '../address.js';
import { addressRange } from '../address.js';
import type { DirtyBitmap, DirtyLog } from '../backend/tracking.js';
import { PAGE_SHIFT } from '../backend/tracking.js';
import type { RamRegion } from '../backend/memory.js';
import { StateError } from '../errors.js';

/** Bits taken by {@link DirtyTracker.collect}, to be committed or aborted. */
export interface DirtyCollection {
  /** One bitmap per RAM region, in RAM-map order. */
  readonly bitmaps: readonly DirtyBitmap[];
  /** Guest addresses of every dirty page, ascending. */
  pages(): bigint[];
  /** The pages were sent: forget them. */
  commit(): void;
  /** The round failed: keep the bits for the next collection. */
  abort(): void;
}

export class DirtyTracker {
  private readonly own: DirtyBitmap[];
  private open: DirtyCollection | undefined;

  constructor(
    private readonly ram: RangeSet<RamRegion>,
    private readonly log: DirtyLog | undefined,
  ) {
    this.own = ram.ranges.map((r) => emptyBitmap(r.base, r.length));
  }

  /**
   * Records a device-model write of `[address, address+length)`; in `push` mode with logging
   * active, also reports it to the hypervisor. Addresses outside RAM are ignored (the DMA
   * layer has already refused them).
   */
  markDeviceWrite(address: bigint, length: number): void {
    if (length <= 0) return;
    const end = address + BigInt(length);
    for (const bitmap of this.own) {
      const regionEnd = bitmap.base + (BigInt(bitmap.pages) << PAGE_SHIFT);
      const from = address > bitmap.base ? address : bitmap.base;
      const to = end < regionEnd ? end : regionEnd;
      if (from >= to) continue;
      const first = Number((from - bitmap.base) >> PAGE_SHIFT);
      const last = Number((to - 1n - bitmap.base) >> PAGE_SHIFT);
      for (let page = first; page <= last; page++) setBit(bitmap.bits, page);
    }
    if (this.log?.mode === 'push' && this.log.active) {
      this.log.push(addressRange(address, length, 'dirty.markDeviceWrite'));
    }
  }

  /**
   * Takes every dirty bit: the core's own, OR-ed with the hypervisor's log in `pull` mode when
   * logging is active. Only one collection may be open at a time.
   */
  collect(): DirtyCollection {
    if (this.open !== undefined) throw new StateError('dirty.collect', 'a previous collection is neither committed nor aborted');
    // Pull first: if the pull throws, the core's own bits are still in place.
    const pulled = this.log?.mode === 'pull' && this.log.active ? this.log.pull() : [];
    const taken = this.own.map((b) => ({ base: b.base, pages: b.pages, bits: b.bits.slice() }));
    for (const b of this.own) b.bits.fill(0);
    // The backend's bitmaps may be cut differently from the RAM map (KVM slots split around
    // tracked pages): merge page by page, by address.
    for (const page of bitmapPages(pulled)) setPage(taken, page);
    let settled = false;
    const settle = (operation: string) => {
      if (settled) throw new StateError(operation, 'collection already committed or aborted');
      settled = true;
      this.open = undefined;
    };
    const collection: DirtyCollection = {
      bitmaps: taken,
      pages: () => bitmapPages(taken),
      commit: () => settle('dirty.commit'),
      abort: () => {
        settle('dirty.abort');
        for (const t of taken) {
          const own = this.own.find((b) => b.base === t.base);
          if (own === undefined) continue;
          for (let i = 0; i < t.bits.length; i++) own.bits[i] = ((own.bits[i] as number) | (t.bits[i] as number)) >>> 0;
        }
      },
    };
    this.open = collection;
    return collection;
  }

  /** Pages currently marked in the core's own bitmap (not the hypervisor's). */
  pendingDevicePages(): bigint[] {
    return bitmapPages(this.own);
  }

  /** The RAM map the bitmaps follow. */
  get regions(): RangeSet<RamRegion> {
    return this.ram;
  }
}

function emptyBitmap(base: bigint, length: bigint): DirtyBitmap {
  const pages = Number((length + (1n << PAGE_SHIFT) - 1n) >> PAGE_SHIFT);
  return { base, pages, bits: new Uint32Array(Math.ceil(pages / 32)) };
}

function setPage(bitmaps: readonly DirtyBitmap[], address: bigint): void {
  for (const b of bitmaps) {
    if (address < b.base) continue;
    const page = Number((address - b.base) >> PAGE_SHIFT);
    if (page < b.pages) {
      setBit(b.bits, page);
      return;
    }
  }
}

function setBit(bits: Uint32Array, page: number): void {
  const word = page >>> 5;
  bits[word] = ((bits[word] as number) | (1 << (page & 31))) >>> 0;
}

/** Guest addresses of every page set in `bitmaps`, ascending. */
export function bitmapPages(bitmaps: readonly DirtyBitmap[]): bigint[] {
  const out: bigint[] = [];
  for (const b of bitmaps) {
    for (let w = 0; w < b.bits.length; w++) {
      let word = b.bits[w] as number;
      while (word !== 0) {
        const bit = 31 - Math.clz32(word & -word);
        const page = w * 32 + bit;
        if (page < b.pages) out.push(b.base + (BigInt(page) << PAGE_SHIFT));
        word &= word - 1;
      }
    }
  }
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
