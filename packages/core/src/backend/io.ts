/**
 * I/O request types shared by every backend and the core's dispatcher.
 *
 * The seam between a hypervisor and vmed is "a source of I/O requests → the core's
 * dispatcher": KVM turns `KVM_EXIT_MMIO`/`KVM_EXIT_IO` into calls on an {@link IoRequestSink},
 * Xen turns ioreq slots into the same calls, `sim` calls it from its scripted guest. Device
 * models never see which.
 */

/**
 * The address space of a guest access.
 * - `mmio`: guest physical memory addresses.
 * - `pio`: x86 I/O ports (0..0xffff).
 * - `pci`: PCI configuration space, addressed as an ECAM offset
 *   (see {@link pciConfigAddress}). On Xen the hypervisor decodes the guest's 0xCF8/0xCFC
 *   accesses and sends these directly; on KVM and `sim` the core's host bridge decodes
 *   port and ECAM accesses into this space.
 */
export type IoSpace = 'mmio' | 'pio' | 'pci';

/** Width of a single guest access, in bytes. */
export type AccessSize = 1 | 2 | 4 | 8;

/**
 * Where a backend delivers guest accesses. Implemented by the core's dispatcher; backends
 * call it on the I/O context (the thread that owns the mediator), one request at a time.
 * Neither method throws for a guest-controlled reason: an unclaimed read returns all-ones,
 * an unclaimed write is dropped.
 */
export interface IoRequestSink {
  /** A guest read; returns the value zero-extended to 64 bits. */
  read(space: IoSpace, address: bigint, size: AccessSize): bigint;
  /** A guest write; `value` holds `size` bytes in its low bits. */
  write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void;
}

/** Bus/device/function of a PCI function (segment 0 unless stated). */
export interface PciAddress {
  readonly segment?: number;
  readonly bus: number;
  readonly device: number;
  readonly function: number;
}

/** ECAM-style offset of a config register: `segment<<28 | bus<<20 | device<<15 | function<<12 | register`. */
export function pciConfigAddress(bdf: PciAddress, register: number): bigint {
  return (
    (BigInt(bdf.segment ?? 0) << 28n) |
    (BigInt(bdf.bus & 0xff) << 20n) |
    (BigInt(bdf.device & 0x1f) << 15n) |
    (BigInt(bdf.function & 0x7) << 12n) |
    BigInt(register & 0xfff)
  );
}

/** Inverse of {@link pciConfigAddress}. */
export function decodePciConfigAddress(address: bigint): { bdf: PciAddress; register: number } {
  const a = Number(address & 0xfff_ffffn);
  return {
    bdf: { segment: Number(address >> 28n), bus: (a >>> 20) & 0xff, device: (a >>> 15) & 0x1f, function: (a >>> 12) & 0x7 },
    register: a & 0xfff,
  };
}

/** Formats a PCI address as `0000:00:03.0`. */
export function formatPciAddress(bdf: PciAddress): string {
  const h = (v: number, w: number) => v.toString(16).padStart(w, '0');
  return `${h(bdf.segment ?? 0, 4)}:${h(bdf.bus, 2)}:${h(bdf.device, 2)}.${bdf.function}`;
}

/** All-ones of the given width: what an unclaimed read returns. */
export function allOnes(size: AccessSize): bigint {
  return (1n << BigInt(size * 8)) - 1n;
}
