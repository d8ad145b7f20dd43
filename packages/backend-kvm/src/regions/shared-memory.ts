/**
 * Shared memory for direct regions: a memfd mapped shared in this process. The device model
 * reads and writes `bytes`; once mapped with `mapDirect` the guest reads and writes the same
 * pages without exits. Disposing unmaps it from the guest first (each direct mapping over it),
 * then from the host.
 */
import { BadHandleError, InvalidError, type SharedMemory } from '@vmed/core';
import { HOST_PAGE_SIZE, MAX_VIEW_BYTES, MemfdMapping } from '../host/memfd.js';

export class KvmSharedMemory implements SharedMemory {
  readonly size: number;
  readonly #mapping: MemfdMapping;
  #bytes: Uint8Array | undefined;
  readonly #dependents = new Set<{ dispose(): void }>();
  readonly #onDispose: (memory: KvmSharedMemory) => void;

  private constructor(size: number, mapping: MemfdMapping, onDispose: (memory: KvmSharedMemory) => void) {
    this.size = size;
    this.#mapping = mapping;
    this.#bytes = new Uint8Array(mapping.view(0, size));
    this.#onDispose = onDispose;
  }

  /** `size` bytes (1 .. 4 GiB − 4 KiB), backed by whole pages. */
  static allocate(size: number, onDispose: (memory: KvmSharedMemory) => void): KvmSharedMemory {
    const op = 'kvm.allocateSharedMemory';
    if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_VIEW_BYTES) {
      throw new InvalidError(op, `size ${size} is not in [1, ${MAX_VIEW_BYTES}]`);
    }
    const mapped = Math.ceil(size / HOST_PAGE_SIZE) * HOST_PAGE_SIZE;
    return new KvmSharedMemory(size, MemfdMapping.create('vmed-shared', mapped, op), onDispose);
  }

  get bytes(): Uint8Array {
    if (this.#bytes === undefined) throw new BadHandleError('kvm.sharedMemory.bytes');
    return this.#bytes;
  }

  get disposed(): boolean {
    return this.#bytes === undefined;
  }

  /** @internal Host address and page-rounded size, for a memory slot. */
  get hostAddress(): bigint {
    return this.#mapping.address;
  }
  get mappedSize(): number {
    return this.#mapping.size;
  }

  /** @internal Registers a direct mapping to be removed before this memory is unmapped. */
  addDependent(dependent: { dispose(): void }): () => void {
    this.#dependents.add(dependent);
    return () => this.#dependents.delete(dependent);
  }

  dispose(): void {
    if (this.#bytes === undefined) return;
    for (const d of [...this.#dependents]) d.dispose();
    this.#bytes = undefined;
    this.#mapping.close();
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
