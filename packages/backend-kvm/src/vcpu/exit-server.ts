/**
 * Serving one exit request on the I/O context: the bridge between a vCPU exit and the core's
 * {@link IoRequestSink}. Writes to write-tracked pages go to the page tracker first, a write
 * to the run's done port ends the vCPU, everything else reaches the sink.
 *
 * The access is read from wherever it lies, through a DataView and an offset: the mmap'd
 * `kvm_run` itself in inline mode (reads are answered in place, where the next `KVM_RUN`
 * picks them up), or a vCPU's mailbox in worker mode. This is the exit hot path: it makes no
 * object per access. The sink's interface takes bigints, so the address and value become
 * bigints only at that call, and the last address and value are kept, because a guest
 * hammers one register with one value (a doorbell, a status poll) more often than not.
 *
 * The guest controls every field here. Widths the sink does not take (an MMIO access of 3, 5,
 * 6 or 7 bytes, which KVM produces when it splits an access at a page boundary) are served as
 * single bytes; a sink that throws (a device model bug, never a guest-controlled condition)
 * is reported through `onError` and the access completes as unclaimed: reads all-ones,
 * writes dropped.
 */
import { allOnes, type AccessSize, type IoRequestSink, type IoSpace } from '@vmed/core';
import { ACTION_CONTINUE, ACTION_FINISH, KIND_MMIO, M, type Mailbox } from './mailbox.js';

/** Where tracked writes go (see `tracking/page-tracker.ts`). */
export interface TrackedWriteSink {
  /** False while no range is tracked: the exit path then skips {@link handleWrite}. */
  readonly tracking: boolean;
  /**
   * Handles a guest write of `size` bytes (at `data[at..]`) if it hit a tracked range; false
   * when it did not.
   */
  handleWrite(address: bigint, data: DataView, at: number, size: number): boolean;
}

export interface ExitServerOptions {
  readonly tracker?: TrackedWriteSink;
  readonly onError: (error: unknown) => void;
}

export class ExitServer {
  readonly #tracker: TrackedWriteSink | undefined;
  readonly #onError: (error: unknown) => void;
  /** The attached sink, or undefined before `attach` (accesses then behave as unclaimed). */
  sink: IoRequestSink | undefined;
  /** Port whose writes end the vCPU's run (the guest controller's "done" port). */
  donePort: number | undefined;
  /** Last value written to the done port, per vCPU. */
  readonly doneValues = new Map<number, bigint>();
  // The last address and 32-bit value made into bigints, as numbers and as bigints.
  #lastLow = 0;
  #lastHigh = 0;
  #lastAddress = 0n;
  #lastValue = 0;
  #lastBigValue = 0n;

  constructor(options: ExitServerOptions) {
    this.#tracker = options.tracker;
    this.#onError = options.onError;
  }

  /** Serves the request in `mailbox` for vCPU `vcpu`, leaving the answer (and ACTION) in it. */
  serve(mailbox: Mailbox, vcpu: number): void {
    const w = mailbox.words;
    const size = w[M.SIZE] as number;
    const isWrite = w[M.WRITE] === 1;
    const low = (w[M.ADDR_LO] as number) >>> 0;
    const high = (w[M.ADDR_HI] as number) >>> 0;
    if (w[M.KIND] === KIND_MMIO) {
      this.serveMmio(low, high, size, isWrite, mailbox.dataView, 0);
      w[M.ACTION] = ACTION_CONTINUE;
    } else {
      w[M.ACTION] = this.servePio(low, size, w[M.COUNT] as number, isWrite, mailbox.dataView, 0, vcpu);
    }
  }

  /**
   * One MMIO access at guest-physical `high:low` of `size` (1–8) bytes, its data at
   * `data[at..at+size)`: read from for a write, filled for a read.
   */
  serveMmio(low: number, high: number, size: number, isWrite: boolean, data: DataView, at: number): void {
    const address = this.#address(low, high);
    if (isWrite) {
      const tracker = this.#tracker;
      if (tracker !== undefined && tracker.tracking && tracker.handleWrite(address, data, at, size)) return;
      if (size === 1 || size === 2 || size === 4 || size === 8) {
        this.#write('mmio', address, size, this.#valueAt(data, at, size));
      } else {
        for (let i = 0; i < size; i++) this.#write('mmio', address + BigInt(i), 1, this.#small(data.getUint8(at + i)));
      }
      return;
    }
    if (size === 1 || size === 2 || size === 4 || size === 8) {
      setValueAt(data, at, size, this.#read('mmio', address, size));
    } else {
      for (let i = 0; i < size; i++) data.setUint8(at + i, Number(this.#read('mmio', address + BigInt(i), 1)));
    }
  }

  /**
   * `count` port accesses of `size` (1, 2 or 4) bytes at `port`, their data packed at
   * `data[at..]`. Returns ACTION_FINISH when one was a write to the done port.
   */
  servePio(port: number, size: number, count: number, isWrite: boolean, data: DataView, at: number, vcpu: number): number {
    const width = size as 1 | 2 | 4;
    let action = ACTION_CONTINUE;
    const address = this.#address(port, 0);
    for (let i = 0, offset = at; i < count; i++, offset += width) {
      if (isWrite) {
        const value = this.#valueAt(data, offset, width);
        if (port === this.donePort) {
          this.doneValues.set(vcpu, value);
          action = ACTION_FINISH;
          continue;
        }
        this.#write('pio', address, width, value);
      } else {
        setValueAt(data, offset, width, this.#read('pio', address, width));
      }
    }
    return action;
  }

  #address(low: number, high: number): bigint {
    if (low !== this.#lastLow || high !== this.#lastHigh) {
      this.#lastLow = low;
      this.#lastHigh = high;
      this.#lastAddress = high === 0 ? BigInt(low) : (BigInt(high) << 32n) | BigInt(low);
    }
    return this.#lastAddress;
  }

  #valueAt(data: DataView, at: number, size: 1 | 2 | 4 | 8): bigint {
    switch (size) {
      case 1:
        return this.#small(data.getUint8(at));
      case 2:
        return this.#small(data.getUint16(at, true));
      case 4:
        return this.#small(data.getUint32(at, true));
      default:
        return data.getBigUint64(at, true);
    }
  }

  /** A 32-bit value as a bigint, reusing the last one made. */
  #small(value: number): bigint {
    if (value !== this.#lastValue) {
      this.#lastValue = value;
      this.#lastBigValue = BigInt(value);
    }
    return this.#lastBigValue;
  }

  #read(space: IoSpace, address: bigint, size: AccessSize): bigint {
    const sink = this.sink;
    if (sink === undefined) return allOnes(size);
    try {
      return BigInt.asUintN(size * 8, sink.read(space, address, size));
    } catch (error) {
      this.#onError(error);
      return allOnes(size);
    }
  }

  #write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    const sink = this.sink;
    if (sink === undefined) return;
    try {
      sink.write(space, address, size, value);
    } catch (error) {
      this.#onError(error);
    }
  }
}

/** Stores `value` (already `size` bytes wide) little-endian at `data[at..]`. */
function setValueAt(data: DataView, at: number, size: 1 | 2 | 4 | 8, value: bigint): void {
  switch (size) {
    case 1:
      data.setUint8(at, Number(value));
      break;
    case 2:
      data.setUint16(at, Number(value), true);
      break;
    case 4:
      data.setUint32(at, Number(value), true);
      break;
    default:
      data.setBigUint64(at, value, true);
  }
}
