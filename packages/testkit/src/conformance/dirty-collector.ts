/**
 * The part of the core's dirty tracker the suite needs, until the core has its own (the lead
 * may move this into core): it merges what the backend logged with what device models wrote
 * into one set per copy round, and gives the set back when a round is aborted.
 *
 * On `pull` backends `collect()` pulls, and a pull clears the hypervisor's log: from then on
 * the bits exist only in the round, so an aborted round must put them back or those pages
 * would never be copied again. On `push` backends the hypervisor's log is the toolstack's;
 * the collector holds the device writes it forwarded.
 */
import { PAGE_SHIFT, StateError, type AddressRange, type Backend, type DirtyBitmap } from '@vmed/core';

export interface DirtyRound {
  /** Guest addresses of the round's dirty pages, ascending. */
  readonly pages: readonly bigint[];
  readonly state: 'open' | 'committed' | 'aborted';
  /** Whether the page holding `address` is in the round. */
  has(address: bigint): boolean;
  /** The pages were copied: forget them. */
  commit(): void;
  /** The copy failed: keep the pages for the next round. */
  abort(): void;
}

export class DirtyCollector {
  readonly #backend: Backend;
  /** Page numbers (address >> 12) not yet handed to a committed round. */
  readonly #pending = new Set<bigint>();
  #open = false;

  constructor(backend: Backend) {
    this.#backend = backend;
  }

  /** Pages waiting for the next round. */
  get pendingPages(): number {
    return this.#pending.size;
  }

  /**
   * A device model wrote `range` of guest RAM: remember the pages, and report them to the
   * hypervisor (a no-op on `pull` backends, `modified_memory` on Xen).
   */
  markDeviceWrite(range: AddressRange): void {
    if (range.length <= 0n) return;
    for (let p = range.base >> PAGE_SHIFT; p <= (range.base + range.length - 1n) >> PAGE_SHIFT; p++) this.#pending.add(p);
    if (this.#backend.capabilities.dirtyTracking !== false) this.#backend.dirty.push(range);
  }

  /** Starts a round: everything dirty since the last committed round. One round at a time. */
  collect(): DirtyRound {
    if (this.#open) throw new StateError('dirty.collect', 'a round is already open: commit or abort it first');
    // Pull before touching #pending: if the pull throws, nothing is lost.
    const pulled = this.#backend.capabilities.dirtyTracking === 'pull' ? bitmapPages(this.#backend.dirty.pull()) : [];
    for (const address of pulled) this.#pending.add(address >> PAGE_SHIFT);
    const taken = [...this.#pending].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    this.#pending.clear();
    this.#open = true;
    const set = new Set(taken);
    let state: DirtyRound['state'] = 'open';
    const end = (to: 'committed' | 'aborted') => {
      if (state !== 'open') throw new StateError(`dirty.${to === 'committed' ? 'commit' : 'abort'}`, `the round is already ${state}`);
      state = to;
      this.#open = false;
      if (to === 'aborted') for (const p of taken) this.#pending.add(p);
    };
    return {
      pages: Object.freeze(taken.map((p) => p << PAGE_SHIFT)),
      get state() {
        return state;
      },
      has: (address) => set.has(address >> PAGE_SHIFT),
      commit: () => end('committed'),
      abort: () => end('aborted'),
    };
  }
}

/** Guest addresses of the pages set in `bitmaps`, ascending within each bitmap. */
export function bitmapPages(bitmaps: readonly DirtyBitmap[]): bigint[] {
  const out: bigint[] = [];
  for (const b of bitmaps) {
    for (let word = 0; word < b.bits.length; word++) {
      const w = b.bits[word] as number;
      if (w === 0) continue;
      for (let bit = 0; bit < 32; bit++) {
        const index = word * 32 + bit;
        if (index < b.pages && (w >>> bit) & 1) out.push(b.base + (BigInt(index) << PAGE_SHIFT));
      }
    }
  }
  return out;
}
