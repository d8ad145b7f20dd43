/**
 * The I/O dispatcher: guest accesses in, device regions out.
 *
 * Every backend ends in {@link IoDispatcher.read}/{@link IoDispatcher.write} (it is the
 * {@link IoRequestSink}). Each space keeps a sorted list of claimed ranges. Rules, the same on
 * every hypervisor:
 * - a zero-length range, or one overlapping a claimed range, is refused when claimed;
 * - region handlers see naturally aligned accesses of 1, 2 or 4 bytes: an 8-byte access is
 *   two 4-byte ones (low half first), an unaligned one is split into aligned pieces;
 * - an access straddling a region boundary is split at the boundary, each piece going to its
 *   owner; pieces nobody claims read all-ones and drop writes;
 * - a handler that throws does not reach the backend: the piece reads all-ones, the write is
 *   dropped, and the range's owner is told through `onFault` (the mediator marks the device
 *   broken).
 */
import type { AddressRange } from '../address.js';
import { formatRange, rangeEnd } from '../address.js';
import type { AccessSize, IoRequestSink, IoSpace } from '../backend/io.js';
import { ExistsError, InvalidError, hex } from '../errors.js';

/** A region's handler: offsets are relative to the region base. */
export interface IoTarget {
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
}

/** Called when a target throws; the access itself has already been answered. */
export type IoFaultHandler = (error: unknown, access: { space: IoSpace; address: bigint; size: number; write: boolean }) => void;

interface Entry {
  readonly base: bigint;
  readonly end: bigint;
  readonly target: IoTarget;
  readonly name: string;
  readonly onFault: IoFaultHandler | undefined;
}

/** Handle for a claimed range; dispose to remove it. */
export interface DispatchRegistration extends Disposable {
  readonly space: IoSpace;
  readonly range: AddressRange;
  readonly name: string;
  dispose(): void;
}

/** Counters kept by the dispatcher, for summaries and benchmarks. */
export interface DispatchStats {
  reads: number;
  writes: number;
  unclaimed: number;
  faults: number;
}

/** `BigInt(n)` for access sizes and their alignment masks, made once: this is the exit hot path. */
const BIG: readonly bigint[] = [0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n];

const MAX_SPACE_END: Record<IoSpace, bigint> = {
  mmio: 1n << 64n,
  pio: 0x10000n,
  pci: 1n << 44n,
};

export class IoDispatcher implements IoRequestSink {
  private readonly spaces: Record<IoSpace, Entry[]> = { mmio: [], pio: [], pci: [] };
  /** The last entry hit per space: guests hammer one register at a time. */
  private readonly lastHit: Record<IoSpace, Entry | undefined> = { mmio: undefined, pio: undefined, pci: undefined };
  readonly stats: DispatchStats = { reads: 0, writes: 0, unclaimed: 0, faults: 0 };

  /**
   * Claims `range` in `space` for `target`. Zero-length → `Invalid`; overlap → `Exists`
   * naming both ranges.
   */
  add(space: IoSpace, range: AddressRange, target: IoTarget, name: string, onFault?: IoFaultHandler): DispatchRegistration {
    const operation = 'dispatch.add';
    if (range.length <= 0n) throw new InvalidError(operation, `zero-length ${space} range for ${name} at ${hex(range.base)}`);
    const end = rangeEnd(range.base, range.length, operation);
    if (end > MAX_SPACE_END[space]) throw new InvalidError(operation, `${space} range ${formatRange(range)} for ${name} is outside the space`);
    const list = this.spaces[space];
    const clash = list.find((e) => e.base < end && range.base < e.end);
    if (clash !== undefined) {
      throw new ExistsError(operation, `${space} range ${formatRange(range)} for ${name} overlaps ${clash.name} at [${hex(clash.base)}, ${hex(clash.end)})`);
    }
    const entry: Entry = { base: range.base, end, target, name, onFault };
    const at = list.findIndex((e) => e.base > range.base);
    if (at < 0) list.push(entry);
    else list.splice(at, 0, entry);
    let disposed = false;
    return {
      space,
      range,
      name,
      dispose: () => {
        if (disposed) return;
        disposed = true;
        const i = list.indexOf(entry);
        if (i >= 0) list.splice(i, 1);
        if (this.lastHit[space] === entry) this.lastHit[space] = undefined;
      },
      [Symbol.dispose]() {
        this.dispose();
      },
    };
  }

  /** The name of the region claiming `address`, if any (diagnostics, lspci). */
  owner(space: IoSpace, address: bigint): string | undefined {
    return this.find(space, address)?.name;
  }

  /** All claimed ranges of a space, sorted. */
  claims(space: IoSpace): Array<{ range: AddressRange; name: string }> {
    return this.spaces[space].map((e) => ({ range: { base: e.base, length: e.end - e.base } as AddressRange, name: e.name }));
  }

