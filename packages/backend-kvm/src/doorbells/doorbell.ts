/**
 * Doorbells on KVM: `KVM_IOEVENTFD` turns a guest write that matches (space, address, length,
 * optional data) into an eventfd signal inside the kernel; the vCPU does not exit to
 * userspace. The I/O context (the thread that attached the sink) hears the eventfd through
 * the poller (a libuv poll handle on Node's main loop, or the poller thread for a worker, see
 * `poller/eventfd-poller.ts`), reads the counter and calls the handler with the number of
 * writes coalesced since the last call.
 */
import {
  ExistsError,
  InvalidError,
  hex,
  type Doorbell,
  type DoorbellHandler,
  type IoEventSpec,
} from '@vmed/core';
import { checkBigInt } from '../errors.js';
import { EventFd } from '../host/eventfd.js';
import type { IoeventfdSpec, KvmVm } from '../ioctls/vm.js';
import type { EventfdPoller } from '../poller/eventfd-poller.js';

export class KvmDoorbell implements Doorbell {
  readonly spec: IoEventSpec;
  #rings = 0;
  #disposed = false;
  readonly #vm: KvmVm;
  readonly #eventfd: EventFd;
  readonly #kernelSpec: IoeventfdSpec;
  readonly #poller: EventfdPoller;
  readonly #token: number;
  readonly #handler: DoorbellHandler;
  readonly #onError: (error: unknown) => void;
  readonly #onDispose: (doorbell: KvmDoorbell) => void;

  private constructor(
    vm: KvmVm,
    spec: IoEventSpec,
    kernelSpec: IoeventfdSpec,
    eventfd: EventFd,
    poller: EventfdPoller,
    handler: DoorbellHandler,
    onError: (error: unknown) => void,
    onDispose: (doorbell: KvmDoorbell) => void,
  ) {
    this.#vm = vm;
    this.spec = spec;
    this.#kernelSpec = kernelSpec;
    this.#eventfd = eventfd;
    this.#poller = poller;
    this.#handler = handler;
    this.#onError = onError;
    this.#onDispose = onDispose;
    this.#token = poller.watch(eventfd.fd, () => this.#ring());
  }

  /** Checks `spec`, creates the eventfd, binds it with `KVM_IOEVENTFD` and watches it. */
  static create(
    vm: KvmVm,
    poller: EventfdPoller,
    spec: IoEventSpec,
    handler: DoorbellHandler,
    onError: (error: unknown) => void,
    onDispose: (doorbell: KvmDoorbell) => void,
  ): KvmDoorbell {
    const op = 'kvm.registerIoEvent';
    const copy = checkSpec(spec, op);
    if (typeof handler !== 'function') throw new InvalidError(op, 'handler is not a function');
    const eventfd = EventFd.create(op);
    const kernelSpec: IoeventfdSpec = {
      fd: eventfd.fd,
      pio: copy.space === 'pio',
      address: copy.address,
      length: copy.length,
      ...(copy.datamatch === undefined ? {} : { datamatch: copy.datamatch }),
    };
    let bound = false;
    try {
      vm.assignIoeventfd(kernelSpec);
      bound = true;
      return new KvmDoorbell(vm, copy, kernelSpec, eventfd, poller, handler, onError, onDispose);
    } catch (error) {
      if (bound) vm.deassignIoeventfd(kernelSpec);
      eventfd.close();
      throw error;
    }
  }

  get rings(): number {
    return this.#rings;
  }
  get disposed(): boolean {
    return this.#disposed;
  }

  /** libuv poll handles this doorbell holds on the main loop (0 or 1). */
  get pollHandles(): number {
    return !this.#disposed && this.#poller.hasLoopHandle(this.#token) ? 1 : 0;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      this.#poller.unwatch(this.#token, this.#eventfd.fd);
      this.#vm.deassignIoeventfd(this.#kernelSpec);
    } finally {
      this.#eventfd.close();
      this.#onDispose(this);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #ring(): void {
    if (this.#disposed) return;
    const count = this.#eventfd.drain('kvm.doorbell');
    if (count === 0n) return;
    this.#rings++;
    try {
      this.#handler(Number(count));
    } catch (error) {
      this.#onError(error);
    }
  }
}

/** Validates a doorbell spec (a copy is kept, so later changes by the caller do nothing). */
function checkSpec(spec: IoEventSpec, op: string): IoEventSpec {
  if (spec.space !== 'mmio' && spec.space !== 'pio') throw new InvalidError(op, `space ${String(spec.space)} is not mmio or pio`);
  if (![0, 1, 2, 4, 8].includes(spec.length)) throw new InvalidError(op, `length ${String(spec.length)} is not 0, 1, 2, 4 or 8`);
  checkBigInt(spec.address, 0n, spec.space === 'pio' ? 0xffffn : (1n << 64n) - 1n, op, 'address');
  if (spec.space === 'pio' && spec.length === 8) throw new InvalidError(op, 'port accesses are at most 4 bytes');
  if (spec.datamatch !== undefined) {
    if (spec.length === 0) throw new InvalidError(op, 'a datamatch needs a length');
    checkBigInt(spec.datamatch, 0n, (1n << BigInt(spec.length * 8)) - 1n, op, 'datamatch');
  }
  const end = spec.address + BigInt(Math.max(1, spec.length));
  if (end > (spec.space === 'pio' ? 0x10000n : 1n << 64n)) throw new InvalidError(op, `doorbell at ${hex(spec.address)} runs past the end of the space`);
  return { space: spec.space, address: spec.address, length: spec.length, ...(spec.datamatch === undefined ? {} : { datamatch: spec.datamatch }) };
}

/**
 * Refuses `spec` with `Exists` if it overlaps a registered doorbell in the same space that
 * would match the same writes (either has no datamatch, or both match the same value).
 */
export function checkDoorbellOverlap(spec: IoEventSpec, existing: Iterable<KvmDoorbell>): void {
  const a0 = spec.address;
  const a1 = a0 + BigInt(Math.max(1, spec.length));
  for (const d of existing) {
    const s = d.spec;
    if (s.space !== spec.space) continue;
    const b0 = s.address;
    const b1 = b0 + BigInt(Math.max(1, s.length));
    if (a0 >= b1 || b0 >= a1) continue;
    if (s.datamatch !== undefined && spec.datamatch !== undefined && s.datamatch !== spec.datamatch) continue;
    throw new ExistsError('kvm.registerIoEvent', `${spec.space} doorbell at ${hex(spec.address)} overlaps one at ${hex(s.address)}`);
  }
}
