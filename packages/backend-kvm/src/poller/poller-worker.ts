/**
 * The poller thread (see `protocol.ts`). It only waits, marks and kicks: it never reads a
 * watched eventfd (the I/O context does, so a counter is consumed by the thread that owns the
 * fd and closes it) and never closes anything.
 */
import { workerData } from 'node:worker_threads';
import {
  EINTR,
  EPOLL_EVENT_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  hostView,
  lastErrno,
  libc,
} from '../abi/libc.js';
import { KVM_RUN_OFFSETS } from '../abi/kvm.js';
import {
  CONTROL_TOKEN,
  DELIVERY_THREAD,
  P,
  POLLER_EXITED,
  POLLER_FAILED,
  POLLER_RUNNING,
  P_READY_WORD,
  P_RUN_ADDRESS,
  type PollerWorkerData,
} from './protocol.js';

const MAX_EVENTS = 64;

function main(data: PollerWorkerData): void {
  const c = libc();
  const words = new Int32Array(data.shared);
  const big = new BigInt64Array(data.shared);
  const events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  const eventsView = new DataView(events.buffer);
  const drain = new Uint8Array(8);
  let runBytes: Uint8Array | undefined;
  let runAddress = 0n;
  let lastEpoch = -1;
  let sliceSeenAt = 0;

  const kickMain = (): void => {
    const address = Atomics.load(big, P_RUN_ADDRESS);
    if (address === 0n) return;
    if (address !== runAddress) {
      runAddress = address;
      runBytes = new Uint8Array(hostView(address, KVM_RUN_OFFSETS.immediateExit + 1));
    }
    if (runBytes !== undefined) Atomics.store(runBytes, KVM_RUN_OFFSETS.immediateExit, 1);
    // No buffer; queues the kick signal for the I/O thread (see threads/kick-signal.ts).
    c.tgkill(Atomics.load(words, P.PID), Atomics.load(words, P.MAIN_TID), Atomics.load(words, P.SIGNAL));
    Atomics.add(words, P.KICKS, 1);
  };

  Atomics.store(words, P.STATE, POLLER_RUNNING);
  Atomics.notify(words, P.STATE);
  while (Atomics.load(words, P.STOP) === 0) {
    const inline = Atomics.load(words, P.INLINE) === 1;
    const quantum = Math.max(1, Atomics.load(words, P.QUANTUM_MS));
    // The kernel writes up to MAX_EVENTS packed epoll_events into `events` during the call.
    const n = c.epollWait(data.epollFd, events, MAX_EVENTS, inline ? quantum : -1);
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      Atomics.store(words, P.ERRNO, errno);
      Atomics.store(words, P.STATE, POLLER_FAILED);
      Atomics.notify(words, P.STATE);
      return;
    }
    let ready = false;
    for (let i = 0; i < n; i++) {
      const token = Number(eventsView.getBigUint64(i * EPOLL_EVENT_SIZE + EPOLL_EVENT_DATA_OFFSET, true));
      if (token === CONTROL_TOKEN) {
        // The kernel writes the 8-byte counter into `drain` (this thread's buffer): consumes
        // the control signal (edge-triggered, it must be drained to fire again).
        c.read(data.controlFd, drain, 8);
        continue;
      }
      if (token <= 0 || token >= data.capacity) continue;
      // With loop delivery the main loop finds the ready fds itself; only SEQ matters.
      if (Atomics.load(words, P.DELIVERY) === DELIVERY_THREAD) Atomics.or(words, P_READY_WORD + (token >>> 5), 1 << (token & 31));
      ready = true;
    }
    if (ready) {
      Atomics.add(words, P.SEQ, 1);
      Atomics.notify(words, P.SEQ);
    }
    if (!inline || Atomics.load(words, P.IN_SLICE) !== 1) {
      lastEpoch = -1;
      continue;
    }
    const epoch = Atomics.load(words, P.SLICE_EPOCH);
    const now = performance.now();
    if (ready) {
      kickMain();
    } else if (epoch !== lastEpoch) {
      lastEpoch = epoch;
      sliceSeenAt = now;
    } else if (now - sliceSeenAt >= quantum) {
      kickMain();
      sliceSeenAt = now;
    }
  }
  Atomics.store(words, P.STATE, POLLER_EXITED);
  Atomics.notify(words, P.STATE);
}

main(workerData as PollerWorkerData);
