/**
 * An eventfd owned by one object (an MSI route, a line, a doorbell, the poller's control fd).
 * Non-blocking and close-on-exec: a read of an empty counter returns 0 rather than blocking
 * the I/O context.
 */
import { BadHandleError } from '@vmed/core';
import { EAGAIN, EFD_CLOEXEC, EFD_NONBLOCK, lastErrno, libc } from '../abi/libc.js';
import { nativeError } from '../errors.js';

// One 8-byte scratch buffer per thread: eventfd reads and writes are synchronous, so the
// buffer only has to live for the call.
const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);

export class EventFd implements Disposable {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`; running out of fds is `NoSpace`. */
  static create(operation: string): EventFd {
    // The kernel allocates a counter object and returns a new fd; no buffer crosses.
    const fd = libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw nativeError(operation, lastErrno(), 'eventfd() failed');
    return new EventFd(fd);
  }

  get fd(): number {
    if (this.#fd < 0) throw new BadHandleError('eventfd.fd');
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Adds `count` to the counter (wakes an irqfd or a poller). */
  signal(operation: string, count = 1n): void {
    scratchView.setBigUint64(0, count, true);
    // The kernel reads 8 bytes from `scratch` during the call.
    const n = libc().write(this.fd, scratch, 8);
    if (n === 8) return;
    const errno = lastErrno();
    // A counter at its maximum is already "signalled": the reader will see a non-zero value.
    if (n < 0 && errno === EAGAIN) return;
    throw nativeError(operation, errno, `eventfd write on fd ${this.#fd} failed`);
  }

  /** Reads and resets the counter; 0 when it was already 0. */
  drain(operation: string): bigint {
    // The kernel writes 8 bytes into `scratch` during the call.
    const n = libc().read(this.fd, scratch, 8);
    if (n === 8) return scratchView.getBigUint64(0, true);
    const errno = lastErrno();
    if (n < 0 && errno === EAGAIN) return 0n;
    throw nativeError(operation, errno, `eventfd read on fd ${this.#fd} failed`);
  }

  close(): void {
    if (this.#fd < 0) return;
    // Drops our reference to the counter; whoever bound it into KVM (irqfd, ioeventfd) has
    // unbound it first, so the kernel holds none either.
    libc().close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
