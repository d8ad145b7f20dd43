/**
 * Guest addresses and ranges.
 *
 * A guest physical address is a branded `bigint` so that it cannot be mixed up with a host
 * offset or a plain number, and every piece of arithmetic on it goes through a checked helper:
 * the guest controls these values, and a wrap past 2^64 must be an error, never a small
 * address.
 */
import { InvalidError, hex } from './errors.js';

declare const guestAddressBrand: unique symbol;

/** A guest physical address (GPA), 0 ≤ value < 2^64. */
export type GuestAddress = bigint & { readonly [guestAddressBrand]: true };

/** 2^64: one past the largest guest physical address. */
export const ADDRESS_SPACE_END = 1n << 64n;

/** Makes a {@link GuestAddress} from a number or bigint, refusing negatives and values ≥ 2^64. */
export function guestAddress(value: bigint | number, operation = 'address.make'): GuestAddress {
  const v = typeof value === 'bigint' ? value : toBigIntExact(value, operation);
  if (v < 0n || v >= ADDRESS_SPACE_END) throw new InvalidError(operation, `address ${hex(v)} is outside the 64-bit space`);
  return v as GuestAddress;
}

/** `base + offset`, refusing a result that wraps past 2^64. */
export function addressOffset(base: GuestAddress, offset: bigint | number, operation = 'address.offset'): GuestAddress {
  const delta = typeof offset === 'bigint' ? offset : toBigIntExact(offset, operation);
  const v = base + delta;
  if (v < 0n || v >= ADDRESS_SPACE_END) {
    throw new InvalidError(operation, `${hex(base)} + ${hex(delta)} leaves the 64-bit address space`);
  }
  return v as GuestAddress;
}

/**
 * The exclusive end of `[base, base + length)`. The end may equal 2^64 (a range that ends
 * at the top of the address space); anything beyond is refused.
 */
export function rangeEnd(base: GuestAddress, length: bigint | number, operation = 'address.rangeEnd'): bigint {
  const len = typeof length === 'bigint' ? length : toBigIntExact(length, operation);
  if (len < 0n) throw new InvalidError(operation, `negative length ${len}`);
  const end = base + len;
  if (end > ADDRESS_SPACE_END) throw new InvalidError(operation, `range ${hex(base)}+${hex(len)} wraps past 2^64`);
  return end;
}

/** A half-open range `[base, base + length)` of guest physical addresses. */
export interface AddressRange {
  readonly base: GuestAddress;
  readonly length: bigint;
}

/** Makes a validated range; zero-length ranges are refused. */
export function addressRange(base: bigint | number, length: bigint | number, operation = 'address.range'): AddressRange {
  const b = guestAddress(base, operation);
  const len = typeof length === 'bigint' ? length : toBigIntExact(length, operation);
  if (len <= 0n) throw new InvalidError(operation, `zero or negative length at ${hex(b)}`);
  rangeEnd(b, len, operation);
  return { base: b, length: len };
}

/** True when `[a, a+alen)` and `[b, b+blen)` share at least one address. */
export function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return a.base < b.base + b.length && b.base < a.base + a.length;
}

/** True when `inner` lies entirely inside `outer`. */
export function rangeContains(outer: AddressRange, inner: AddressRange): boolean {
  return inner.base >= outer.base && inner.base + inner.length <= outer.base + outer.length;
}

/** Formats a range as `[0x1000, 0x2000)`. */
export function formatRange(r: AddressRange): string {
  return `[${hex(r.base)}, ${hex(r.base + r.length)})`;
}

/**
 * A set of non-overlapping ranges, sorted by base, validated once when built. Lookup is a
 * binary search, so a guest address can be checked against the RAM map on every DMA.
 */
export class RangeSet<T extends AddressRange = AddressRange> {
  readonly ranges: readonly T[];

  constructor(ranges: Iterable<T>, operation = 'address.rangeSet') {
    const sorted = [...ranges].sort((x, y) => (x.base < y.base ? -1 : x.base > y.base ? 1 : 0));
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i] as T;
      if (r.length <= 0n) throw new InvalidError(operation, `zero-length range at ${hex(r.base)}`);
      rangeEnd(r.base, r.length, operation);
      const prev = sorted[i - 1];
      if (prev !== undefined && rangesOverlap(prev, r)) {
        throw new InvalidError(operation, `ranges ${formatRange(prev)} and ${formatRange(r)} overlap`);
      }
    }
    this.ranges = sorted;
  }

  /** The range containing `address`, or `undefined`. */
  find(address: bigint): T | undefined {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.ranges[mid] as T;
      if (address < r.base) hi = mid - 1;
      else if (address >= r.base + r.length) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /**
   * The pieces of `[base, base+length)` in order, each inside one range of the set. Throws
   * `Invalid` naming the first address not covered, so a DMA outside RAM is refused whole,
   * before any byte moves.
   */
  split(base: bigint, length: bigint, operation = 'address.split'): Array<{ range: T; offset: bigint; length: bigint }> {
    if (length < 0n) throw new InvalidError(operation, `negative length ${length}`);
    if (base < 0n || base + length > ADDRESS_SPACE_END) {
      throw new InvalidError(operation, `range ${hex(base)}+${hex(length)} leaves the 64-bit address space`);
    }
    const pieces: Array<{ range: T; offset: bigint; length: bigint }> = [];
    let cursor = base;
    const end = base + length;
    while (cursor < end) {
      const r = this.find(cursor);
      if (r === undefined) {
        throw new InvalidError(operation, `guest address ${hex(cursor)} is not in guest RAM`);
      }
      const pieceEnd = r.base + r.length < end ? r.base + r.length : end;
      pieces.push({ range: r, offset: cursor - r.base, length: pieceEnd - cursor });
      cursor = pieceEnd;
    }
    return pieces;
  }
}

function toBigIntExact(value: number, operation: string): bigint {
  if (!Number.isSafeInteger(value)) throw new InvalidError(operation, `${value} is not a safe integer`);
  return BigInt(value);
}
