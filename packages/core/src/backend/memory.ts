/**
 * Guest memory as a consumer sees it: bounds-checked copies, zero-copy views and pins.
 *
 * KVM provides the RAM itself (memfd + `mmap`, registered as memory slots) or adopts the
 * embedding VMM's mapping; Xen maps the guest's frames with `xenforeignmemory_map`; `sim`
 * keeps RAM in an `ArrayBuffer`. Every access is checked against {@link GuestMemory.ram}
 * before a byte moves: a guest-supplied address outside RAM is an `Invalid` error, never a
 * read of host memory.
 */
import type { AddressRange, RangeSet } from '../address.js';

/** One range of guest RAM. */
export interface RamRegion extends AddressRange {
  /** A name for diagnostics, e.g. `"low"`, `"slot3"`. */
  readonly name?: string;
}

/** Whether a view or pin may be written through. */
export type MemoryAccess = 'read' | 'readwrite';

/**
 * A zero-copy window on guest RAM, valid until disposed. `bytes` and `data` alias guest
 * memory directly: writes through them are seen by the guest at once and are not reported
 * to dirty tracking by the backend (the core's DMA layer marks them).
 *
 * KVM: a view over the RAM mapping, no syscall. Xen: a foreign mapping of the frames, held
 * (and cached) for the view's life. `sim`: a subarray of the RAM buffer.
 */
export interface MemoryView extends Disposable {
  readonly address: bigint;
  readonly length: number;
  readonly access: MemoryAccess;
  /** The bytes; throws `BadHandle` once disposed. */
  readonly bytes: Uint8Array;
  /** A DataView over the same bytes (little-endian accessors are the guest's byte order on x86). */
  readonly data: DataView;
  readonly disposed: boolean;
  dispose(): void;
}

/**
 * A range of guest RAM held resident (and, on Xen, mapped) until disposed: what a device
 * needs for a long-lived DMA buffer. Pins are reference-counted per page: overlapping pins
 * are allowed and the range is released when the last one goes.
 *
 * KVM: `mlock` on the RAM mapping (`RLIMIT_MEMLOCK` applies: too low gives `NoSpace`).
 * Xen: a foreign mapping held for the pin's life. `sim`: bookkeeping, with fault injection.
 */
export interface PinnedRange extends Disposable {
  readonly address: bigint;
  readonly length: number;
  readonly disposed: boolean;
  /** A view over the pinned range; the view must be disposed before or with the pin. */
  view(access: MemoryAccess): MemoryView;
  dispose(): void;
}

/** Guest physical memory, bounds-checked against the guest's RAM map. */
export interface GuestMemory {
  /** The guest's RAM map: sorted, non-overlapping, validated once. */
  readonly ram: RangeSet<RamRegion>;

  /**
   * Copies `dst.length` bytes from guest RAM at `address` into `dst`. The whole range is
   * checked first: outside RAM → `Invalid` with `bytesDone: 0`. May span regions.
   */
  read(address: bigint, dst: Uint8Array): void;

  /** Copies `src` into guest RAM at `address`; same checks as {@link read}. */
  write(address: bigint, src: Uint8Array): void;

  /**
   * A zero-copy view of `[address, address+length)`. Refused with `Invalid` when the range
   * leaves RAM or is not contiguous in the host (two regions mapped apart).
   */
  view(address: bigint, length: number, access: MemoryAccess): MemoryView;

  /** Pins `[address, address+length)`; see {@link PinnedRange}. */
  pin(address: bigint, length: number): PinnedRange;
}
