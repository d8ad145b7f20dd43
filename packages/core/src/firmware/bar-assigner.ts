/**
 * The firmware's part for guests that have none (the project's own guests on KVM and `sim`):
 * program each BAR of a function with an address from the platform's windows, as a BIOS does
 * before the OS enumerates. Decode bits are left off; the guest turns them on.
 */
import type { AddressWindow } from '../config.js';
import type { PciFunction } from '../pci/function.js';
import { pciBarRegister } from '../pci/registers.js';
import { WindowAllocator } from './window-allocator.js';

/** Default BAR windows: below the IOAPIC (0xFEC00000) and LAPIC (0xFEE00000). */
export const DEFAULT_MMIO_WINDOW: AddressWindow = { base: 0xe000_0000n, length: 0x1000_0000n };
export const DEFAULT_IO_WINDOW: AddressWindow = { base: 0xc000n, length: 0x4000n };

/** Memory BARs get at least a page, so each can be mapped (or trapped) on its own. */
const MIN_MEMORY_BAR_BLOCK = 4096n;

export class BarAssigner {
  private readonly mmio: WindowAllocator;
  private readonly io: WindowAllocator;

  constructor(mmioWindow: AddressWindow = DEFAULT_MMIO_WINDOW, ioWindow: AddressWindow = DEFAULT_IO_WINDOW) {
    this.mmio = new WindowAllocator(mmioWindow, 'MMIO');
    this.io = new WindowAllocator(ioWindow, 'I/O');
  }

  /**
   * Allocates and programs every BAR of `fn`. Returns a function that frees the addresses.
   * All or nothing: if a window is full, what was taken is given back and `NoSpace` thrown.
   */
  assign(fn: PciFunction): () => void {
    const taken: Array<{ allocator: WindowAllocator; base: bigint }> = [];
    const release = () => {
      for (const t of taken) t.allocator.free(t.base);
      taken.length = 0;
    };
    try {
      for (const slot of fn.bars) {
        if (slot === undefined) continue;
        const isIo = slot.kind === 'io';
        const allocator = isIo ? this.io : this.mmio;
        const size = BigInt(slot.size);
        const block = isIo || size >= MIN_MEMORY_BAR_BLOCK ? size : MIN_MEMORY_BAR_BLOCK;
        const base = allocator.allocate(block);
        taken.push({ allocator, base });
        fn.configWrite(pciBarRegister(slot.index), 4, Number(base & 0xffff_ffffn));
        if (slot.kind === 'memory64') fn.configWrite(pciBarRegister(slot.index + 1), 4, Number(base >> 32n));
      }
    } catch (e) {
      release();
      throw e;
    }
    return release;
  }
}
