/**
 * A fuzz program is a flat array of 32-bit words that fast-check generates and shrinks; a
 * {@link WordReader} turns it into decisions, one word at a time, in the manner of libFuzzer's
 * FuzzedDataProvider. Any array decodes to a valid program (missing words read 0), so every
 * shrink fast-check tries is still a program, and smaller words mean simpler choices: the
 * first entry of every table is the most ordinary one.
 */

/** Reads words from a program; past the end every word is 0 and {@link done} is true. */
export class WordReader {
  private at = 0;

  constructor(private readonly words: Uint32Array) {}

  /** True once every word has been consumed. */
  get done(): boolean {
    return this.at >= this.words.length;
  }

  /** Index of the next word (for traces). */
  get position(): number {
    return this.at;
  }

  /** The next word, 0 past the end. */
  word(): number {
    const w = this.at < this.words.length ? (this.words[this.at] as number) : 0;
    this.at++;
    return w;
  }

  /** A number in `[0, n)`. */
  below(n: number): number {
    return n <= 1 ? 0 : this.word() % n;
  }

  /** One of `items` (the first for a word of 0). */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)] as T;
  }

  /** A 64-bit value from two words, low first. */
  u64(): bigint {
    const low = BigInt(this.word());
    return (BigInt(this.word()) << 32n) | low;
  }

  /** True with probability about 1/n (never for a word of 0 unless n is 1). */
  oneIn(n: number): boolean {
    return n <= 1 || this.word() % n === n - 1;
  }
}

/** Access widths a guest can issue, the most common first. */
export const ACCESS_SIZES = [4, 1, 2, 8] as const;

/** All-ones of `size` bytes, as a bigint. */
export function onesOf(size: number): bigint {
  return (1n << BigInt(size * 8)) - 1n;
}
