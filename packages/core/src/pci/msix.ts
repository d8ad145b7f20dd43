/**
 * The MSI-X capability (PCI Local Bus 3.0 §6.8.2) and the table and Pending Bit Array it
 * points to inside a memory BAR.
 *
 * Message control: Table Size (vectors − 1, read-only), Function Mask (bit 14) and MSI-X
 * Enable (bit 15). Each table entry is 16 bytes: message address low and high, message data,
 * and vector control whose bit 0 masks the vector (set at reset). The PBA holds one read-only
 * bit per vector in QWORDs; the function fills it from its routes.
 *
 * Table and PBA accesses take 1, 2 or 4 naturally aligned bytes; anything else reads
 * all-ones and is not written (8-byte accesses arrive split by the core).
 */
import type { MsiMessage } from '../backend/interrupts.js';
import type { MsixDefinition } from '../device/model.js';
import { InvalidError, hex } from '../errors.js';
import type { BarSlot } from './bars.js';
import type { CapabilityListBuilder } from './capabilities.js';
import { isConfigAccessSize, overlaps, type ConfigAccessSize, type ConfigSpace } from './config-space.js';
import {
  PCI_CAP_ID_MSIX,
  PCI_MSIX_ENTRY_CTRL_MASKBIT,
  PCI_MSIX_ENTRY_DATA,
  PCI_MSIX_ENTRY_LOWER_ADDR,
  PCI_MSIX_ENTRY_SIZE,
  PCI_MSIX_ENTRY_UPPER_ADDR,
  PCI_MSIX_ENTRY_VECTOR_CTRL,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_MSIX_MAX_VECTORS,
  PCI_MSIX_PBA,
  PCI_MSIX_SIZEOF,
  PCI_MSIX_TABLE,
} from './registers.js';

const OPERATION = 'pci.msix';

/** Which MSI-X structure a BAR offset falls in. */
export type MsixRegion = 'table' | 'pba';

/** One function's MSI-X capability with its table. */
export class MsixCapability {
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
  /** Bytes of the table: 16 per vector. */
  readonly tableLength: number;
  /** Bytes of the PBA: one QWORD per 64 vectors. */
  readonly pbaLength: number;
  readonly length = PCI_MSIX_SIZEOF;
  /** The table's bytes as the guest programmed them. */
  readonly table: Uint8Array;
  private readonly tableView: DataView;

  private constructor(
    private readonly space: ConfigSpace,
    readonly offset: number,
    definition: MsixDefinition,
  ) {
    this.vectors = definition.vectors;
    this.tableBar = definition.tableBar;
    this.tableOffset = definition.tableOffset;
    this.pbaBar = definition.pbaBar;
    this.pbaOffset = definition.pbaOffset;
    this.tableLength = this.vectors * PCI_MSIX_ENTRY_SIZE;
    this.pbaLength = Math.ceil(this.vectors / 64) * 8;
    this.table = new Uint8Array(this.tableLength);
    this.tableView = new DataView(this.table.buffer);
    this.resetTable();
  }

