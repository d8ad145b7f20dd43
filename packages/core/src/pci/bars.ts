/**
 * Base Address Registers: layout, the sizing protocol and where each BAR decodes.
 *
 * Sizing falls out of the write masks (as on hardware): the address bits below the BAR's
 * size are read-only 0 and the flag bits are read-only, so after the guest writes all-ones it
 * reads back `~(size − 1) | flags`. A 64-bit BAR is two dwords; the upper one sizes the same
 * way, so a BAR of 4 GiB or more has read-only zero bits in the lower dword's address field.
 * I/O BARs implement 16 address bits (x86 ports): the upper half reads 0, which the PCI
 * specification allows for functions used on PC-compatible systems.
 *
 * Unused BAR registers (and the upper dword of a 64-bit BAR through its lower index) and the
 * Expansion ROM BAR have no writable bits: they read 0 and ignore writes.
 */
import type { BarDefinition } from '../device/model.js';
import { InvalidError, hex } from '../errors.js';
import type { ConfigSpace } from './config-space.js';
import {
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_32,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_NUM_BARS,
  pciBarRegister,
} from './registers.js';

/** Where a BAR currently decodes in the guest's address space. */
export interface BarLocation {
  /** `mmio` for memory BARs, `pio` for I/O BARs. */
  readonly space: 'mmio' | 'pio';
  /** Guest physical address or I/O port of the first byte. */
  readonly base: bigint;
  /** Bytes decoded (the BAR's size). */
  readonly size: number;
}

/** A validated BAR of a function. */
export interface BarSlot {
  readonly index: number;
  readonly kind: BarDefinition['kind'];
  readonly size: number;
  readonly prefetchable: boolean;
  readonly definition: BarDefinition;
  /** Writable address bits of the lower dword. */
  readonly lowMask: number;
  /** Writable address bits of the upper dword (64-bit BARs; 0 otherwise). */
  readonly highMask: number;
  /** Read-only flag bits of the lower dword. */
  readonly flags: number;
}

/** Which decoders the command register (and power state) leave on. */
export interface BarDecode {
  readonly io: boolean;
  readonly memory: boolean;
}

/** Largest I/O BAR the PCI specification allows. */
export const MAX_IO_BAR_SIZE = 256;
/** Largest 32-bit memory BAR (half of the 4 GiB space). */
export const MAX_MEMORY32_BAR_SIZE = 2 ** 31;
/** Largest 64-bit memory BAR we accept: sizes are `number`s and must stay exact. */
export const MAX_MEMORY64_BAR_SIZE = 2 ** 52;

const OPERATION = 'pci.bars';

/**
 * Checks a definition's BAR list and returns six slots (`undefined` where unused). Refuses
 * sizes that are not powers of two or outside the spec's limits, a 64-bit BAR in the last
 * index or whose upper index is also defined, and more than six entries.
 */
export function validateBars(bars: ReadonlyArray<BarDefinition | undefined> | undefined): Array<BarSlot | undefined> {
  const slots: Array<BarSlot | undefined> = new Array<BarSlot | undefined>(PCI_NUM_BARS).fill(undefined);
  if (bars === undefined) return slots;
  if (bars.length > PCI_NUM_BARS) throw new InvalidError(OPERATION, `${bars.length} BARs defined; a type-0 header has 6`);
  for (let index = 0; index < bars.length; index++) {
    const bar = bars[index];
    if (bar === undefined) continue;
    if (index > 0 && slots[index - 1]?.kind === 'memory64') {
      throw new InvalidError(OPERATION, `BAR ${index} is the upper half of 64-bit BAR ${index - 1} and must be undefined`);
    }
    slots[index] = makeSlot(index, bar);
  }
  return slots;
}

