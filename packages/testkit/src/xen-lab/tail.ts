/**
 * Follows a file dom0 appends to over the writable 9p export: each `pump()` forwards the bytes
 * written since the last one, in order, untouched. Dom0 mounts that export without a cache, so
 * every write in dom0 is a write on the host by the time it returns.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export class FileTail {
  readonly #path: string;
  readonly #sink: (chunk: Buffer) => void;
  readonly #buffer = Buffer.alloc(64 * 1024);
  #fd: number | undefined;
  #offset = 0;

  constructor(path: string, sink: (chunk: Buffer) => void) {
    this.#path = path;
    this.#sink = sink;
  }

  /** Forwards everything new; a file not created yet is simply empty. Returns the bytes forwarded. */
  pump(): number {
    if (this.#fd === undefined) {
      try {
        this.#fd = openSync(this.#path, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw e;
      }
    }
    let total = 0;
    for (;;) {
      const n = readSync(this.#fd, this.#buffer, 0, this.#buffer.length, this.#offset);
      if (n === 0) return total;
      this.#offset += n;
      total += n;
      // A copy: the sink may keep the chunk while the buffer is reused.
      this.#sink(Buffer.from(this.#buffer.subarray(0, n)));
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}
