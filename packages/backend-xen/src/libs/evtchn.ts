/**
 * One libxenevtchn handle: the event channels of a session (one per vCPU for synchronous
 * ioreqs, one for the buffered ring, and any the device hands a Xen-aware guest). All of them
 * are delivered on the handle's one descriptor, which the waiter polls.
 */
import { BadHandleError } from '@vmed/core';
import type { EvtchnLib, Pointer } from '../abi/xen.js';
import { loadEvtchnLib } from './load.js';
import { errorFromErrno, lastError } from './errno.js';
import { checkUint } from './devicemodel.js';
import { withFdDelta } from './fds.js';

/** A libxenevtchn handle (`xenevtchn_open`). */
export class EvtchnHandle {
  readonly #lib: EvtchnLib;
  #handle: Pointer | null;
  readonly #bound = new Set<number>();
  /** Descriptors `xenevtchn_open` opened (`/dev/xen/evtchn`). */
  readonly fds: number;
  /** The descriptor that becomes readable when a bound port fires (`xenevtchn_fd`). */
  readonly fd: number;

  private constructor(lib: EvtchnLib, handle: Pointer, fds: number) {
    this.#lib = lib;
    this.#handle = handle;
    this.fds = fds;
    // SAFETY: reads a field of the handle; the descriptor lives as long as the handle.
    this.fd = lib.fd(handle);
  }

  /** Opens a handle; `Io`/`NotFound` when `/dev/xen/evtchn` is absent. */
  static open(): EvtchnHandle {
    const lib = loadEvtchnLib();
    // SAFETY: no logger; flags 0 keeps O_CLOEXEC on the descriptor.
    const { value: handle, fds, errno } = withFdDelta(() => lib.open(null, 0));
    if (handle === null) throw errorFromErrno('xen.evtchn.open', 'cannot open libxenevtchn (is the xen-evtchn module loaded?)', errno);
    return new EvtchnHandle(lib, handle, fds);
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  /** Local ports bound through this handle. */
  get boundPorts(): ReadonlySet<number> {
    return this.#bound;
  }

  #h(operation: string): Pointer {
    if (this.#handle === null) throw new BadHandleError(operation, 'event-channel handle is closed');
    return this.#handle;
  }

  /** `xenevtchn_bind_interdomain`: connects to `remotePort` of `domid`; returns the local port. */
  bindInterdomain(domid: number, remotePort: number): number {
    const op = 'xen.evtchn.bindInterdomain';
    checkUint(op, 'remote port', remotePort, 0x7fffffff);
    const port = this.#lib.bindInterdomain(this.#h(op), domid, remotePort);
    if (port < 0) throw lastError(op, `cannot bind to port ${remotePort} of domain ${domid}`);
    this.#bound.add(port);
    return port;
  }

  /** `xenevtchn_bind_unbound_port`: a local port `domid` may connect to; returns it. */
  bindUnboundPort(domid: number): number {
    const op = 'xen.evtchn.bindUnboundPort';
    const port = this.#lib.bindUnboundPort(this.#h(op), domid);
    if (port < 0) throw lastError(op, `cannot allocate a port for domain ${domid}`);
    this.#bound.add(port);
    return port;
  }

  /** `xenevtchn_unbind`. Unknown ports are ignored (already unbound). */
  unbind(port: number): void {
    if (!this.#bound.delete(port)) return;
    const op = 'xen.evtchn.unbind';
    if (this.#lib.unbind(this.#h(op), port) !== 0) throw lastError(op, `cannot unbind port ${port}`);
  }

  /** `xenevtchn_notify`: raises the event on the remote end of `port`. */
  notify(port: number): void {
    const op = 'xen.evtchn.notify';
    if (this.#lib.notify(this.#h(op), port) !== 0) throw lastError(op, `cannot notify port ${port}`);
  }

  /**
   * `xenevtchn_unmask`: the driver masks a port when it delivers it on the descriptor; it
   * fires again only after this (a 4-byte `write` on the descriptor).
   */
  unmask(port: number): void {
    const op = 'xen.evtchn.unmask';
    if (this.#lib.unmask(this.#h(op), port) !== 0) throw lastError(op, `cannot unmask port ${port}`);
  }

  /** Unbinds every port still bound (teardown), ignoring failures: nothing else can be done. */
  unbindAll(): void {
    if (this.#handle === null) return;
    for (const port of [...this.#bound]) {
      this.#bound.delete(port);
      this.#lib.unbind(this.#handle, port);
    }
  }

  /** `xenevtchn_close`; the driver unbinds what is left. Idempotent. */
  close(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.#bound.clear();
    this.#lib.close(h);
  }
}
