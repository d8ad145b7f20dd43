/**
 * A wired line on KVM's in-kernel PIC/IOAPIC, driven by an irqfd on the line's GSI.
 *
 * Edge: each `assert()` is one eventfd write; the kernel pulses the line (1 then 0).
 * Level: the irqfd is bound with `KVM_IRQFD_FLAG_RESAMPLE` and a second eventfd. A write
 * raises the line and the kernel holds it until the guest's EOI; then it lowers it and signals
 * the resample eventfd. The poller hears that, and on the I/O context this object counts the
 * EOI and, while the device still asserts the line, raises it again: the guest sees a level
 * line. As with VFIO, `deassert()` takes effect at the next EOI (the kernel keeps the line up
 * until then; the guest may take one interrupt it finds nothing for).
 */
import { BadHandleError, type LineIrq, type LineTarget, type LineTrigger } from '@vmed/core';
import { EventFd } from '../host/eventfd.js';
import type { KvmVm } from '../ioctls/vm.js';
import type { EventfdPoller } from '../poller/eventfd-poller.js';

export class KvmLineIrq implements LineIrq {
  readonly target: LineTarget;
  readonly trigger: LineTrigger;
  #asserted = false;
  #disposed = false;
  #resamples = 0;
  readonly #vm: KvmVm;
  readonly #irqfd: EventFd;
  readonly #resample: EventFd | undefined;
  readonly #poller: EventfdPoller | undefined;
  readonly #token: number | undefined;
  readonly #onDispose: (line: KvmLineIrq) => void;

  private constructor(
    vm: KvmVm,
    target: LineTarget,
    trigger: LineTrigger,
    irqfd: EventFd,
    resample: EventFd | undefined,
    poller: EventfdPoller | undefined,
    onDispose: (line: KvmLineIrq) => void,
  ) {
    this.#vm = vm;
    this.target = target;
    this.trigger = trigger;
    this.#irqfd = irqfd;
    this.#resample = resample;
    this.#poller = poller;
    this.#onDispose = onDispose;
    this.#token = resample === undefined || poller === undefined ? undefined : poller.watch(resample.fd, () => this.#onResample());
  }

  /** Binds the irqfd (and for a level line the resample fd); on failure nothing is left. */
  static create(vm: KvmVm, target: LineTarget, trigger: LineTrigger, poller: EventfdPoller | undefined, onDispose: (line: KvmLineIrq) => void): KvmLineIrq {
    const op = 'kvm.createLineIrq';
    const irqfd = EventFd.create(op);
    let resample: EventFd | undefined;
    let bound = false;
    try {
      if (trigger === 'level') resample = EventFd.create(op);
      vm.assignIrqfd({ fd: irqfd.fd, gsi: target.line, ...(resample === undefined ? {} : { resampleFd: resample.fd }) });
      bound = true;
      return new KvmLineIrq(vm, target, trigger, irqfd, resample, trigger === 'level' ? poller : undefined, onDispose);
    } catch (error) {
      if (bound) vm.deassignIrqfd({ fd: irqfd.fd, gsi: target.line });
      resample?.close();
      irqfd.close();
      throw error;
    }
  }

  get asserted(): boolean {
    return this.#asserted;
  }
  get disposed(): boolean {
    return this.#disposed;
  }
  get resamples(): number {
    return this.#resamples;
  }

  /** libuv poll handles this line holds on the main loop (a level line's resample fd: 0 or 1). */
  get pollHandles(): number {
    return !this.#disposed && this.#token !== undefined && this.#poller?.hasLoopHandle(this.#token) === true ? 1 : 0;
  }

  /** Eventfds this line holds. */
  get fds(): number {
    return this.#disposed ? 0 : this.#resample === undefined ? 1 : 2;
  }

  assert(): void {
    if (this.#disposed) throw new BadHandleError('kvm.lineIrq.assert');
    if (this.trigger === 'edge') {
      this.#irqfd.signal('kvm.lineIrq.assert');
      return;
    }
    if (this.#asserted) return;
    this.#asserted = true;
    this.#irqfd.signal('kvm.lineIrq.assert');
  }

  deassert(): void {
    if (this.#disposed) throw new BadHandleError('kvm.lineIrq.deassert');
    this.#asserted = false;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      if (this.#token !== undefined && this.#resample !== undefined) this.#poller?.unwatch(this.#token, this.#resample.fd);
      this.#vm.deassignIrqfd({ fd: this.#irqfd.fd, gsi: this.target.line });
    } finally {
      this.#resample?.close();
      this.#irqfd.close();
      this.#onDispose(this);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #onResample(): void {
    if (this.#disposed || this.#resample === undefined) return;
    const eois = this.#resample.drain('kvm.lineIrq.resample');
    if (eois === 0n) return;
    this.#resamples += Number(eois);
    if (this.#asserted) this.#irqfd.signal('kvm.lineIrq.resample');
  }
}
