/**
 * The I/O context's side of the poller thread: registers eventfds with the epoll set, hears
 * the poller through `Atomics.waitAsync` and calls each ready fd's handler on the I/O context.
 * It also lends the poller to an inline vCPU as its kicker (see `protocol.ts`).
 *
 * One poller serves every session of an I/O thread ({@link acquirePoller}): sessions hold a
 * reference from creation to close, and the thread stops with the last one. Sessions that
 * come and go while another is open (a leak check, a test suite) then cost no thread start.
 * The poller is per isolate, so at most one inline slice (one I/O thread) uses it at a time.
 */
import type { Worker } from 'node:worker_threads';
import { BadHandleError, IoError, NoSpaceError } from '@vmed/core';
import {
  EPOLLET,
  EPOLLIN,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_EVENT_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  errnoName,
  lastErrno,
  libc,
} from '../abi/libc.js';
import { nativeError } from '../errors.js';
import { EventFd } from '../host/eventfd.js';
import { spawnWorker } from '../threads/spawn.js';
import {
  CONTROL_TOKEN,
  P,
  POLLER_CAPACITY,
  POLLER_FAILED,
  P_READY_WORD,
  P_RUN_ADDRESS,
  pollerBufferBytes,
  type PollerWorkerData,
} from './protocol.js';

/** Called on the I/O context when a watched fd became readable. */
export type ReadyHandler = () => void;

/** Default inline quantum: how long an inline vCPU may keep the I/O thread before a kick. */
export const DEFAULT_QUANTUM_MS = 4;

export class EventfdPoller {
  readonly #shared: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #big: BigInt64Array;
  readonly #epollFd: number;
  readonly #control: EventFd;
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  readonly #handlers = new Map<number, ReadyHandler>();
  readonly #freeTokens: number[] = [];
  readonly #event = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #errorListeners = new Set<(error: unknown) => void>();
  #nextToken = CONTROL_TOKEN + 1;
  #inlineRuns = 0;
  #closed = false;
  #seen = 0;

