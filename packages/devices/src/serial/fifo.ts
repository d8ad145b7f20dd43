/** A byte ring of fixed storage: the 16550A's receiver FIFO. */
export class ByteFifo {
  private readonly storage: Uint8Array;
  private head = 0;
  private count = 0;

  constructor(readonly depth: number) {
    this.storage = new Uint8Array(depth);
  }

  get length(): number {
    return this.count;
  }

  /** Appends `byte`; the caller has checked there is room. */
  push(byte: number): void {
    this.storage[(this.head + this.count) % this.depth] = byte;
    this.count += 1;
  }

  /** Removes and returns the oldest byte, or `undefined` when empty. */
  pop(): number | undefined {
    if (this.count === 0) return undefined;
    const byte = this.storage[this.head];
    this.head = (this.head + 1) % this.depth;
    this.count -= 1;
    return byte;
  }

  /** Replaces the newest byte (a 16450-mode overrun destroys the unread character). */
  replaceNewest(byte: number): void {
    this.storage[(this.head + this.count - 1) % this.depth] = byte;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
  }

  /** The bytes in order, oldest first (a copy). */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.storage[(this.head + i) % this.depth] ?? 0;
    return out;
  }

  /** A FIFO holding `bytes`, oldest first; `bytes.length` must not exceed `depth`. */
  static from(depth: number, bytes: Uint8Array): ByteFifo {
    const fifo = new ByteFifo(depth);
    for (const b of bytes) fifo.push(b);
    return fifo;
  }
}
