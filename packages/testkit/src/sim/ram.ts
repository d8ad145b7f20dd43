/**
 * The sim guest's RAM: one `ArrayBuffer` holding every region in guest order (with a page of
 * padding between regions when `hostGaps` is set), the address translation, and the dirty
 * bitmaps and pin counts that live beside the memory.
 */
import { InvalidError, PAGE_SIZE, RangeSet, hex, type DirtyBitmap, type RamRegion } from '@vmed/core';

/** A RAM region and where it sits in the host buffer. */
interface HostRegion extends RamRegion {
  readonly hostOffset: number;
  /** One bit per page; see {@link DirtyBitmap}. */
  readonly dirty: Uint32Array;
  readonly pages: number;
}

/** A piece of a guest range inside one region. */
export interface RamPiece {
  readonly address: bigint;
  readonly length: number;
  readonly hostOffset: number;
}

export class SimRam {
  /** The public RAM map (plain regions; host offsets stay private). */
  readonly map: RangeSet<RamRegion>;
  readonly #regions: RangeSet<HostRegion>;
  #bytes: Uint8Array;
  #released = false;
  /** Pin count per guest page number. */
  readonly #pins = new Map<bigint, number>();

  constructor(map: RangeSet<RamRegion>, hostGaps: boolean) {
    this.map = map;
    let offset = 0;
    const hostRegions: HostRegion[] = [];
    for (const r of map.ranges) {
      const pages = Number(r.length / BigInt(PAGE_SIZE));
      hostRegions.push({ ...r, hostOffset: offset, pages, dirty: new Uint32Array(Math.ceil(pages / 32)) });
      offset += Number(r.length) + (hostGaps ? PAGE_SIZE : 0);
    }
    this.#regions = new RangeSet(hostRegions);
    this.#bytes = new Uint8Array(offset);
  }

  /** The host buffer (the guest's CPU and the views read it directly). */
  get bytes(): Uint8Array {
    return this.#bytes;
  }

  /** Whether {@link release} ran. */
  get released(): boolean {
    return this.#released;
  }

  /** Drops the buffer: the hypervisor handle going away. */
  release(): void {
    this.#released = true;
    this.#bytes = new Uint8Array(0);
    this.#pins.clear();
  }

  /**
   * Splits `[address, address+length)` into host pieces, refusing the whole range with
   * `Invalid` (`bytesDone: 0`) if any byte is outside RAM.
   */
  pieces(address: bigint, length: number, operation: string): RamPiece[] {
    checkAddress(address, operation);
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidError(operation, `length ${length} is not a non-negative integer`, { bytesDone: 0 });
    let split;
    try {
      split = this.#regions.split(address, BigInt(length), operation);
    } catch (e) {
      const end = address + BigInt(length);
      throw new InvalidError(operation, `[${hex(address)}, ${hex(end)}) is not all guest RAM`, { bytesDone: 0, cause: e });
    }
    return split.map((p) => ({ address: p.range.base + p.offset, length: Number(p.length), hostOffset: p.range.hostOffset + Number(p.offset) }));
  }

  /** True when `[address, address+length)` is entirely RAM. */
  contains(address: bigint, length: number): boolean {
    try {
      this.#regions.split(address, BigInt(length));
      return true;
    } catch {
      return false;
    }
  }

  /** True when any byte of `[address, address+length)` is RAM. */
  overlaps(address: bigint, length: bigint): boolean {
    return this.#regions.ranges.some((r) => r.base < address + length && address < r.base + r.length);
  }

  /**
   * The host offset of a range that is RAM and contiguous in the host; `Invalid` when it
   * leaves RAM or crosses regions mapped apart.
   */
  hostSpan(address: bigint, length: number, operation: string): number {
    const pieces = this.pieces(address, length, operation);
    const first = pieces[0];
    if (first === undefined) throw new InvalidError(operation, 'zero-length range', { bytesDone: 0 });
    let expect = first.hostOffset;
    for (const p of pieces) {
      if (p.hostOffset !== expect) {
        throw new InvalidError(operation, `[${hex(address)}, ${hex(address + BigInt(length))}) spans RAM regions that are not contiguous in the host`, { bytesDone: 0 });
      }
      expect += p.length;
    }
    return first.hostOffset;
  }

  read(address: bigint, dst: Uint8Array, operation: string): void {
    let done = 0;
    for (const p of this.pieces(address, dst.length, operation)) {
      dst.set(this.#bytes.subarray(p.hostOffset, p.hostOffset + p.length), done);
      done += p.length;
    }
  }

  write(address: bigint, src: Uint8Array, operation: string): void {
    let done = 0;
    for (const p of this.pieces(address, src.length, operation)) {
      this.#bytes.set(src.subarray(done, done + p.length), p.hostOffset);
      done += p.length;
    }
  }

  /** Sets the dirty bits of every page `[address, address+length)` touches (which must be RAM). */
  markDirty(address: bigint, length: number): void {
    if (length === 0) return;
    const page = BigInt(PAGE_SIZE);
    for (const p of this.#regions.split(address, BigInt(length))) {
      const r = p.range;
      const first = Number(p.offset / page);
      const last = Number((p.offset + p.length - 1n) / page);
      for (let i = first; i <= last; i++) r.dirty[i >>> 5] = (r.dirty[i >>> 5] as number) | (1 << (i & 31));
    }
  }

  /** Copies out and clears every region's bitmap. */
  takeDirty(): DirtyBitmap[] {
    return this.#regions.ranges.map((r) => {
      const bits = r.dirty.slice();
      r.dirty.fill(0);
      return { base: r.base, pages: r.pages, bits };
    });
  }

  clearDirty(): void {
    for (const r of this.#regions.ranges) r.dirty.fill(0);
  }

  /** Adds `delta` to the pin count of every page of the range. */
  pinPages(address: bigint, length: number, delta: 1 | -1): void {
    const first = address / BigInt(PAGE_SIZE);
    const last = (address + BigInt(length) - 1n) / BigInt(PAGE_SIZE);
    for (let p = first; p <= last; p++) {
      const n = (this.#pins.get(p) ?? 0) + delta;
      if (n === 0) this.#pins.delete(p);
      else this.#pins.set(p, n);
    }
  }

  /** Pin count of the page holding `address`. */
  pinCount(address: bigint): number {
    return this.#pins.get(address / BigInt(PAGE_SIZE)) ?? 0;
  }

  /** Number of pages held by at least one pin. */
  get pinnedPages(): number {
    return this.#pins.size;
  }
}

/** Refuses addresses that are not 64-bit guest addresses. */
export function checkAddress(address: unknown, operation: string): asserts address is bigint {
  if (typeof address !== 'bigint') throw new InvalidError(operation, `address must be a bigint, got ${typeof address}`, { bytesDone: 0 });
  if (address < 0n || address >= 1n << 64n) throw new InvalidError(operation, `address ${hex(address)} is outside the 64-bit space`, { bytesDone: 0 });
}
