/**
 * Dirty-page tracking and write-protect page tracking.
 *
 * Dirty tracking comes in two flavours: `pull` (KVM: `KVM_MEM_LOG_DIRTY_PAGES` and
 * `KVM_GET_DIRTY_LOG`, the backend returns what the guest wrote) and `push` (Xen: the
 * toolstack owns the log-dirty bitmap and the device model reports its own writes with
 * `xendevicemodel_modified_memory`). Either way the core keeps its own bitmap of what device
 * models wrote, because no hypervisor sees writes made through a host mapping.
 */
import type { AddressRange } from '../address.js';
import type { AccessSize } from './io.js';

/** Guest page size used by tracking bitmaps. */
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12n;

/**
 * A bitmap of dirty guest pages: bit `i` of `bits` is the page at `base + i * PAGE_SIZE`.
 * One per RAM region.
 */
export interface DirtyBitmap {
  readonly base: bigint;
  readonly pages: number;
  /** Little-endian bit order within each 32-bit word, as KVM's dirty log. */
  readonly bits: Uint32Array;
}

/** The backend's half of dirty tracking. */
export interface DirtyLog {
  readonly mode: 'pull' | 'push';
  readonly active: boolean;
  /** Starts logging guest writes (KVM: sets `KVM_MEM_LOG_DIRTY_PAGES` on every RAM slot). */
  start(): void;
  /** Stops logging. */
  stop(): void;
  /**
   * `pull` mode: fetches and clears the hypervisor's log, one bitmap per RAM region.
   * `push` mode: `Unsupported` (the hypervisor's log belongs to the toolstack).
   */
  pull(): DirtyBitmap[];
  /**
   * Reports a device-model write. `push` mode: forwards it to the hypervisor
   * (`xendevicemodel_modified_memory`); `pull` mode: a no-op (the core's own bitmap holds it).
   */
  push(range: AddressRange): void;
}

/** A guest write caught by write-protect tracking. */
export interface TrackedWrite {
  readonly address: bigint;
  readonly size: AccessSize;
  readonly value: bigint;
}

/**
 * What to do with a caught write: `apply` it to guest RAM (the guest sees its store land),
 * or `drop` it (emulated by the caller, e.g. a shadow page table update).
 */
export type TrackedWriteAction = 'apply' | 'drop';

/**
 * Write-protect tracking of a page-aligned range of guest RAM, as GVT-g used to shadow guest
 * page tables. Reads are not affected. KVM: the range becomes a read-only memory slot and
 * writes exit as MMIO; Xen: `set_mem_type(HVMMEM_ioreq_server)` plus
 * `map_mem_type_to_ioreq_server`. Disposing restores normal RAM.
 */
export interface PageTrack extends Disposable {
  readonly range: AddressRange;
  readonly disposed: boolean;
  dispose(): void;
}

/** Handler for writes to a tracked range; runs on the I/O context. */
export type TrackedWriteHandler = (write: TrackedWrite) => TrackedWriteAction;