function makeSlot(index: number, bar: BarDefinition): BarSlot {
  const { kind, size } = bar;
  if (!isPowerOfTwo(size)) throw new InvalidError(OPERATION, `BAR ${index}: size ${size} is not a power of two`);
  const prefetchable = bar.prefetchable === true;
  switch (kind) {
    case 'io': {
      if (size < 4 || size > MAX_IO_BAR_SIZE) throw new InvalidError(OPERATION, `I/O BAR ${index}: size ${size} is outside [4, 256]`);
      if (prefetchable) throw new InvalidError(OPERATION, `I/O BAR ${index} cannot be prefetchable`);
      if ((bar as { readonly backing?: string }).backing === 'direct') throw new InvalidError(OPERATION, `I/O BAR ${index} cannot be direct`);
      return { index, kind, size, prefetchable, definition: bar, lowMask: ~(size - 1) & 0xfffc, highMask: 0, flags: PCI_BASE_ADDRESS_SPACE_IO };
    }
    case 'memory32': {
      if (size < 16 || size > MAX_MEMORY32_BAR_SIZE) {
        throw new InvalidError(OPERATION, `memory BAR ${index}: size ${hex(size)} is outside [16, 2 GiB]`);
      }
      const flags = PCI_BASE_ADDRESS_MEM_TYPE_32 | (prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
      return { index, kind, size, prefetchable, definition: bar, lowMask: (~(size - 1) & 0xfffffff0) >>> 0, highMask: 0, flags };
    }
    case 'memory64': {
      if (index >= PCI_NUM_BARS - 1) throw new InvalidError(OPERATION, `64-bit BAR ${index} needs index ${index + 1} too`);
      if (size < 16 || size > MAX_MEMORY64_BAR_SIZE) {
        throw new InvalidError(OPERATION, `memory BAR ${index}: size ${hex(size)} is outside [16, 2^52]`);
      }
      const mask = ((1n << 64n) - BigInt(size)) & ~0xfn;
      const flags = PCI_BASE_ADDRESS_MEM_TYPE_64 | (prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
      return {
        index,
        kind,
        size,
        prefetchable,
        definition: bar,
        lowMask: Number(mask & 0xffffffffn),
        highMask: Number(mask >> 32n),
        flags,
      };
    }
    default:
      throw new InvalidError(OPERATION, `BAR ${index}: unknown kind ${String(kind)}`);
  }
}

function isPowerOfTwo(n: number): boolean {
  // Sizes may exceed 2^31, where `&` on numbers would truncate.
  return n > 0 && Number.isSafeInteger(n) && (BigInt(n) & (BigInt(n) - 1n)) === 0n;
}

/** Writes each BAR's flag bits and declares its address bits writable. */
export function installBars(space: ConfigSpace, slots: ReadonlyArray<BarSlot | undefined>): void {
  for (const slot of slots) {
    if (slot === undefined) continue;
    const register = pciBarRegister(slot.index);
    space.set32(register, slot.flags);
    space.setWritable(register, 4, slot.lowMask);
    if (slot.kind === 'memory64') space.setWritable(register + 4, 4, slot.highMask);
  }
}

/** True when a dword with writable bits `mask` holds the guest's all-ones sizing probe. */
function holdsProbe(value: number, mask: number): boolean {
  return mask !== 0 && ((value & mask) >>> 0) === mask;
}

/**
 * Where `slot` decodes now, or `undefined` when it does not decode: its decoder (I/O or
 * memory) is off, its address is 0, or it is being sized.
 *
 * "Being sized" means a dword of the BAR has every writable bit set — the read-back of the
 * all-ones probe. This also leaves unmapped the one legitimate address per 4 GiB window
 * whose lower dword is that pattern (the highest size-aligned slot below a 4 GiB boundary);
 * a guest does not place BARs there (below 4 GiB it is the firmware flash on x86).
 */
export function decodeBar(space: ConfigSpace, slot: BarSlot, decode: BarDecode): BarLocation | undefined {
  const register = pciBarRegister(slot.index);
  const low = space.get32(register);
  if (holdsProbe(low, slot.lowMask)) return undefined;
  let base = BigInt((low & slot.lowMask) >>> 0);
  if (slot.kind === 'memory64') {
    const high = space.get32(register + 4);
    if (holdsProbe(high, slot.highMask)) return undefined;
    base |= BigInt((high & slot.highMask) >>> 0) << 32n;
  }
  if (base === 0n) return undefined;
  if (slot.kind === 'io') return decode.io ? { space: 'pio', base, size: slot.size } : undefined;
  return decode.memory ? { space: 'mmio', base, size: slot.size } : undefined;
}

/** True when two locations are the same (both undefined counts as the same). */
export function sameBarLocation(a: BarLocation | undefined, b: BarLocation | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.space === b.space && a.base === b.base && a.size === b.size;
}
