/**
 * Watching eventfds (doorbells, level-line resamples) for the I/O context, and kicking an
 * inline vCPU off the I/O thread when one is ready or its quantum is over.
 *
 * Two ways to hear an fd, chosen when the poller starts ({@link PollerDelivery}):
 * - `loop`, when the I/O context is Node's main thread: each fd gets a libuv poll handle on
 *   the main loop (`uv-loop.ts`), so the kernel wakes the main thread itself and the handler
 *   runs from libuv's poll phase. One thread wake-up per doorbell instead of two: an eventfd
 *   round trip through JavaScript measured 6–12 µs this way against 17–37 µs through the
 *   poller thread, and 5–8 µs for a C thread (`packages/bench/micro/eventfd-hop.mjs`); it is
 *   most of `kvm.irq_inject`'s doorbell → handler → interrupt round trip.
 * - `thread`, on a worker thread (Node offers no handle on a worker's loop): the poller thread
 *   waits in `epoll_wait`, and the I/O context hears it through `Atomics.waitAsync` and calls
 *   each ready fd's handler.
 * Either way the poller thread runs: it is the inline vCPU's kicker (see `protocol.ts`). With
 * `loop` delivery its epoll set holds the watched fds only while an inline vCPU runs, which
 * is the only time the main loop cannot hear them itself (the thread is in `KVM_RUN`); a ready
 * fd then ends the slice, and the handler runs from the loop between slices.
 *
 * One poller serves every session of an I/O thread ({@link acquirePoller}): sessions hold a
 * reference from creation to close, and the thread stops with the last one. Sessions that
 * come and go while another is open (a leak check, a test suite) then cost no thread start.
 * The poller is per isolate, so at most one inline slice (one I/O thread) uses it at a time.
 */
import type { Worker } from 'node:worker_threads';
import { BadHandleError, IoError, NoSpaceError, UnsupportedError } from '@vmed/core';
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
import { UvPoll, uvLoopAvailable } from './uv-loop.js';
import {
  CONTROL_TOKEN,
  DELIVERY_LOOP,
  DELIVERY_THREAD,
  P,
  POLLER_CAPACITY,
  POLLER_FAILED,
  POLLER_STARTING,
  P_READY_WORD,
  P_RUN_ADDRESS,
  pollerBufferBytes,
  type PollerWorkerData,
} from './protocol.js';

/** Called on the I/O context when a watched fd became readable. */
export type ReadyHandler = () => void;

/** Default inline quantum: how long an inline vCPU may keep the I/O thread before a kick. */
export const DEFAULT_QUANTUM_MS = 4;

/** How ready fds reach the I/O context: libuv poll handles on the main loop, or the poller thread. */
export type PollerDelivery = 'loop' | 'thread';

interface Watch {
  readonly fd: number;
  readonly handler: ReadyHandler;
  /** `loop` delivery: the fd's poll handle on the main loop. */
  readonly uv: UvPoll | undefined;
}

export class EventfdPoller {
  readonly delivery: PollerDelivery;
  /**
   * Settles once the poller thread runs (or is gone): its Node environment is up, so the fds
   * and threads it holds are all there. Sessions wait for it before they are handed out, so
   * that what a session holds does not change behind its owner's back.
   */
  readonly ready: Promise<void>;
  readonly #shared: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #big: BigInt64Array;
  readonly #epollFd: number;
  readonly #control: EventFd;
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  readonly #watches = new Map<number, Watch>();
  readonly #freeTokens: number[] = [];
  readonly #event = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #errorListeners = new Set<(error: unknown) => void>();
  #nextToken = CONTROL_TOKEN + 1;
  #inlineRuns = 0;
  #closed = false;
  #failureReported = false;
  #seen = 0;

