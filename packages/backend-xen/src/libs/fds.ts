/**
 * Counting the file descriptors a library opens behind its handle. The Xen libraries open
 * device nodes (`/dev/xen/privcmd`, `/dev/xen/hypercall`, `/dev/xen/evtchn`) or a socket
 * (xenstored) inside `*_open`, and how many depends on the library version and the kernel;
 * `resources().fds` must be exact, so each handle records what its own open added.
 */
import { readdirSync } from 'node:fs';
import { lastErrno } from '../abi/xen.js';

/** Open file descriptors of this process. */
export function countOpenFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/**
 * Runs the native `open` and returns its result, the descriptors it added, and the `errno` it
 * left — read before counting, since listing `/proc/self/fd` makes system calls of its own.
 */
export function withFdDelta<T>(open: () => T): { value: T; fds: number; errno: number } {
  const before = countOpenFds();
  const value = open();
  const errno = lastErrno();
  return { value, fds: Math.max(0, countOpenFds() - before), errno };
}
