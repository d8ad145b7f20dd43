/**
 * Interdomain event channels for Xen-aware guest drivers: a port allocated in dom0 and left
 * unbound for the guest (`xenevtchn_bind_unbound_port`), which the guest's driver binds with
 * `EVTCHNOP_bind_interdomain`; `trigger()` = `xenevtchn_notify`. Notifications the guest sends
 * back arrive on the session's event-channel descriptor; the backend unmasks and ignores them.
 *
 * Where the guest driver finds the port — the choice, and why:
 * - **The device's own registers are the primary channel.** A vmed device is a PCI function,
 *   and its guest driver finds it by PCI enumeration, not through xenstore. So the device model
 *   hands {@link XenEventChannelRoute.port} to its driver in its config space (a
 *   vendor-specific capability) or a BAR register, next to the rest of the device's setup;
 *   the driver needs no xenstore client (the project's guest agent is handed the port the
 *   same way, through its mailbox, and binds it: `test/event-channel/`).
 * - **xenstore as well**, for drivers that look there: `<xenstorePath>/evtchn/<port>` holds
 *   the port (default `xenstorePath`: `/local/domain/<domid>/data/vmed`). The node belongs to
 *   dom0 and the guest may only read it ({@link guestReadOnly}), so the guest cannot rewrite
 *   what dom0 published. Its parent directory is under the guest's own `data/` and the guest
 *   may delete the node; removing it on dispose treats "already gone" as done. The node is
 *   named by the port, so it tells a driver which ports exist, not which device owns one:
 *   a device with several channels says which is which in its registers.
 */
import { BadHandleError, type EventChannelRoute } from '@vmed/core';
import { XS_PERM_NONE, XS_PERM_READ } from '../abi/xen.js';
import type { XenstorePermission } from '../libs/xenstore.js';

/** The libxenevtchn calls a route needs (the session's handle). */
export interface EventChannelPorts {
  bindUnboundPort(domid: number): number;
  notify(port: number): void;
  unbind(port: number): void;
}

/** The xenstore calls publishing needs; `remove` of a missing node is not an error. */
export interface EventChannelStore {
  write(path: string, value: string): void;
  setPermissions(path: string, perms: readonly XenstorePermission[]): void;
  remove(path: string): void;
}

/** Where the port of a channel is published under `base` (the `xenstorePath` option). */
export function eventChannelNode(base: string, port: number): string {
  return `${base}/evtchn/${port}`;
}

/** Owner dom0 with no access for others, then read access for the guest. */
export function guestReadOnly(domid: number): readonly XenstorePermission[] {
  return [
    { domid: 0, perms: XS_PERM_NONE },
    { domid, perms: XS_PERM_READ },
  ];
}

/**
 * Allocates a port for `domid`, publishes it under `base` and returns its route. If
 * publishing fails the port is unbound again and the error is thrown.
 * @param onDispose told once when the route is disposed (after its port and node are gone,
 *   or after that failed).
 */
export function openEventChannel(
  domid: number,
  base: string,
  ports: EventChannelPorts,
  store: EventChannelStore,
  onDispose: (route: XenEventChannelRoute) => void,
): XenEventChannelRoute {
  const port = ports.bindUnboundPort(domid);
  const node = eventChannelNode(base, port);
  try {
    store.write(node, String(port));
    store.setPermissions(node, guestReadOnly(domid));
  } catch (error) {
    // The port is what the guest could bind: it goes first; a half-made node after it.
    try {
      ports.unbind(port);
    } finally {
      try {
        store.remove(node);
      } catch {
        // The write failed or the node is half made; nothing else to do with it.
      }
    }
    throw error;
  }
  return new XenEventChannelRoute(
    port,
    node,
    {
      notify: (p) => ports.notify(p),
      release: (p, n) => {
        try {
          ports.unbind(p);
        } finally {
          if (n !== undefined) store.remove(n);
        }
      },
    },
    onDispose,
  );
}

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

  /** `xenevtchn_notify` on the port; before the guest binds it, Xen drops the event. */
  trigger(): void {
    if (this.#disposed) throw new BadHandleError('evtchn.trigger', `event channel ${this.port} is disposed`);
    this.#host.notify(this.port);
  }

  /**
   * Unbinds the port (the guest's end becomes unbound: it sees the channel disconnected) and
   * removes its xenstore node. Idempotent; a failure is thrown once, and the route is disposed
   * all the same.
   */
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