  /**
   * Checks `definition` against the function's BARs (table and PBA inside a trapped memory
   * BAR, QWORD-aligned, not overlapping), places the capability and declares its writable bits.
   */
  static install(
    space: ConfigSpace,
    builder: CapabilityListBuilder,
    definition: MsixDefinition,
    bars: ReadonlyArray<BarSlot | undefined>,
  ): MsixCapability {
    const { vectors } = definition;
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > PCI_MSIX_MAX_VECTORS) {
      throw new InvalidError(OPERATION, `MSI-X vectors ${vectors} is outside [1, ${PCI_MSIX_MAX_VECTORS}]`);
    }
    checkPlacement('table', definition.tableBar, definition.tableOffset, vectors * PCI_MSIX_ENTRY_SIZE, bars);
    const pbaLength = Math.ceil(vectors / 64) * 8;
    checkPlacement('PBA', definition.pbaBar, definition.pbaOffset, pbaLength, bars);
    if (
      definition.tableBar === definition.pbaBar &&
      overlaps(definition.tableOffset, vectors * PCI_MSIX_ENTRY_SIZE, definition.pbaOffset, pbaLength)
    ) {
      throw new InvalidError(OPERATION, 'MSI-X table and PBA overlap');
    }
    const offset = builder.add(PCI_CAP_ID_MSIX, PCI_MSIX_SIZEOF);
    space.set16(offset + PCI_MSIX_FLAGS, vectors - 1);
    space.setWritable(offset + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE);
    space.set32(offset + PCI_MSIX_TABLE, definition.tableOffset | definition.tableBar);
    space.set32(offset + PCI_MSIX_PBA, definition.pbaOffset | definition.pbaBar);
    return new MsixCapability(space, offset, definition);
  }

  private get flags(): number {
    return this.space.get16(this.offset + PCI_MSIX_FLAGS);
  }

  get enabled(): boolean {
    return (this.flags & PCI_MSIX_FLAGS_ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.flags & PCI_MSIX_FLAGS_MASKALL) !== 0;
  }

  /** Entry `vector`'s message. */
  entryMessage(vector: number): MsiMessage {
    const at = vector * PCI_MSIX_ENTRY_SIZE;
    const low = this.tableView.getUint32(at + PCI_MSIX_ENTRY_LOWER_ADDR, true);
    const high = this.tableView.getUint32(at + PCI_MSIX_ENTRY_UPPER_ADDR, true);
    return { address: (BigInt(high) << 32n) | BigInt(low), data: this.tableView.getUint32(at + PCI_MSIX_ENTRY_DATA, true) };
  }

  /** Entry `vector`'s own mask bit (the function mask is separate). */
  entryMasked(vector: number): boolean {
    const control = this.tableView.getUint32(vector * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL, true);
    return (control & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0;
  }

  /** The structure `[offset, offset+size)` of BAR `bar` falls in, if any. */
  regionAt(bar: number, offset: number, size = 1): MsixRegion | undefined {
    if (bar === this.tableBar && overlaps(offset, size, this.tableOffset, this.tableLength)) return 'table';
    if (bar === this.pbaBar && overlaps(offset, size, this.pbaOffset, this.pbaLength)) return 'pba';
    return undefined;
  }

  /**
   * Whether an access is one the table/PBA serves: 1/2/4 bytes, naturally aligned, wholly
   * inside the region. Returns the region-relative offset, or `undefined`.
   */
  accessOffset(region: MsixRegion, offset: number, size: number): number | undefined {
    const [start, length] = region === 'table' ? [this.tableOffset, this.tableLength] : [this.pbaOffset, this.pbaLength];
    if (!isConfigAccessSize(size) || !Number.isInteger(offset) || offset % size !== 0) return undefined;
    const relative = offset - start;
    if (relative < 0 || relative + size > length) return undefined;
    return relative;
  }

  readTable(relative: number, size: ConfigAccessSize): number {
    if (size === 1) return this.tableView.getUint8(relative);
    if (size === 2) return this.tableView.getUint16(relative, true);
    return this.tableView.getUint32(relative, true);
  }

  /** Writes table bytes, keeping vector control's reserved bits 0. Returns the entry written. */
  writeTable(relative: number, size: ConfigAccessSize, value: number): number {
    for (let i = 0; i < size; i++) {
      const at = relative + i;
      const inEntry = at % PCI_MSIX_ENTRY_SIZE;
      let byte = (value >>> (8 * i)) & 0xff;
      if (inEntry === PCI_MSIX_ENTRY_VECTOR_CTRL) byte &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
      else if (inEntry > PCI_MSIX_ENTRY_VECTOR_CTRL) byte = 0;
      this.table[at] = byte;
    }
    return Math.floor(relative / PCI_MSIX_ENTRY_SIZE);
  }

  /** Reads PBA bytes; bit `v` is `pending(v)`. */
  readPba(relative: number, size: ConfigAccessSize, pending: (vector: number) => boolean): number {
    let value = 0;
    for (let i = 0; i < size; i++) {
      let byte = 0;
      for (let bit = 0; bit < 8; bit++) {
        const vector = (relative + i) * 8 + bit;
        if (vector < this.vectors && pending(vector)) byte |= 1 << bit;
      }
      value |= byte << (8 * i);
    }
    return value >>> 0;
  }

  /** All entries back to reset: no message, masked. */
  resetTable(): void {
    this.table.fill(0);
    for (let v = 0; v < this.vectors; v++) {
      this.tableView.setUint32(v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT, true);
    }
  }

  /** Why a saved table is not one the guest could have written, or `undefined`. */
  checkTable(table: Uint8Array): string | undefined {
    if (table.length !== this.tableLength) return `MSI-X table is ${table.length} bytes, expected ${this.tableLength}`;
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    for (let v = 0; v < this.vectors; v++) {
      const control = view.getUint32(v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL, true);
      if ((control & ~PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0) return `MSI-X entry ${v} has reserved vector control bits ${hex(control)}`;
    }
    return undefined;
  }
}

function checkPlacement(
  what: string,
  bar: number,
  offset: number,
  length: number,
  bars: ReadonlyArray<BarSlot | undefined>,
): void {
  const slot = Number.isInteger(bar) ? bars[bar] : undefined;
  if (slot === undefined || slot.kind === 'io') {
    throw new InvalidError(OPERATION, `MSI-X ${what} BAR ${bar} is not a memory BAR of this function`);
  }
  if (slot.definition.backing === 'direct') {
    throw new InvalidError(OPERATION, `MSI-X ${what} BAR ${bar} is direct; the ${what} must be in a trapped BAR`);
  }
  // The offset shares a dword with the BAR indicator: bits 31:3.
  if (!Number.isInteger(offset) || offset < 0 || offset % 8 !== 0 || offset > 0xfffffff8) {
    throw new InvalidError(OPERATION, `MSI-X ${what} offset ${hex(offset)} is not a QWORD-aligned 32-bit offset`);
  }
  if (offset + length > slot.size) {
    throw new InvalidError(OPERATION, `MSI-X ${what} [${hex(offset)}, +${hex(length)}) exceeds BAR ${bar} (${hex(slot.size)} bytes)`);
  }
}