  read(space: IoSpace, address: bigint, size: AccessSize): bigint {
    this.stats.reads++;
    const entry = this.find(space, address);
    // Fast path: an aligned access of ≤ 4 bytes inside one region.
    if (entry !== undefined && size !== 8 && address + (BIG[size] as bigint) <= entry.end && (address & (BIG[size - 1] as bigint)) === 0n) {
      return BigInt(this.readPiece(space, entry, address, size));
    }
    let value = 0n;
    for (const piece of this.pieces(space, address, size)) {
      const v = piece.entry === undefined ? this.unclaimedRead(piece.size) : this.readPiece(space, piece.entry, piece.address, piece.size);
      value |= BigInt(v >>> 0) << BigInt(piece.shift * 8);
    }
    return value;
  }

  write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    this.stats.writes++;
    const entry = this.find(space, address);
    if (entry !== undefined && size !== 8 && address + (BIG[size] as bigint) <= entry.end && (address & (BIG[size - 1] as bigint)) === 0n) {
      // Backends hand over `size` bytes in the low bits; the mask guards against a wider value.
      const low = Number(value & 0xffff_ffffn);
      this.writePiece(space, entry, address, size, size === 4 ? low : low & ((1 << (size * 8)) - 1));
      return;
    }
    for (const piece of this.pieces(space, address, size)) {
      if (piece.entry === undefined) {
        this.stats.unclaimed++;
        continue;
      }
      const part = Number(BigInt.asUintN(piece.size * 8, value >> BigInt(piece.shift * 8)));
      this.writePiece(space, piece.entry, piece.address, piece.size, part);
    }
  }

  private readPiece(space: IoSpace, entry: Entry, address: bigint, size: 1 | 2 | 4): number {
    try {
      const v = entry.target.read(Number(address - entry.base), size);
      // A target answering wider than the piece must not spill into its neighbours' bytes or
      // past the access width the backend hands back to the guest.
      return size === 4 ? v >>> 0 : v & ((1 << (size * 8)) - 1);
    } catch (e) {
      this.fault(space, entry, e, address, size, false);
      return size === 4 ? 0xffff_ffff : (1 << (size * 8)) - 1;
    }
  }

  private writePiece(space: IoSpace, entry: Entry, address: bigint, size: 1 | 2 | 4, value: number): void {
    try {
      entry.target.write(Number(address - entry.base), size, value);
    } catch (e) {
      this.fault(space, entry, e, address, size, true);
    }
  }

  private unclaimedRead(size: 1 | 2 | 4): number {
    this.stats.unclaimed++;
    return size === 4 ? 0xffff_ffff : (1 << (size * 8)) - 1;
  }

  private fault(space: IoSpace, entry: Entry, error: unknown, address: bigint, size: number, write: boolean): void {
    this.stats.faults++;
    entry.onFault?.(error, { space, address, size, write });
  }

  private find(space: IoSpace, address: bigint): Entry | undefined {
    const hit = this.lastHit[space];
    if (hit !== undefined && address >= hit.base && address < hit.end) return hit;
    const list = this.spaces[space];
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const e = list[mid] as Entry;
      if (address < e.base) hi = mid - 1;
      else if (address >= e.end) lo = mid + 1;
      else {
        this.lastHit[space] = e;
        return e;
      }
    }
    return undefined;
  }

  /**
   * Splits `[address, address+size)` into naturally aligned pieces of ≤ 4 bytes, none
   * crossing a region boundary. `shift` is the piece's byte position in the access value.
   */
  private pieces(space: IoSpace, address: bigint, size: AccessSize): Array<{ address: bigint; size: 1 | 2 | 4; shift: number; entry: Entry | undefined }> {
    const out: Array<{ address: bigint; size: 1 | 2 | 4; shift: number; entry: Entry | undefined }> = [];
    const end = address + BigInt(size);
    let cursor = address;
    while (cursor < end) {
      const entry = this.find(space, cursor);
      // Stop a piece at the next boundary: the end of this region or the start of the next one.
      const limit = entry !== undefined ? (entry.end < end ? entry.end : end) : this.nextBase(space, cursor, end);
      let pieceSize: 1 | 2 | 4 = 4;
      while (pieceSize > 1 && ((cursor & BigInt(pieceSize - 1)) !== 0n || cursor + BigInt(pieceSize) > limit)) {
        pieceSize = (pieceSize >> 1) as 1 | 2;
      }
      out.push({ address: cursor, size: pieceSize, shift: Number(cursor - address), entry });
      cursor += BigInt(pieceSize);
    }
    return out;
  }

  private nextBase(space: IoSpace, from: bigint, end: bigint): bigint {
    for (const e of this.spaces[space]) if (e.base > from) return e.base < end ? e.base : end;
    return end;
  }
}