  private constructor(epollFd: number, control: EventFd, signal: number) {
    this.#epollFd = epollFd;
    this.#control = control;
    this.#shared = new SharedArrayBuffer(pollerBufferBytes(POLLER_CAPACITY));
    this.#words = new Int32Array(this.#shared);
    this.#big = new BigInt64Array(this.#shared);
    Atomics.store(this.#words, P.QUANTUM_MS, DEFAULT_QUANTUM_MS);
    // No buffer: the process id, for tgkill from the poller thread.
    Atomics.store(this.#words, P.PID, libc().getpid());
    Atomics.store(this.#words, P.SIGNAL, signal);
    this.#epollAdd(control.fd, CONTROL_TOKEN);
    const data: PollerWorkerData = { shared: this.#shared, epollFd, controlFd: control.fd, capacity: POLLER_CAPACITY };
    this.#worker = spawnWorker('poller-worker', data);
    // The poller must not keep the process alive on its own: the session's owner closes it.
    this.#worker.unref();
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once('exit', () => resolve());
      this.#worker.once('error', (error) => this.#report(error));
    });
    this.#arm();
  }

  /**
   * Creates the epoll set and its control eventfd and starts the poller thread. `signal` is
   * the kick signal (see `threads/kick-signal.ts`).
   */
  static start(signal: number): EventfdPoller {
    // The kernel creates an epoll instance; the fd is ours until close().
    const epollFd = libc().epollCreate1(EPOLL_CLOEXEC);
    if (epollFd < 0) throw nativeError('kvm.poller.start', lastErrno(), 'epoll_create1 failed');
    let control: EventFd | undefined;
    try {
      control = EventFd.create('kvm.poller.start');
      return new EventfdPoller(epollFd, control, signal);
    } catch (e) {
      control?.close();
      // Nothing was added to the epoll set yet; the fd is simply released.
      libc().close(epollFd);
      throw e;
    }
  }

  /** Receives failures of the poller itself and of ready handlers that throw. */
  addErrorListener(listener: (error: unknown) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /** Kernel fds the poller holds (epoll set, control eventfd). */
  get fds(): number {
    return this.#closed ? 0 : 2;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** How many times the poller has kicked an inline vCPU. */
  get kicks(): number {
    return Atomics.load(this.#words, P.KICKS);
  }

  /**
   * Watches `fd` (edge-triggered) and calls `handler` on the I/O context each time it becomes
   * readable. The handler must read the fd. Returns a token for {@link unwatch}.
   */
  watch(fd: number, handler: ReadyHandler): number {
    if (this.#closed) throw new BadHandleError('kvm.poller.watch');
    const token = this.#freeTokens.pop() ?? this.#nextToken;
    if (token >= POLLER_CAPACITY) throw new NoSpaceError('kvm.poller.watch', `the poller watches at most ${POLLER_CAPACITY - 1} fds`);
    this.#epollAdd(fd, token);
    if (token === this.#nextToken) this.#nextToken++;
    this.#handlers.set(token, handler);
    return token;
  }

  /** Stops watching; the fd may be closed afterwards. */
  unwatch(token: number, fd: number): void {
    if (!this.#handlers.delete(token)) return;
    // Removes `fd` from the epoll set; the kernel ignores the event argument for DEL.
    if (!this.#closed && libc().epollCtl(this.#epollFd, EPOLL_CTL_DEL, fd, null) < 0) {
      this.#report(nativeError('kvm.poller.unwatch', lastErrno(), `epoll_ctl(DEL, ${fd}) failed`));
    }
    // A stale READY bit for this token reaches no handler (or a new owner, whose read is
    // then simply empty): tokens are reused only after the bit is cleared below.
    Atomics.and(this.#words, P_READY_WORD + (token >>> 5), ~(1 << (token & 31)));
    this.#freeTokens.push(token);
  }

  /** An inline run starts: the poller wakes every quantum while any is running. */
  beginInline(): void {
    if (this.#inlineRuns++ > 0) return;
    Atomics.store(this.#words, P.INLINE, 1);
    this.#control.signal('kvm.poller.beginInline');
  }

  /** An inline run ended. */
  endInline(): void {
    if (--this.#inlineRuns > 0) return;
    Atomics.store(this.#words, P.IN_SLICE, 0);
    Atomics.store(this.#words, P.INLINE, 0);
    Atomics.store(this.#big, P_RUN_ADDRESS, 0n);
  }

  /**
   * The I/O thread `tid` is about to run the vCPU whose kvm_run is at `runAddress` until
   * kicked, at most `quantumMs` (plus one quantum of slack).
   */
  enterSlice(tid: number, runAddress: bigint, quantumMs: number): void {
    Atomics.store(this.#words, P.MAIN_TID, tid);
    Atomics.store(this.#big, P_RUN_ADDRESS, runAddress);
    Atomics.store(this.#words, P.QUANTUM_MS, quantumMs);
    Atomics.add(this.#words, P.SLICE_EPOCH, 1);
    Atomics.store(this.#words, P.IN_SLICE, 1);
  }

  /** The I/O thread is back in the event loop. */
  leaveSlice(): void {
    Atomics.store(this.#words, P.IN_SLICE, 0);
  }

  /** True when some watched fd is waiting for its handler (an inline slice should end). */
  hasPending(): boolean {
    return Atomics.load(this.#words, P.SEQ) !== this.#seen;
  }

  /** Stops the poller thread and closes the epoll set and control fd. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.clear();
    Atomics.store(this.#words, P.STOP, 1);
    this.#control.signal('kvm.poller.close');
    // Keep the process alive until the thread is gone, or an unref'd worker's 'exit' may never
    // be delivered (the loop would empty first) and close() would never resolve.
    this.#worker.ref();
    await this.#exited;
    this.#control.close();
    // The poller thread has exited: nobody waits on the epoll set any more.
    libc().close(this.#epollFd);
    // Settles the pending Atomics.waitAsync so nothing keeps a reference to this poller.
    Atomics.notify(this.#words, P.SEQ);
  }

  #report(error: unknown): void {
    for (const listener of this.#errorListeners) listener(error);
  }

  #epollAdd(fd: number, token: number): void {
    const v = new DataView(this.#event.buffer);
    v.setUint32(0, (EPOLLIN | EPOLLET) >>> 0, true);
    v.setBigUint64(EPOLL_EVENT_DATA_OFFSET, BigInt(token), true);
    // The kernel copies the 12-byte event (events mask and token) during the call.
    if (libc().epollCtl(this.#epollFd, EPOLL_CTL_ADD, fd, this.#event) < 0) {
      throw nativeError('kvm.poller.watch', lastErrno(), `epoll_ctl(ADD, ${fd}) failed`);
    }
  }

  #arm(): void {
    if (this.#closed) return;
    const result = Atomics.waitAsync(this.#words, P.SEQ, this.#seen);
    if (result.async) {
      void result.value.then(() => this.#dispatch());
    } else {
      queueMicrotask(() => this.#dispatch());
    }
  }

  #dispatch(): void {
    if (this.#closed) return;
    if (Atomics.load(this.#words, P.STATE) === POLLER_FAILED) {
      const errno = Atomics.load(this.#words, P.ERRNO);
      this.#report(new IoError('kvm.poller', 'epoll_wait failed; doorbells and line resamples stop', { errno: errnoName(errno) }));
      return;
    }
    // Read SEQ before scanning: a bit set after the scan bumps SEQ past this value, and the
    // wait below returns at once.
    this.#seen = Atomics.load(this.#words, P.SEQ);
    const words = Math.ceil(this.#nextToken / 32);
    for (let w = 0; w < words; w++) {
      let bits = Atomics.exchange(this.#words, P_READY_WORD + w, 0);
      while (bits !== 0) {
        const bit = 31 - Math.clz32(bits);
        bits &= ~(1 << bit);
        const handler = this.#handlers.get(w * 32 + bit);
        if (handler === undefined) continue;
        try {
          handler();
        } catch (error) {
          this.#report(error);
        }
      }
    }
    this.#arm();
  }
}

/** The poller of this I/O thread (isolate) and how many sessions hold it. */
let current: { poller: EventfdPoller; users: number } | undefined;

/** Takes a reference to this thread's poller, starting it if no session holds one. */
export function acquirePoller(signal: number): EventfdPoller {
  if (current === undefined || current.poller.closed) current = { poller: EventfdPoller.start(signal), users: 0 };
  current.users++;
  return current.poller;
}

/** Drops a reference taken with {@link acquirePoller}; the last one stops the thread. */
export async function releasePoller(poller: EventfdPoller): Promise<void> {
  if (current === undefined || current.poller !== poller) {
    await poller.close();
    return;
  }
  if (--current.users > 0) return;
  current = undefined;
  await poller.close();
}
