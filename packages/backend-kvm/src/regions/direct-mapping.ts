/**
 * A direct region on KVM: a memory slot at the guest range over a {@link KvmSharedMemory}, so
 * guest accesses go straight to the shared pages. Disposing deletes the slot; accesses to the
 * range exit again from then on.
 */
import type { AddressRange, DirectMapping } from '@vmed/core';
import type { Slot, SlotTable } from '../memory/slots.js';
import type { KvmSharedMemory } from './shared-memory.js';

export class KvmDirectMapping implements DirectMapping {
  readonly range: AddressRange;
  readonly memory: KvmSharedMemory;
  #disposed = false;
  readonly #slots: SlotTable;
  readonly #slot: Slot;
  readonly #detach: () => void;
  readonly #onDispose: (mapping: KvmDirectMapping) => void;

  constructor(range: AddressRange, memory: KvmSharedMemory, slots: SlotTable, onDispose: (mapping: KvmDirectMapping) => void) {
    this.range = range;
    this.memory = memory;
    this.#slots = slots;
    this.#slot = slots.addDirect(range.base, range.length, memory.hostAddress);
    this.#onDispose = onDispose;
    this.#detach = memory.addDependent(this);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      this.#slots.removeDirect(this.#slot);
    } finally {
      this.#detach();
      this.#onDispose(this);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
