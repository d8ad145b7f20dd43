/**
 * Layout of the SharedArrayBuffer between the I/O context and the poller thread.
 *
 * The poller blocks in `epoll_wait` on the eventfds the I/O context must hear about (doorbell
 * ioeventfds, level-line resample fds). When some become readable it bumps SEQ and
 * `Atomics.notify`s it. With DELIVERY = DELIVERY_THREAD (an I/O context on a worker thread)
 * it also sets their token bits in READY first; the I/O context waits on SEQ with
 * `Atomics.waitAsync`, clears the bits it finds and reads those eventfds itself. With
 * DELIVERY_LOOP (Node's main thread) the main loop watches the fds itself with libuv poll
 * handles (see `uv-loop.ts`), and the epoll set holds them only while an inline vCPU runs:
 * SEQ then only tells the inline slice that a doorbell is waiting.
 *
 * The poller is also the kicker of an inline vCPU (one that runs `KVM_RUN` on the I/O
 * context's own thread): while INLINE is set it wakes every QUANTUM_MS, and if the I/O thread
 * is still in the same run slice (IN_SLICE with an unchanged SLICE_EPOCH) — or a doorbell is
 * waiting — it sets `immediate_exit` in that vCPU's kvm_run (RUN_ADDRESS) and signals
 * MAIN_TID, so the I/O thread returns to the Node event loop.
 */

/** Int32 word indices. */
export const P = {
  SEQ: 0,
  INLINE: 1,
  IN_SLICE: 2,
  SLICE_EPOCH: 3,
  MAIN_TID: 4,
  QUANTUM_MS: 5,
  KICKS: 6,
  STATE: 7,
  ERRNO: 8,
  STOP: 9,
  PID: 10,
  SIGNAL: 11,
  DELIVERY: 12,
} as const;

/** DELIVERY values. */
export const DELIVERY_THREAD = 0;
export const DELIVERY_LOOP = 1;

/** BigInt64 index of the inline vCPU's kvm_run address. */
export const P_RUN_ADDRESS = 8;

/** First Int32 word of the READY bitmap. */
export const P_READY_WORD = 32;

/** Poller thread states (STATE). */
export const POLLER_STARTING = 0;
export const POLLER_RUNNING = 1;
export const POLLER_EXITED = 2;
export const POLLER_FAILED = 3;

/** Token of the control eventfd (wakes the poller to re-read INLINE or STOP). */
export const CONTROL_TOKEN = 0;

/** Tokens (eventfds) one poller can watch; KVM allows ~1000 ioeventfds per bus anyway. */
export const POLLER_CAPACITY = 8192;

export function pollerBufferBytes(capacity: number): number {
  return (P_READY_WORD + capacity / 32) * 4;
}

/** What the poller worker is started with. */
export interface PollerWorkerData {
  readonly shared: SharedArrayBuffer;
  readonly epollFd: number;
  readonly controlFd: number;
  readonly capacity: number;
}
