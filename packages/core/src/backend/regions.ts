/**
 * Trapped ranges, direct (memory-backed) ranges and doorbells: how a backend routes guest
 * accesses to a device's regions.
 */
import type { AddressRange } from '../address.js';

/** A trapped range: while held, guest accesses to it reach the I/O request sink. */
export interface IoClaim extends Disposable {
  readonly space: 'mmio' | 'pio' | 'pci';
  readonly range: AddressRange;
  readonly disposed: boolean;
  dispose(): void;
}

/**
 * Host memory that can back a direct region (a framebuffer BAR): the device model reads and
 * writes `bytes`, the guest reads and writes the same memory without exits where the backend
 * maps it in. KVM: a memfd mapping registered as a memory slot at the BAR's address; `sim`:
 * a buffer its guest reads directly; Xen: `Unsupported` for mapping (the core then traps the
 * BAR and serves accesses from `bytes`).
 */
export interface SharedMemory extends Disposable {
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly disposed: boolean;
  dispose(): void;
}

/** A {@link SharedMemory} mapped into the guest at `range`; dispose to unmap. */
export interface DirectMapping extends Disposable {
  readonly range: AddressRange;
  readonly disposed: boolean;
  dispose(): void;
}

/**
 * Where a doorbell listens. `length` 0 matches any access width at `address` (KVM only);
 * with `datamatch`, only writes of exactly that value ring it, and other writes go to the
 * sink as usual.
 */
export interface IoEventSpec {
  readonly space: 'mmio' | 'pio';
  readonly address: bigint;
  readonly length: 0 | 1 | 2 | 4 | 8;
  readonly datamatch?: bigint;
}

/**
 * Called on the I/O context after the guest rang a doorbell. `count` is how many writes were
 * coalesced since the last call (KVM's eventfd counter; 1 on Xen and `sim`).
 */
export type DoorbellHandler = (count: number) => void;

/**
 * A doorbell: guest writes to it do not reach the sink. KVM: `KVM_IOEVENTFD`, no userspace
 * exit for the vCPU; Xen: caught in the ioreq path (the vCPU waits for the response as for
 * any write); `sim`: caught in the scripted guest.
 */
export interface Doorbell extends Disposable {
  readonly spec: IoEventSpec;
  readonly disposed: boolean;
  /** How many times the handler has run. */
  readonly rings: number;
  dispose(): void;
}
