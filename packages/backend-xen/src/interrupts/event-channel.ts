/**
 * Interdomain event channels for Xen-aware guest drivers: an unbound port allocated in dom0
 * for the guest (`xenevtchn_bind_unbound_port`), published in xenstore so the guest's driver
 * can bind it, `trigger()` = `xenevtchn_notify`. Notifications the guest sends back arrive on
 * the session's event-channel descriptor; the backend unmasks and ignores them.
 */
import { BadHandleError, type EventChannelRoute } from '@vmed/core';

/** What a route needs from the session. */
export interface EventChannelHost {
  notify(port: number): void;
  /** Unbinds the port and removes its xenstore node. */
  release(port: number, node: string | undefined): void;
}

/** One route; see the module doc. */
export class XenEventChannelRoute implements EventChannelRoute {
  readonly port: number;
  /** Where the port number is published, if xenstore was available. */
  readonly node: string | undefined;
  #disposed = false;
  readonly #host: EventChannelHost;
  readonly #onDispose: (route: XenEventChannelRoute) => void;

  constructor(port: number, node: string | undefined, host: EventChannelHost, onDispose: (route: XenEventChannelRoute) => void) {
    this.port = port;
    this.node = node;
    this.#host = host;
    this.#onDispose = onDispose;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  trigger(): void {
    if (this.#disposed) throw new BadHandleError('evtchn.trigger', `event channel ${this.port} is disposed`);
    this.#host.notify(this.port);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      this.#host.release(this.port, this.node);
    } finally {
      this.#onDispose(this);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
