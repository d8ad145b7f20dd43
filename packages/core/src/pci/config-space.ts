/**
 * A function's configuration space as the guest sees it: the bytes, and per byte which bits
 * the guest may write (RW) and which it clears by writing 1 (RW1C). Every other bit is
 * read-only to the guest. Device-side code sets values with the raw setters, which ignore the
 * masks; the guest's writes go through {@link ConfigSpace.guestWrite}, which honours them.
 *
 * Access rules (the same for every caller, so a guest cannot reach an undefined case):
 * - sizes 1, 2 and 4 only, lying within one dword: what the byte enables of one config cycle
 *   can express (a word at 0x3d is bytes 0x3d–0x3e of dword 0x3c and is served). An access
 *   that crosses a dword boundary, or has another size, is **refused**: a read returns
 *   all-ones, a write is dropped. No bus carries such a cycle (0xCFC and ECAM accesses sit
 *   inside one dword), so a guest cannot tell refusal from hardware.
 * - a naturally aligned access — every access a real driver makes — is one piece.
 * - a register past the end of the space (the extended space of a conventional function,
 *   or anything ≥ 4096) reads all-ones and ignores writes, as a master abort would.
 * - an implemented space reads 0 where no register is defined.
 */
import type { PciFunctionDefinition } from '../device/model.js';
import {
  PCI_CACHE_LINE_SIZE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_WRITABLE,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_NORMAL,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_LATENCY_TIMER,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_ERROR_BITS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './registers.js';

/** Width of a configuration access. */
export type ConfigAccessSize = 1 | 2 | 4;

/** True for 1, 2 and 4. */
export function isConfigAccessSize(size: unknown): size is ConfigAccessSize {
  return size === 1 || size === 2 || size === 4;
}

/** All-ones of `size` bytes (32 bits for a size that is not 1 or 2). */
export function configAllOnes(size: number): number {
  return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
}

/** True when `[register, register+size)` and `[start, start+length)` share a byte. */
export function overlaps(register: number, size: number, start: number, length: number): boolean {
  return register < start + length && start < register + size;
}

/** Bytes, writable mask and write-1-to-clear mask of one function's configuration space. */
export class ConfigSpace {
  readonly size: number;
  /** Current values. */
  readonly bytes: Uint8Array;
  /** Bits the guest may write. */
  readonly writable: Uint8Array;
  /** Bits the guest clears by writing 1. */
  readonly clearable: Uint8Array;
  private readonly view: DataView;

  /** `size`: 0x100 (conventional) or 0x1000 (PCI Express). */
  constructor(size: 0x100 | 0x1000) {
    this.size = size;
    this.bytes = new Uint8Array(size);
    this.writable = new Uint8Array(size);
    this.clearable = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  /**
   * Whether a guest access is one this space serves: 1, 2 or 4 bytes inside one dword,
   * wholly inside the space. Checks types too, since the values come from the guest.
   */
  accepts(register: number, size: number): size is ConfigAccessSize {
    return (
      isConfigAccessSize(size) &&
      Number.isInteger(register) &&
      register >= 0 &&
      (register & 3) + size <= 4 &&
      register + size <= this.size
    );
  }

  /** Raw little-endian read; the caller has checked the access with {@link accepts}. */
  read(register: number, size: ConfigAccessSize): number {
    if (size === 1) return this.view.getUint8(register);
    if (size === 2) return this.view.getUint16(register, true);
    return this.view.getUint32(register, true);
  }

  get8(register: number): number {
    return this.view.getUint8(register);
  }

  get16(register: number): number {
    return this.view.getUint16(register, true);
  }

  get32(register: number): number {
    return this.view.getUint32(register, true);
  }

  /** Device-side write of a value, ignoring the guest masks. */
  set8(register: number, value: number): void {
    this.view.setUint8(register, value & 0xff);
  }

  set16(register: number, value: number): void {
    this.view.setUint16(register, value & 0xffff, true);
  }

  set32(register: number, value: number): void {
    this.view.setUint32(register, value >>> 0, true);
  }

  /** Declares which bits of a `width`-byte register the guest may write. */
  setWritable(register: number, width: ConfigAccessSize, mask: number): void {
    setLittleEndian(this.writable, register, width, mask);
  }

  /** Declares which bits of a `width`-byte register are write-1-to-clear. */
  setClearable(register: number, width: ConfigAccessSize, mask: number): void {
    setLittleEndian(this.clearable, register, width, mask);
  }

  /**
   * A guest write: RW bits take the written value, RW1C bits written as 1 clear, everything
   * else keeps its value. The caller has checked the access with {@link accepts}.
   */
  guestWrite(register: number, size: ConfigAccessSize, value: number): void {
    for (let i = 0; i < size; i++) {
      const at = register + i;
      const byte = (value >>> (8 * i)) & 0xff;
      const w1c = this.clearable[at] ?? 0;
      const rw = (this.writable[at] ?? 0) & ~w1c; // a bit in both masks is RW1C
      const old = this.bytes[at] ?? 0;
      this.bytes[at] = ((old & ~rw) | (byte & rw)) & ~(byte & w1c);
    }
  }

  /** A copy of the bytes. */
  snapshot(): Uint8Array {
    return this.bytes.slice();
  }

  /** Replaces the bytes (the masks stay). */
  restore(image: Uint8Array): void {
    this.bytes.set(image.subarray(0, this.size));
  }

  /**
   * The first offset where `image` differs from `reference` in a bit the guest cannot write
   * (neither RW nor RW1C), not counting the bits set in `ignore`; -1 when there is none. A
   * saved image that fails this was not produced by a guest driving this function.
   */
  firstReadOnlyMismatch(image: Uint8Array, reference: Uint8Array, ignore: Uint8Array): number {
    for (let i = 0; i < this.size; i++) {
      const readOnly = ~((this.writable[i] ?? 0) | (this.clearable[i] ?? 0) | (ignore[i] ?? 0)) & 0xff;
      if ((((image[i] ?? 0) ^ (reference[i] ?? 0)) & readOnly) !== 0) return i;
    }
    return -1;
  }
}

function setLittleEndian(target: Uint8Array, register: number, width: number, value: number): void {
  for (let i = 0; i < width; i++) target[register + i] = (value >>> (8 * i)) & 0xff;
}

/**
 * Fills the identity, command/status, class and interrupt fields of a type-0 header from
 * `definition`. BARs and capabilities are laid out by their own modules. `interruptLine` is
 * the power-on value of the Interrupt Line register (firmware normally writes it; guests of
 * this project have no firmware, so the platform's routing is preloaded).
 */
export function initTypeZeroHeader(space: ConfigSpace, definition: PciFunctionDefinition, interruptLine: number): void {
  space.set16(PCI_VENDOR_ID, definition.vendorId);
  space.set16(PCI_DEVICE_ID, definition.deviceId);
  space.setWritable(PCI_COMMAND, 2, PCI_COMMAND_WRITABLE);
  space.setClearable(PCI_STATUS, 2, PCI_STATUS_ERROR_BITS);
  space.set8(PCI_REVISION_ID, definition.revision ?? 0);
  space.set8(PCI_CLASS_PROG, definition.classCode & 0xff);
  space.set16(PCI_CLASS_PROG + 1, definition.classCode >>> 8);
  space.setWritable(PCI_CACHE_LINE_SIZE, 1, 0xff);
  // PCI Express hardwires the latency timer to 0; a conventional bus master keeps it RW.
  if (definition.pcie !== true) space.setWritable(PCI_LATENCY_TIMER, 1, 0xff);
  space.set8(PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL);
  space.set16(PCI_SUBSYSTEM_VENDOR_ID, definition.subsystemVendorId ?? 0);
  space.set16(PCI_SUBSYSTEM_ID, definition.subsystemId ?? 0);
  space.set8(PCI_INTERRUPT_LINE, interruptLine);
  space.setWritable(PCI_INTERRUPT_LINE, 1, 0xff);
  space.set8(PCI_INTERRUPT_PIN, definition.interruptPin ?? 0);
}
