/**
 * Dirty tracking on Xen is `push`: the toolstack owns the log-dirty bitmap (it turns log-dirty
 * mode on for a migration), Xen logs the guest's own writes, and the device model reports the
 * writes it makes through its foreign mappings with `xendevicemodel_modified_memory` — which
 * Xen ignores unless log-dirty mode is on. `start()`/`stop()` bracket the period in which this
 * backend also reports its own writes to guest RAM (rep-I/O buffers, applied tracked writes,
 * `memory.write`) by itself, as QEMU does while migrating; `push()` always forwards.
 */
import { BadHandleError, InvalidError, UnsupportedError, hex, type AddressRange, type DirtyBitmap, type DirtyLog, type RamRegion, type RangeSet } from '@vmed/core';

/** Reports `nr` frames from `firstPfn` as modified (`xendevicemodel_modified_memory`). */
export type ModifiedMemoryReporter = (firstPfn: bigint, nr: number) => void;

const MAX_FRAMES_PER_CALL = 0xffff_ffff;

/** See the module doc. */
export class XenDirtyLog implements DirtyLog {
  readonly mode = 'push' as const;
  #active = false;
  #closed = false;
  readonly #ram: RangeSet<RamRegion>;
  readonly #report: ModifiedMemoryReporter;

  constructor(ram: RangeSet<RamRegion>, report: ModifiedMemoryReporter) {
    this.#ram = ram;
    this.#report = report;
  }

  get active(): boolean {
    return this.#active;
  }

  start(): void {
    this.#open('dirty.start');
    this.#active = true;
  }

  stop(): void {
    this.#open('dirty.stop');
    this.#active = false;
  }

  pull(): DirtyBitmap[] {
    this.#open('dirty.pull');
    throw new UnsupportedError('dirty.pull', "Xen's log-dirty bitmap belongs to the toolstack: this backend pushes (modified_memory)");
  }

  push(range: AddressRange): void {
    this.#open('dirty.push');
    if (range.length <= 0n) throw new InvalidError('dirty.push', `empty range at ${hex(range.base)}`);
    // Refused whole if any byte is outside RAM (the Invalid names the first such address).
    this.#ram.split(range.base, range.length, 'dirty.push');
    this.reportBytes(range.base, range.length);
  }

  /** Reports the frames under `[address, address+length)` (already known to be RAM). */
  reportBytes(address: bigint, length: bigint): void {
    let first = address >> 12n;
    const last = (address + length - 1n) >> 12n;
    while (first <= last) {
      const remaining = last - first + 1n;
      const nr = remaining > BigInt(MAX_FRAMES_PER_CALL) ? MAX_FRAMES_PER_CALL : Number(remaining);
      this.#report(first, nr);
      first += BigInt(nr);
    }
  }

  /** Ends the log (session close). */
  close(): void {
    this.#closed = true;
    this.#active = false;
  }

  #open(operation: string): void {
    if (this.#closed) throw new BadHandleError(operation, 'dirty log is closed');
  }
}
