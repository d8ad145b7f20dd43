/**
 * The capability list: capabilities placed one after another from 0x40, dword-aligned, each
 * header's next pointer naming the following one and the last one's naming 0. IDs and next
 * pointers are read-only to the guest. The first capability sets the Capabilities Pointer
 * (0x34) and the Capabilities List bit of the status register.
 */
import { NoSpaceError, hex } from '../errors.js';
import type { ConfigSpace } from './config-space.js';
import {
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CAP_START,
  PCI_CAPABILITY_LIST,
  PCI_CONFIG_SPACE_SIZE,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
} from './registers.js';

/** One placed capability. */
export interface PlacedCapability {
  readonly id: number;
  readonly offset: number;
  readonly length: number;
}

/** Lays capabilities out in a {@link ConfigSpace}. */
export class CapabilityListBuilder {
  private next = PCI_CAP_START;
  private last: PlacedCapability | undefined;
  private readonly placed: PlacedCapability[] = [];

  constructor(private readonly space: ConfigSpace) {}

  /**
   * Places a capability of `length` bytes with ID `id` and links it at the end of the list.
   * Returns its offset. Throws `NoSpace` when it would not fit below 0x100.
   */
  add(id: number, length: number): number {
    const offset = this.next;
    if (offset + length > PCI_CONFIG_SPACE_SIZE) {
      throw new NoSpaceError('pci.capabilities', `capability ${hex(id)} of ${length} bytes does not fit at ${hex(offset)}`);
    }
    this.space.set8(offset + PCI_CAP_LIST_ID, id);
    this.space.set8(offset + PCI_CAP_LIST_NEXT, 0);
    if (this.last === undefined) {
      this.space.set8(PCI_CAPABILITY_LIST, offset);
      this.space.set16(PCI_STATUS, this.space.get16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    } else {
      this.space.set8(this.last.offset + PCI_CAP_LIST_NEXT, offset);
    }
    const cap = { id, offset, length };
    this.last = cap;
    this.placed.push(cap);
    this.next = (offset + length + 3) & ~3;
    return offset;
  }

  /** The capabilities placed so far, in list order. */
  get capabilities(): readonly PlacedCapability[] {
    return this.placed;
  }
}

/**
 * Walks the capability list the way a guest driver does and returns each capability's ID and
 * offset. Stops at a loop or a pointer into the header, so it is safe on any image.
 */
export function walkCapabilities(space: ConfigSpace): Array<{ id: number; offset: number }> {
  const found: Array<{ id: number; offset: number }> = [];
  if ((space.get16(PCI_STATUS) & PCI_STATUS_CAP_LIST) === 0) return found;
  const seen = new Set<number>();
  let offset = space.get8(PCI_CAPABILITY_LIST) & ~3;
  while (offset >= PCI_CAP_START && offset < PCI_CONFIG_SPACE_SIZE && !seen.has(offset)) {
    seen.add(offset);
    found.push({ id: space.get8(offset + PCI_CAP_LIST_ID), offset });
    offset = space.get8(offset + PCI_CAP_LIST_NEXT) & ~3;
  }
  return found;
}
