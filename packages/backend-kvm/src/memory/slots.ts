/**
 * The VM's memory slots as vmed manages them: RAM regions (split into read-only pieces around
 * write-tracked pages), direct regions, slot ids, the dirty-logging flag, and the dirty bits of
 * slots that were deleted while logging (so a re-layout never loses a dirty page).
 *
 * A slot's size and address cannot change in KVM: re-laying a region out deletes its slots
 * and creates new ones. Guest accesses to the region during that window would exit as MMIO,
 * so the caller quiesces every vCPU around {@link layoutRam}.
 */
import { InvalidError, NoSpaceError, hex, type AddressRange } from '@vmed/core';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../abi/kvm.js';
import type { KvmVm } from '../ioctls/vm.js';
import { HOST_PAGE_SIZE } from '../host/memfd.js';
import type { HostRamRegion } from './host-ram.js';

const PAGE = BigInt(HOST_PAGE_SIZE);

/** One KVM memory slot. */
export interface Slot {
  readonly id: number;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly hostAddress: bigint;
  readonly readonly: boolean;
}

/** How a region's slots are owned. */
type RegionSlots =
  | { readonly owner: 'vmed'; slots: Slot[] }
  /** Adopt mode: the embedding VMM's slot, of which vmed only toggles the dirty-log flag. */
  | { readonly owner: 'vmm'; readonly slot: Slot; readonly flags: number };

export class SlotTable {
  readonly #vm: KvmVm;
  readonly #firstId: number;
  readonly #idCount: number;
  readonly #usedIds = new Set<number>();
  readonly #regions = new Map<HostRamRegion, RegionSlots>();
  readonly #direct = new Map<number, Slot>();
  readonly #saved = new Map<HostRamRegion, Uint32Array>();
  #dirtyLogging = false;

  constructor(vm: KvmVm, ids: { readonly first: number; readonly count: number }) {
    this.#vm = vm;
    this.#firstId = ids.first;
    this.#idCount = ids.count;
  }

  get dirtyLogging(): boolean {
    return this.#dirtyLogging;
  }

  /** Slots vmed created (and will delete). */
  get ownedSlots(): number {
    return this.#usedIds.size;
  }

  /** Registers `region` as one writable slot vmed owns. */
  addRam(region: HostRamRegion): void {
    const slot = this.#create(region.base, region.length, region.hostAddress, false);
    this.#regions.set(region, { owner: 'vmed', slots: [slot] });
  }

  /** Records a region the embedding VMM registered as slot `id` with `flags`. */
  adoptRam(region: HostRamRegion, id: number, flags: number): void {
    const slot: Slot = { id, guestAddress: region.base, size: region.length, hostAddress: region.hostAddress, readonly: (flags & KVM_MEM_READONLY) !== 0 };
    this.#regions.set(region, { owner: 'vmm', slot, flags });
  }

  /** Whether vmed owns the slots of every RAM region (page tracking needs it). */
  get ownsAllRam(): boolean {
    return this.#regions.size > 0 && [...this.#regions.values()].every((r) => r.owner === 'vmed');
  }

