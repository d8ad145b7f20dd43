/**
 * The control block shared between the I/O thread and the event-channel worker: one
 * `SharedArrayBuffer` of int32 cells, a sequence number to wait on, and a ring of fired ports.
 */

/** Indices of the cells of the control block. */
export const CONTROL = {
  /** Bumped by the worker after it appends ports or changes state; the I/O thread waits on it. */
  seq: 0,
  /** Ports appended so far (monotonic; the ring index is `head % RING_CAPACITY`). */
  head: 1,
  /** Ports consumed so far by the I/O thread. */
  tail: 2,
  /** {@link WORKER_STATE}. */
  state: 3,
  /** errno of the call that made the worker fail. */
  errno: 4,
  /** 1 once the worker has loaded and is about to poll. */
  started: 5,
  /** First cell of the ring. */
  ring: 8,
} as const;

export const WORKER_STATE = { running: 0, stopping: 1, exited: 2, failed: 3 } as const;

/** Ring slots; far more than the ports one session binds (≤ 128 vCPUs + buffered + routes). */
export const RING_CAPACITY = 1024;

export const CONTROL_BYTES = (CONTROL.ring + RING_CAPACITY) * 4;

/** What the worker is started with. */
export interface EvtchnWorkerData {
  readonly evtchnFd: number;
  readonly wakeFd: number;
  readonly control: SharedArrayBuffer;
}
