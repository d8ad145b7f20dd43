/**
 * An MSI route on KVM: an eventfd bound with `KVM_IRQFD` to a GSI whose routing entry holds
 * the message. `trigger()` is one 8-byte eventfd write; the kernel injects the MSI without a
 * round trip through userspace.
 *
 * Masking is done here, not in the kernel: a trigger while masked (or before any message is
 * programmed) only sets `pending`; `unmask()` (or the first `setMsi()` of an unmasked route)
 * delivers a pending interrupt exactly once. The irqfd is bound only after the route has its
 * routing entry, so the kernel never sees the eventfd on a GSI without a route.
 */
import { BadHandleError, type MsiMessage, type MsiRoute } from '@vmed/core';
import { checkBigInt, checkInt } from '../errors.js';
import { EventFd } from '../host/eventfd.js';
import type { KvmVm } from '../ioctls/vm.js';
import type { GsiRoutingTable } from './gsi-routing.js';

export class KvmMsiRoute implements MsiRoute {
  readonly id: number;
  #masked = true;
  #pending = false;
  #message: MsiMessage | undefined;
  #bound = false;
  #disposed = false;
  readonly #vm: KvmVm;
  readonly #table: GsiRoutingTable;
  readonly #eventfd: EventFd;
  readonly #onDispose: (route: KvmMsiRoute) => void;

  private constructor(vm: KvmVm, table: GsiRoutingTable, gsi: number, eventfd: EventFd, onDispose: (route: KvmMsiRoute) => void) {
    this.#vm = vm;
    this.#table = table;
    this.id = gsi;
    this.#eventfd = eventfd;
    this.#onDispose = onDispose;
  }

  /** A masked route without a message: a GSI and an eventfd, nothing in the kernel yet. */
  static create(vm: KvmVm, table: GsiRoutingTable, onDispose: (route: KvmMsiRoute) => void): KvmMsiRoute {
    const gsi = table.allocate('kvm.createMsiRoute');
    let eventfd: EventFd;
    try {
      eventfd = EventFd.create('kvm.createMsiRoute');
    } catch (error) {
      table.free(gsi);
      throw error;
    }
    return new KvmMsiRoute(vm, table, gsi, eventfd, onDispose);
  }

  get masked(): boolean {
    return this.#masked;
  }
  get pending(): boolean {
    return this.#pending;
  }
  get disposed(): boolean {
    return this.#disposed;
  }
  get message(): MsiMessage | undefined {
    return this.#message;
  }

  /** Eventfds this route holds. */
  get fds(): number {
    return this.#disposed ? 0 : 1;
  }

  /**
   * Programs the message: one `KVM_SET_GSI_ROUTING`, and `KVM_IRQFD` the first time. Any
   * address/data the guest wrote is accepted (KVM routes or drops it); only the types' ranges
   * are checked. Delivers a pending interrupt if the route is unmasked.
   */
  setMsi(message: MsiMessage): void {
    const op = 'kvm.msiRoute.setMsi';
    this.#assertOpen(op);
    checkBigInt(message.address, 0n, (1n << 64n) - 1n, op, 'MSI address');
    checkInt(message.data, 0, 0xffff_ffff, op, 'MSI data');
    this.#table.setMsi(this.id, message.address, message.data);
    if (!this.#bound) {
      this.#vm.assignIrqfd({ fd: this.#eventfd.fd, gsi: this.id });
      this.#bound = true;
    }
    this.#message = { address: message.address, data: message.data };
    if (!this.#masked) this.#deliverPending();
  }

  mask(): void {
    this.#assertOpen('kvm.msiRoute.mask');
    this.#masked = true;
  }

  unmask(): void {
    this.#assertOpen('kvm.msiRoute.unmask');
    this.#masked = false;
    this.#deliverPending();
  }

  trigger(): void {
    this.#assertOpen('kvm.msiRoute.trigger');
    if (this.#masked || !this.#bound) {
      this.#pending = true;
      return;
    }
    this.#eventfd.signal('kvm.msiRoute.trigger');
  }

  /** Unbinds the irqfd, drops the routing entry, closes the eventfd and frees the GSI. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      if (this.#bound) this.#vm.deassignIrqfd({ fd: this.#eventfd.fd, gsi: this.id });
      this.#table.free(this.id);
    } finally {
      this.#eventfd.close();
      this.#onDispose(this);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #deliverPending(): void {
    if (!this.#pending || !this.#bound) return;
    this.#pending = false;
    this.#eventfd.signal('kvm.msiRoute.unmask');
  }

  #assertOpen(op: string): void {
    if (this.#disposed) throw new BadHandleError(op);
  }
}
