/**
 * The signal that kicks a vCPU thread out of `KVM_RUN`.
 *
 * A thread blocked in `KVM_RUN` leaves it with EINTR when a signal arrives that it does not
 * block and whose disposition is not "ignore" (an ignored signal is discarded before it can
 * interrupt anything, and the default action of a real-time signal kills the process). So
 * the signal needs a handler, and that handler cannot be JavaScript: a koffi callback runs V8
 * code, and a signal can land at any instruction of any thread, including inside V8 itself.
 *
 * The handler chosen here is glibc's `getpid`, looked up with `dlsym`: a bare system-call
 * wrapper, async-signal-safe per POSIX, that ignores the `int signo` argument the kernel
 * passes and touches neither memory nor errno. Its only job is to exist. Other options
 * weighed: compiling a no-op C handler (needs a compiler at run time), and blocking the signal
 * while using `KVM_SET_SIGNAL_MASK` so it is only deliverable inside `KVM_RUN` (it still needs
 * a non-default disposition, and a pending signal must then be drained with `sigtimedwait`).
 *
 * `SA_RESTART` makes a stray kick (one that arrives just after the thread left `KVM_RUN`)
 * harmless to whatever system call the thread is in next; `kvm_run.immediate_exit`, set before
 * the signal is sent, closes the race where the signal arrives before the thread enters
 * `KVM_RUN`. The handler is process-wide and stays installed after the backend closes, so a
 * late kick can never kill the process.
 */
import { UnsupportedError } from '@vmed/core';
import {
  SA_RESTART,
  SIGACTION_FLAGS_OFFSET,
  SIGACTION_HANDLER_OFFSET,
  SIGACTION_SIZE,
  SIG_DFL,
  lastErrno,
  libc,
} from '../abi/libc.js';
import { nativeError } from '../errors.js';

/** Offset from SIGRTMIN of the first signal tried (glibc keeps SIGRTMIN-2..-1 for itself). */
const FIRST_OFFSET = 6;
const CANDIDATES = 10;

let installed: number | undefined;

/**
 * The kick signal of this process, installing its handler on first use: the first real-time
 * signal from SIGRTMIN+6 that has the default disposition or already has this handler.
 */
export function kickSignal(): number {
  if (installed !== undefined) return installed;
  const c = libc();
  const handler = c.dlsym(null, 'getpid');
  if (handler === 0n) throw new UnsupportedError('kvm.kickSignal', 'getpid not found with dlsym');
  const base = c.sigrtmin() + FIRST_OFFSET;
  const old = new Uint8Array(SIGACTION_SIZE);
  const oldView = new DataView(old.buffer);
  for (let sig = base; sig < base + CANDIDATES; sig++) {
    // The kernel writes the current disposition of `sig` into `old` during the call.
    if (c.sigaction(sig, null, old) < 0) throw nativeError('kvm.kickSignal', lastErrno(), `sigaction(${sig}) query failed`);
    const current = oldView.getBigUint64(SIGACTION_HANDLER_OFFSET, true);
    if (current === handler) {
      installed = sig;
      return sig;
    }
    if (current !== SIG_DFL) continue; // someone else's signal
    const act = new Uint8Array(SIGACTION_SIZE);
    const view = new DataView(act.buffer);
    view.setBigUint64(SIGACTION_HANDLER_OFFSET, handler, true);
    view.setInt32(SIGACTION_FLAGS_OFFSET, SA_RESTART, true);
    // The kernel (through glibc, which adds its restorer) reads `act` during the call; an
    // empty sa_mask blocks nothing extra while the handler runs.
    if (c.sigaction(sig, act, null) < 0) throw nativeError('kvm.kickSignal', lastErrno(), `sigaction(${sig}) install failed`);
    installed = sig;
    return sig;
  }
  throw new UnsupportedError('kvm.kickSignal', `no free real-time signal in SIGRTMIN+${FIRST_OFFSET}..+${FIRST_OFFSET + CANDIDATES - 1}`);
}

/**
 * Sends the kick signal to thread `tid` of this process. Returns false when the thread is
 * gone (ESRCH): it has left `KVM_RUN` for good.
 */
export function kickThread(pid: number, tid: number, signal: number): boolean {
  // No buffer; the kernel queues `signal` for `tid`.
  return libc().tgkill(pid, tid, signal) === 0;
}