  /**
   * Re-lays `region` out as writable slots with read-only slots over `tracked` (page-aligned,
   * sorted, non-overlapping, inside the region). The caller has quiesced the vCPUs. On failure
   * the previous layout is restored before the error is thrown.
   */
  layoutRam(region: HostRamRegion, tracked: readonly AddressRange[]): void {
    const entry = this.#regions.get(region);
    if (entry === undefined || entry.owner !== 'vmed') throw new InvalidError('kvm.slots.layout', `region ${region.name ?? hex(region.base)} is not owned by vmed`);
    const old = entry.slots;
    const wanted = piecesOf(region, tracked);
    if (this.#dirtyLogging) for (const s of old) this.#saveDirty(region, s);
    for (const s of old) this.#delete(s);
    const made: Slot[] = [];
    try {
      for (const p of wanted) made.push(this.#create(p.guestAddress, p.size, p.hostAddress, p.readonly));
    } catch (error) {
      for (const s of made) this.#delete(s);
      entry.slots = old.map((s) => this.#create(s.guestAddress, s.size, s.hostAddress, s.readonly));
      throw error;
    }
    entry.slots = made;
  }

  /** A direct region: a writable slot over `hostAddress`. */
  addDirect(guestAddress: bigint, size: bigint, hostAddress: bigint): Slot {
    const slot = this.#create(guestAddress, size, hostAddress, false, false);
    this.#direct.set(slot.id, slot);
    return slot;
  }

  removeDirect(slot: Slot): void {
    if (!this.#direct.delete(slot.id)) return;
    this.#delete(slot);
  }

  /** Sets or clears `KVM_MEM_LOG_DIRTY_PAGES` on every RAM slot (a flags-only change: safe while vCPUs run). */
  setDirtyLogging(on: boolean): void {
    if (on === this.#dirtyLogging) return;
    const done: Array<() => void> = [];
    try {
      for (const [region, entry] of this.#regions) {
        const slots = entry.owner === 'vmed' ? entry.slots : [entry.slot];
        const base = entry.owner === 'vmm' ? entry.flags & ~KVM_MEM_LOG_DIRTY_PAGES : 0;
        for (const s of slots) {
          this.#register(s, base | (s.readonly ? KVM_MEM_READONLY : 0) | (on ? KVM_MEM_LOG_DIRTY_PAGES : 0));
          done.push(() => this.#register(s, base | (s.readonly ? KVM_MEM_READONLY : 0) | (on ? 0 : KVM_MEM_LOG_DIRTY_PAGES)));
        }
        if (!on) this.#saved.delete(region);
      }
    } catch (error) {
      for (const undo of done.reverse()) undo();
      throw error;
    }
    this.#dirtyLogging = on;
  }

  /**
   * Fetches and clears the dirty log of every slot of `region`, OR-ed with bits saved since the
   * last pull, as one bitmap over the region (bit i = page at base + i*4096).
   */
  pullDirty(region: HostRamRegion): Uint32Array {
    const bitmap = this.#takeSaved(region);
    const entry = this.#regions.get(region);
    if (entry === undefined) return bitmap;
    for (const s of entry.owner === 'vmed' ? entry.slots : [entry.slot]) {
      orSlotLog(bitmap, this.#fetchLog(s), Number((s.guestAddress - region.base) / PAGE));
    }
    return bitmap;
  }

  /** Marks guest pages dirty that KVM did not see written (tracked writes applied by vmed). */
  markDirty(region: HostRamRegion, address: bigint, length: number): void {
    if (!this.#dirtyLogging || length <= 0) return;
    const bitmap = this.#savedBitmap(region);
    const first = Number((address - region.base) / PAGE);
    const last = Number((address + BigInt(length) - 1n - region.base) / PAGE);
    for (let p = first; p <= last; p++) bitmap[p >>> 5] = ((bitmap[p >>> 5] as number) | (1 << (p & 31))) >>> 0;
  }

  /**
   * Deletes every slot vmed created and restores adopted slots' flags. Used by close in adopt
   * mode (in standalone mode closing the VM fd drops the slots with it).
   */
  releaseAll(): void {
    for (const s of [...this.#direct.values()]) this.removeDirect(s);
    if (this.#dirtyLogging) {
      try {
        this.setDirtyLogging(false);
      } catch {
        // Best effort: the adopted VM keeps logging; nothing of vmed's is left behind.
      }
    }
    for (const [region, entry] of this.#regions) {
      if (entry.owner === 'vmed') for (const s of entry.slots) this.#delete(s);
      this.#regions.delete(region);
    }
  }

  #create(guestAddress: bigint, size: bigint, hostAddress: bigint, readonly: boolean, ram = true): Slot {
    const id = this.#allocateId();
    const slot: Slot = { id, guestAddress, size, hostAddress, readonly };
    try {
      this.#register(slot, (readonly ? KVM_MEM_READONLY : 0) | (ram && this.#dirtyLogging ? KVM_MEM_LOG_DIRTY_PAGES : 0));
    } catch (error) {
      this.#usedIds.delete(id);
      throw error;
    }
    return slot;
  }

  #delete(slot: Slot): void {
    this.#vm.setUserMemoryRegion({ slot: slot.id, flags: 0, guestAddress: slot.guestAddress, size: 0n, hostAddress: slot.hostAddress });
    this.#usedIds.delete(slot.id);
  }

  #register(slot: Slot, flags: number): void {
    this.#vm.setUserMemoryRegion({ slot: slot.id, flags, guestAddress: slot.guestAddress, size: slot.size, hostAddress: slot.hostAddress });
  }

  #allocateId(): number {
    for (let id = this.#firstId; id < this.#firstId + this.#idCount; id++) {
      if (!this.#usedIds.has(id)) {
        this.#usedIds.add(id);
        return id;
      }
    }
    throw new NoSpaceError('kvm.slots', `all ${this.#idCount} memory slots vmed may use are taken`);
  }

  #fetchLog(slot: Slot): Uint32Array {
    const pages = Number(slot.size / PAGE);
    // KVM copies whole u64 words; the buffer is an explicit ArrayBuffer (off-heap, see bufferAddress).
    const log = new Uint32Array(new ArrayBuffer(Math.ceil(pages / 64) * 8));
    this.#vm.getDirtyLog(slot.id, log);
    return log;
  }

  #saveDirty(region: HostRamRegion, slot: Slot): void {
    orSlotLog(this.#savedBitmap(region), this.#fetchLog(slot), Number((slot.guestAddress - region.base) / PAGE));
  }

  #savedBitmap(region: HostRamRegion): Uint32Array {
    let bitmap = this.#saved.get(region);
    if (bitmap === undefined) {
      bitmap = new Uint32Array(Math.ceil(Number(region.length / PAGE) / 32));
      this.#saved.set(region, bitmap);
    }
    return bitmap;
  }

  #takeSaved(region: HostRamRegion): Uint32Array {
    const saved = this.#saved.get(region);
    this.#saved.delete(region);
    return saved ?? new Uint32Array(Math.ceil(Number(region.length / PAGE) / 32));
  }
}

/** ORs a slot's log into a region bitmap, the slot's page 0 landing on region page `at`. */
function orSlotLog(region: Uint32Array, log: Uint32Array, at: number): void {
  for (let w = 0; w < log.length; w++) {
    let bits = log[w] as number;
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits);
      bits &= ~(1 << b);
      const page = at + w * 32 + b;
      if (page >>> 5 < region.length) region[page >>> 5] = ((region[page >>> 5] as number) | (1 << (page & 31))) >>> 0;
    }
  }
}

/** The slots of `region` with read-only pieces over `tracked`. */
function piecesOf(region: HostRamRegion, tracked: readonly AddressRange[]): Array<Omit<Slot, 'id'>> {
  const out: Array<Omit<Slot, 'id'>> = [];
  const host = (gpa: bigint): bigint => region.hostAddress + (gpa - region.base);
  let cursor = region.base as bigint;
  const end = region.base + region.length;
  for (const t of tracked) {
    if (t.base > cursor) out.push({ guestAddress: cursor, size: t.base - cursor, hostAddress: host(cursor), readonly: false });
    out.push({ guestAddress: t.base, size: t.length, hostAddress: host(t.base), readonly: true });
    cursor = t.base + t.length;
  }
  if (cursor < end) out.push({ guestAddress: cursor, size: end - cursor, hostAddress: host(cursor), readonly: false });
  return out;
}
