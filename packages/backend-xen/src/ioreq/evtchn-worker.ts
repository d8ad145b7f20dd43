/**
 * Worker entry: blocks in `poll(2)` on the event-channel descriptor so the I/O thread does not
 * have to. When ports fire it reads them (`xenevtchn_pending` is a 4-byte `read`, several at
 * once here), appends them to the ring in the shared control block and wakes the I/O thread
 * with `Atomics.notify`; the I/O thread serves, unmasks and notifies. A second descriptor (an
 * eventfd the I/O thread writes) ends the worker, since closing a descriptor does not wake a
 * thread blocked on it.
 *
 * Loaded from `src/` under tsx (vitest, `--conditions=source`) and from `dist/ioreq/` after a
 * build; it imports only koffi, the ABI module and the control-block layout, so it starts fast
 * (a missing libc, impossible in practice, would crash it and the I/O thread would report it).
 */
import { workerData } from 'node:worker_threads';
import koffi from 'koffi';
import { LIBC_PROTOTYPES, POLLERR, POLLHUP, POLLIN, POLLNVAL, bindPrototypes, lastErrno, type LibcLib } from '../abi/xen.js';
import { CONTROL, RING_CAPACITY, WORKER_STATE, type EvtchnWorkerData } from './waiter-protocol.js';

const EINTR = 4;
const EAGAIN = 11;
const EIO = 5;

function run(data: EvtchnWorkerData): void {
  const control = new Int32Array(data.control);
  const libc = bindPrototypes<LibcLib>(koffi.load('libc.so.6'), LIBC_PROTOTYPES);
  // struct pollfd[2]: { int fd; short events; short revents; } — revents at byte 6 and 14.
  const fds = new Int32Array(4);
  const fds16 = new Int16Array(fds.buffer);
  fds[0] = data.evtchnFd;
  fds16[2] = POLLIN;
  fds[2] = data.wakeFd;
  fds16[6] = POLLIN;
  const ports = new Uint32Array(64);

  const finish = (state: number, errno: number) => {
    Atomics.store(control, CONTROL.errno, errno);
    Atomics.store(control, CONTROL.state, state);
    Atomics.add(control, CONTROL.seq, 1);
    Atomics.notify(control, CONTROL.seq);
  };

  Atomics.store(control, CONTROL.started, 1);
  for (;;) {
    fds16[3] = 0;
    fds16[7] = 0;
    // SAFETY: `fds` is two struct pollfd the kernel reads and writes (revents) during the call.
    const n = libc.poll(fds, 2, -1);
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      finish(WORKER_STATE.failed, errno);
      return;
    }
    if ((fds16[7] as number) !== 0 || Atomics.load(control, CONTROL.state) !== WORKER_STATE.running) {
      finish(WORKER_STATE.exited, 0);
      return;
    }
    const revents = fds16[3] as number;
    if ((revents & (POLLERR | POLLHUP | POLLNVAL)) !== 0) {
      finish(WORKER_STATE.failed, EIO);
      return;
    }
    if ((revents & POLLIN) === 0) continue;
    // SAFETY: the evtchn driver copies whole 4-byte port numbers into `ports` (at most its size).
    const got = libc.read(data.evtchnFd, ports, ports.byteLength);
    if (got < 0) {
      const errno = lastErrno();
      if (errno === EINTR || errno === EAGAIN) continue;
      finish(WORKER_STATE.failed, errno);
      return;
    }
    let head = Atomics.load(control, CONTROL.head);
    for (let i = 0; i < got / 4; i++) {
      // Each port stays masked until the I/O thread unmasks it, so the ring cannot hold more
      // entries than bound ports; the wait is a guard for a runaway, not the normal path.
      for (;;) {
        const tail = Atomics.load(control, CONTROL.tail);
        if (head - tail < RING_CAPACITY) break;
        Atomics.wait(control, CONTROL.tail, tail, 100);
      }
      control[CONTROL.ring + (head % RING_CAPACITY)] = ports[i] as number;
      head++;
    }
    Atomics.store(control, CONTROL.head, head);
    Atomics.add(control, CONTROL.seq, 1);
    Atomics.notify(control, CONTROL.seq);
  }
}

run(workerData as EvtchnWorkerData);