  private constructor(epollFd: number, control: EventFd, signal: number, delivery: PollerDelivery) {
    this.delivery = delivery;
    this.#epollFd = epollFd;
    this.#control = control;
    this.#shared = new SharedArrayBuffer(pollerBufferBytes(POLLER_CAPACITY));
    this.#words = new Int32Array(this.#shared);
    this.#big = new BigInt64Array(this.#shared);
    Atomics.store(this.#words, P.QUANTUM_MS, DEFAULT_QUANTUM_MS);
    // No buffer: the process id, for tgkill from the poller thread.
    Atomics.store(this.#words, P.PID, libc().getpid());
    Atomics.store(this.#words, P.SIGNAL, signal);
    Atomics.store(this.#words, P.DELIVERY, delivery === 'loop' ? DELIVERY_LOOP : DELIVERY_THREAD);
    this.#epollAdd(control.fd, CONTROL_TOKEN);
    const data: PollerWorkerData = { shared: this.#shared, epollFd, controlFd: control.fd, capacity: POLLER_CAPACITY };
    this.#worker = spawnWorker('poller-worker', data);
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once('exit', () => resolve());
      this.#worker.once('error', (error) => this.#report(error));
    });
    this.ready = Promise.race([this.#started(), this.#exited]).then(() => {
      // Running, the poller must not keep the process alive on its own: the session's owner
      // closes it. Until then it does, or a process awaiting `ready` could end first.
      if (!this.#closed) this.#worker.unref();
    });
    if (delivery === 'thread') this.#arm();
  }

  /**
   * Creates the epoll set and its control eventfd and starts the poller thread. `signal` is
   * the kick signal (see `threads/kick-signal.ts`). `delivery` defaults to `loop` where this
   * thread can have libuv poll handles (Node's main thread), `thread` elsewhere.
   * @throws `Unsupported` for `loop` off the main thread.
   */
  static start(signal: number, delivery: PollerDelivery = uvLoopAvailable() ? 'loop' : 'thread'): EventfdPoller {
    if (delivery === 'loop' && !uvLoopAvailable()) throw new UnsupportedError('kvm.poller.start', 'loop delivery needs Node\'s main thread');
    // The kernel creates an epoll instance; the fd is ours until close().
    const epollFd = libc().epollCreate1(EPOLL_CLOEXEC);
    if (epollFd < 0) throw nativeError('kvm.poller.start', lastErrno(), 'epoll_create1 failed');
    let control: EventFd | undefined;
    try {
      control = EventFd.create('kvm.poller.start');
      return new EventfdPoller(epollFd, control, signal, delivery);
    } catch (e) {
      control?.close();
      // Nothing was added to the epoll set yet; the fd is simply released.
      libc().close(epollFd);
      throw e;
    }
  }

  /** Waits (without blocking the thread) until the poller thread has left POLLER_STARTING. */
  async #started(): Promise<void> {
    for (;;) {
      const state = Atomics.load(this.#words, P.STATE);
      if (state !== POLLER_STARTING) return;
      const wait = Atomics.waitAsync(this.#words, P.STATE, state);
      if (wait.async) await wait.value;
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
   * Watches `fd` and calls `handler` on the I/O context when it is readable. The handler must
   * read the fd (with `loop` delivery it is called again while the fd stays readable; with
   * `thread` delivery the fd is edge-triggered). Returns a token for {@link unwatch}.
   */
  watch(fd: number, handler: ReadyHandler): number {
    const op = 'kvm.poller.watch';
    if (this.#closed) throw new BadHandleError(op);
    const reused = this.#freeTokens.pop();
    const token = reused ?? this.#nextToken;
    if (token >= POLLER_CAPACITY) throw new NoSpaceError(op, `the poller watches at most ${POLLER_CAPACITY - 1} fds`);
    let uv: UvPoll | undefined;
    try {
      if (this.delivery === 'loop') uv = UvPoll.watch(fd, handler, (error) => this.#report(error), op);
      // With loop delivery the poller thread sees the fd only while an inline vCPU runs (to
      // end its slice).
      if (uv === undefined || this.#inlineRuns > 0) this.#epollAdd(fd, token);
    } catch (error) {
      uv?.close();
      if (reused !== undefined) this.#freeTokens.push(reused);
      throw error;
    }
    if (token === this.#nextToken) this.#nextToken++;
    this.#watches.set(token, { fd, handler, uv });
    return token;
  }

  /** Stops watching; the fd may be closed afterwards. */
  unwatch(token: number, fd: number): void {
    const watch = this.#watches.get(token);
    if (watch === undefined) return;
    this.#watches.delete(token);
    watch.uv?.close();
    if (watch.uv === undefined || this.#inlineRuns > 0) this.#epollDel(fd, 'kvm.poller.unwatch');
    // A stale READY bit for this token reaches no handler (or a new owner, whose read is
    // then simply empty): tokens are reused only after the bit is cleared below.
    Atomics.and(this.#words, P_READY_WORD + (token >>> 5), ~(1 << (token & 31)));
    this.#freeTokens.push(token);
  }

  /** True while `token` is watched through a libuv poll handle (a handle `resources()` counts). */
  hasLoopHandle(token: number): boolean {
    return this.#watches.get(token)?.uv?.closed === false;
  }

  /** An inline run starts: the poller wakes every quantum while any is running. */
  beginInline(): void {
    if (this.#inlineRuns++ > 0) return;
    if (this.delivery === 'loop') {
      // The thread is about to spend its time in KVM_RUN, deaf to its loop: from now on the
      // poller thread hears the fds, to end a slice when one is ready. Adding a ready fd
      // reports it at once, after this snapshot, so the first slice ends for it at once.
      this.#seen = Atomics.load(this.#words, P.SEQ);
      for (const [token, watch] of this.#watches) {
        try {
          this.#epollAdd(watch.fd, token);
        } catch (error) {
          this.#report(error);
        }
      }
    }
    Atomics.store(this.#words, P.INLINE, 1);
    this.#control.signal('kvm.poller.beginInline');
  }

  /** An inline run ended. */
  endInline(): void {
    if (--this.#inlineRuns > 0) return;
    Atomics.store(this.#words, P.IN_SLICE, 0);
    Atomics.store(this.#words, P.INLINE, 0);
    Atomics.store(this.#big, P_RUN_ADDRESS, 0n);
    if (this.delivery === 'loop' && !this.#closed) {
      for (const watch of this.#watches.values()) this.#epollDel(watch.fd, 'kvm.poller.endInline');
    }
  }

  /**
   * The I/O thread `tid` is about to run the vCPU whose kvm_run is at `runAddress` until
   * kicked, at most `quantumMs` (plus one quantum of slack).
   */
  enterSlice(tid: number, runAddress: bigint, quantumMs: number): void {
    // Thread delivery reports a failed poller when it next dispatches; loop delivery has
    // nothing to dispatch, and what it loses is the kicker: say so before the slice.
    if (this.delivery === 'loop' && !this.#failureReported && Atomics.load(this.#words, P.STATE) === POLLER_FAILED) {
      this.#failureReported = true;
      const errno = Atomics.load(this.#words, P.ERRNO);
      this.#report(new IoError('kvm.poller', 'epoll_wait failed; an inline vCPU is no longer kicked off the I/O thread', { errno: errnoName(errno) }));
    }
    Atomics.store(this.#words, P.MAIN_TID, tid);
    Atomics.store(this.#big, P_RUN_ADDRESS, runAddress);
    Atomics.store(this.#words, P.QUANTUM_MS, quantumMs);
    Atomics.add(this.#words, P.SLICE_EPOCH, 1);
    Atomics.store(this.#words, P.IN_SLICE, 1);
  }

  /** The I/O thread goes back to the event loop. */
  leaveSlice(): void {
    Atomics.store(this.#words, P.IN_SLICE, 0);
    // Loop delivery: the loop turn that follows runs the handlers of every fd ready by now, so
    // only what the poller reports after this point is news for the next slice.
    if (this.delivery === 'loop') this.#seen = Atomics.load(this.#words, P.SEQ);
  }

  /** True when some watched fd is waiting for its handler (an inline slice should end). */
  hasPending(): boolean {
    return Atomics.load(this.#words, P.SEQ) !== this.#seen;
  }

  /** Stops the poller thread and closes the epoll set and control fd. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Owners unwatch before they close their fds; whatever is left stops here.
    for (const watch of this.#watches.values()) watch.uv?.close();
    this.#watches.clear();
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

  #epollDel(fd: number, op: string): void {
    // Removes `fd` from the epoll set; the kernel ignores the event argument for DEL.
    if (!this.#closed && libc().epollCtl(this.#epollFd, EPOLL_CTL_DEL, fd, null) < 0) {
      this.#report(nativeError(op, lastErrno(), `epoll_ctl(DEL, ${fd}) failed`));
    }
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
        const handler = this.#watches.get(w * 32 + bit)?.handler;
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

/**
 * Takes a reference to this thread's poller, starting it if no session holds one (with the
 * delivery this thread allows, see {@link EventfdPoller.start}).
 */
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
