/**
 * Hands out naturally aligned pieces of an address window, as firmware does when it assigns
 * BARs. First fit; freed pieces are reused.
 */
import type { AddressWindow } from '../config.js';
import { NoSpaceError, hex } from '../errors.js';

export class WindowAllocator {
  private readonly used: Array<{ base: bigint; size: bigint }> = [];

  constructor(
    readonly window: AddressWindow,
    private readonly name: string,
  ) {}

  /** A free block of `size` bytes (a power of two) aligned to `size`; `NoSpace` when full. */
  allocate(size: bigint): bigint {
    let candidate = alignUp(this.window.base, size);
    const end = this.window.base + this.window.length;
    const sorted = [...this.used].sort((a, b) => (a.base < b.base ? -1 : 1));
    for (const block of sorted) {
      if (candidate + size <= block.base) break;
      if (candidate < block.base + block.size) candidate = alignUp(block.base + block.size, size);
    }
    if (candidate + size > end) {
      throw new NoSpaceError('firmware.assignBar', `${this.name} window [${hex(this.window.base)}, ${hex(end)}) has no free ${hex(size)} block`);
    }
    this.used.push({ base: candidate, size });
    return candidate;
  }

  free(base: bigint): void {
    const i = this.used.findIndex((b) => b.base === base);
    if (i >= 0) this.used.splice(i, 1);
  }
}

function alignUp(value: bigint, alignment: bigint): bigint {
  return ((value + alignment - 1n) / alignment) * alignment;
}
