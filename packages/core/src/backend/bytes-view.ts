/**
 * A {@link MemoryView} over bytes a backend has mapped, for backends to share: it refuses
 * `bytes`/`data` once disposed and tells its owner, once, so the owner can count and unmap.
 */
import { BadHandleError, hex } from '../errors.js';
import type { MemoryAccess, MemoryView } from './memory.js';

export class BytesMemoryView implements MemoryView {
  readonly address: bigint;
  readonly length: number;
  readonly access: MemoryAccess;
  #bytes: Uint8Array | undefined;
  #data: DataView | undefined;
  readonly #onDispose: (view: BytesMemoryView) => void;

  constructor(address: bigint, bytes: Uint8Array, access: MemoryAccess, onDispose: (view: BytesMemoryView) => void) {
    this.address = address;
    this.length = bytes.length;
    this.access = access;
    this.#bytes = bytes;
    this.#onDispose = onDispose;
  }

  get bytes(): Uint8Array {
    if (this.#bytes === undefined) throw new BadHandleError('memory.view', `view of ${hex(this.address)} is disposed`);
    return this.#bytes;
  }

  get data(): DataView {
    const bytes = this.bytes;
    this.#data ??= new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return this.#data;
  }

  get disposed(): boolean {
    return this.#bytes === undefined;
  }

  dispose(): void {
    if (this.#bytes === undefined) return;
    this.#bytes = undefined;
    this.#data = undefined;
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
