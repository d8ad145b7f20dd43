/**
 * A vCPU thread (worker mode): runs `KVM_RUN` synchronously on a borrowed vCPU, forwards each
 * MMIO/port exit to the I/O context through the mailbox and blocks (`Atomics.wait`) until it
 * is answered, obeys run/pause/stop commands, and ends by posting its {@link VcpuFinish}.
 *
 * The thread never closes the vCPU: its owner (the I/O context) closes it after this thread
 * has exited.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errnoName, libc } from '../abi/libc.js';
import { uvAsyncSender } from '../poller/uv-abi.js';
import { BorrowedVcpu, RUN_EXIT, RUN_INTERRUPTED, type VcpuRunHandle } from '../ioctls/vcpu-runner.js';
import { readLe } from './bytes.js';
import { EXIT_CONTINUE, EXIT_FINISH, completeExit, decodeExit, finishOf, type VcpuFinish } from './exits.js';
import {
  ACTION_FINISH,
  CTRL_PAUSE,
  CTRL_RUN,
  CTRL_STOP,
  M,
  Mailbox,
  STATE_FINISHED,
  STATE_PAUSED,
  STATE_RUNNING,
} from './mailbox.js';

export interface VcpuWorkerData {
  readonly handle: VcpuRunHandle;
  readonly shared: SharedArrayBuffer;
  /**
   * Address of the I/O context's `uv_async_t` on Node's main loop, which this thread sends to
   * after posting a request (see `poller/uv-loop.ts`); 0n when the I/O context waits with
   * `Atomics.waitAsync` instead. The handle stays open until this thread has exited.
   */
  readonly wakeHandle: bigint;
}

/** Wakes the I/O context after a request is posted. */
type Wake = (words: Int32Array) => void;

/** An I/O context on a worker thread waits on REQ_SEQ with `Atomics.waitAsync`. */
function notifyWake(words: Int32Array): void {
  Atomics.notify(words, M.REQ_SEQ);
}

function setState(words: Int32Array, state: number): void {
  Atomics.store(words, M.STATE, state);
  Atomics.notify(words, M.STATE);
}

/** Posts the request in the mailbox and blocks until the I/O context has answered it. */
function request(words: Int32Array, wake: Wake): void {
  const seq = (Atomics.load(words, M.REQ_SEQ) + 1) | 0;
  Atomics.store(words, M.REQ_SEQ, seq);
  wake(words);
  for (;;) {
    const answered = Atomics.load(words, M.RESP_SEQ);
    if (answered === seq) return;
    Atomics.wait(words, M.RESP_SEQ, answered);
  }
}

function runLoop(vcpu: BorrowedVcpu, mailbox: Mailbox, wake: Wake): VcpuFinish {
  const words = mailbox.words;
  // An access answered but not yet consumed by KVM_RUN (which completes it on entry).
  let pending = false;
  let doneFinish: VcpuFinish | undefined;
  for (;;) {
    const ctrl = Atomics.load(words, M.CTRL);
    if (!pending) {
      if (doneFinish !== undefined) return doneFinish;
      if (ctrl === CTRL_STOP) return { vcpu: vcpu.index, reason: 'stopped' };
      if (ctrl === CTRL_PAUSE) {
        setState(words, STATE_PAUSED);
        while (Atomics.load(words, M.CTRL) === CTRL_PAUSE) Atomics.wait(words, M.CTRL, CTRL_PAUSE);
        setState(words, STATE_RUNNING);
        continue;
      }
    }
    // IN_RUN before re-reading CTRL: a command stored before the I/O context read IN_RUN is
    // seen here, and one stored after it comes with a signal (see mailbox.ts).
    Atomics.store(words, M.IN_RUN, 1);
    if (pending && (doneFinish !== undefined || Atomics.load(words, M.CTRL) !== CTRL_RUN)) {
      // Let KVM_RUN complete the answered access without entering the guest, so registers
      // and RIP are final before pausing or finishing.
      vcpu.setImmediateExit(true);
    } else if (Atomics.load(words, M.CTRL) !== CTRL_RUN) {
      Atomics.store(words, M.IN_RUN, 0);
      continue;
    }
    const outcome = vcpu.run();
    Atomics.store(words, M.IN_RUN, 0);
    pending = false;
    if (outcome === RUN_INTERRUPTED) {
      vcpu.setImmediateExit(false);
      continue;
    }
    if (outcome !== RUN_EXIT) return { vcpu: vcpu.index, reason: 'error', detail: `KVM_RUN failed (${errnoName(outcome)})` };
    const decoded = decodeExit(vcpu, mailbox);
    if (decoded === EXIT_CONTINUE) continue;
    if (decoded === EXIT_FINISH) return finishOf(vcpu);
    request(words, wake);
    completeExit(vcpu, mailbox);
    pending = true;
    if (mailbox.action === ACTION_FINISH) {
      doneFinish = { vcpu: vcpu.index, reason: 'done', value: readLe(mailbox.data, 0, mailbox.size) };
    }
  }
}

function main(data: VcpuWorkerData): void {
  const mailbox = new Mailbox(data.shared);
  const words = mailbox.words;
  const vcpu = BorrowedVcpu.borrow(data.handle);
  // No buffer: this thread's id, which the I/O context signals to kick KVM_RUN.
  Atomics.store(words, M.TID, libc().gettid());
  setState(words, STATE_RUNNING);
  let finish: VcpuFinish;
  try {
    // On the main thread the I/O context listens on its libuv async handle, which outlives us.
    finish = runLoop(vcpu, mailbox, data.wakeHandle === 0n ? notifyWake : uvAsyncSender(data.wakeHandle));
  } finally {
    setState(words, STATE_FINISHED);
    // Wakes the I/O context's request waiter so it sees the thread is gone.
    Atomics.notify(words, M.REQ_SEQ);
  }
  parentPort?.postMessage(finish);
}

main(workerData as VcpuWorkerData);
