/**
 * Serving one exit request on the I/O context: the bridge between a vCPU's mailbox and the
 * core's {@link IoRequestSink}. Writes to write-tracked pages go to the page tracker first,
 * a write to the run's done port ends the vCPU, everything else reaches the sink.
 *
 * The guest controls every field here. Widths the sink does not take (an MMIO access of 3, 5,
 * 6 or 7 bytes, which KVM produces when it splits an access at a page boundary) are served as
 * single bytes; a sink that throws (a device model bug, never a guest-controlled condition)
 * is reported through `onError` and the access completes as unclaimed: reads all-ones,
 * writes dropped.
 */
import { allOnes, type AccessSize, type IoRequestSink, type IoSpace } from '@vmed/core';
import { ACTION_CONTINUE, ACTION_FINISH, KIND_MMIO, type Mailbox } from './mailbox.js';

/** Where tracked writes go (see `tracking/page-tracker.ts`). */
export interface TrackedWriteSink {
  /** Handles a guest write if it hit a tracked range; false when it did not. */
  handleWrite(address: bigint, bytes: Uint8Array): boolean;
}

export interface ExitServerOptions {
  /** The attached sink, or undefined before `attach` (accesses then behave as unclaimed). */
  readonly sink: () => IoRequestSink | undefined;
  readonly tracker?: TrackedWriteSink;
  readonly onError: (error: unknown) => void;
}

export class ExitServer {
  readonly #options: ExitServerOptions;
  /** Port whose writes end the vCPU's run (the guest controller's "done" port). */
  donePort: number | undefined;
  /** Last value written to the done port, per vCPU. */
  readonly doneValues = new Map<number, bigint>();

  constructor(options: ExitServerOptions) {
    this.#options = options;
  }

  /** Serves the request in `mailbox` for vCPU `vcpu`, leaving the answer in it. */
  serve(mailbox: Mailbox, vcpu: number): void {
    mailbox.action = ACTION_CONTINUE;
    if (mailbox.kind === KIND_MMIO) {
      this.#serveMmio(mailbox);
    } else {
      this.#servePio(mailbox, vcpu);
    }
  }

  #serveMmio(m: Mailbox): void {
    const address = m.address;
    const size = m.size;
    const data = m.data;
    if (m.isWrite) {
      if (this.#options.tracker?.handleWrite(address, data.subarray(0, size))) return;
      if (isAccessSize(size)) {
        this.#write('mmio', address, size, m.value(0, size));
      } else {
        for (let i = 0; i < size; i++) this.#write('mmio', address + BigInt(i), 1, BigInt(data[i] as number));
      }
      return;
    }
    if (isAccessSize(size)) {
      m.setValue(0, size, this.#read('mmio', address, size));
    } else {
      for (let i = 0; i < size; i++) data[i] = Number(this.#read('mmio', address + BigInt(i), 1));
    }
  }

  #servePio(m: Mailbox, vcpu: number): void {
    const port = m.address;
    const size = m.size as 1 | 2 | 4;
    const count = m.count;
    for (let i = 0; i < count; i++) {
      const at = i * size;
      if (m.isWrite) {
        const value = m.value(at, size);
        if (this.donePort !== undefined && port === BigInt(this.donePort)) {
          this.doneValues.set(vcpu, value);
          m.action = ACTION_FINISH;
          continue;
        }
        this.#write('pio', port, size, value);
      } else {
        m.setValue(at, size, this.#read('pio', port, size));
      }
    }
  }

  #read(space: IoSpace, address: bigint, size: AccessSize): bigint {
    const sink = this.#options.sink();
    if (sink === undefined) return allOnes(size);
    try {
      return BigInt.asUintN(size * 8, sink.read(space, address, size));
    } catch (error) {
      this.#options.onError(error);
      return allOnes(size);
    }
  }

  #write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    const sink = this.#options.sink();
    if (sink === undefined) return;
    try {
      sink.write(space, address, size, value);
    } catch (error) {
      this.#options.onError(error);
    }
  }
}

function isAccessSize(size: number): size is AccessSize {
  return size === 1 || size === 2 || size === 4 || size === 8;
}
