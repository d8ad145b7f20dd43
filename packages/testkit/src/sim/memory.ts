/**
 * The sim's guest memory: copies, zero-copy views (subarrays of the RAM buffer) and pins
 * (reference-counted per page). Views cannot be made read-only in JavaScript: `access` is
 * recorded, not enforced, on sim.
 */
import {
  UnsupportedError,
  type GuestMemory,
  type MemoryAccess,
  type MemoryView,
  type PinnedRange,
  type RamRegion,
  type RangeSet,
} from '@vmed/core';
import { checkAccess, checkBytes, checkLength } from './checks.js';
import { SimHandle } from './handle.js';
import type { SimMachine } from './machine.js';

export class SimMemoryView extends SimHandle implements MemoryView {
  readonly kind = 'view';
  readonly address: bigint;
  readonly length: number;
  readonly access: MemoryAccess;
  readonly #bytes: Uint8Array;
  readonly #data: DataView;
  readonly #pin: SimPinnedRange | undefined;

  constructor(machine: SimMachine, address: bigint, length: number, access: MemoryAccess, hostOffset: number, pin?: SimPinnedRange) {
    super(machine.views);
    this.address = address;
    this.length = length;
    this.access = access;
    this.#bytes = machine.ram.bytes.subarray(hostOffset, hostOffset + length);
    this.#data = new DataView(this.#bytes.buffer, this.#bytes.byteOffset, length);
    this.#pin = pin;
    machine.views.add(this);
  }

  get bytes(): Uint8Array {
    this.guard('memory.view.bytes');
    return this.#bytes;
  }

  get data(): DataView {
    this.guard('memory.view.data');
    return this.#data;
  }

  protected release(): void {
    this.#pin?.forgetView(this);
  }
}

export class SimPinnedRange extends SimHandle implements PinnedRange {
  readonly kind = 'pin';
  readonly address: bigint;
  readonly length: number;
  readonly #machine: SimMachine;
  readonly #views = new Set<SimMemoryView>();

  constructor(machine: SimMachine, address: bigint, length: number) {
    super(machine.pins);
    this.#machine = machine;
    this.address = address;
    this.length = length;
    machine.ram.pinPages(address, length, 1);
    machine.pins.add(this);
  }

  view(access: MemoryAccess): MemoryView {
    const op = 'memory.pin.view';
    this.guard(op);
    checkAccess(access, op);
    const hostOffset = this.#machine.ram.hostSpan(this.address, this.length, op);
    const fault = this.#machine.faults.takeMapFailure(op);
    if (fault !== undefined) throw fault;
    const view = new SimMemoryView(this.#machine, this.address, this.length, access, hostOffset, this);
    this.#views.add(view);
    return view;
  }

  /** Called by a view of this pin when it is disposed. */
  forgetView(view: SimMemoryView): void {
    this.#views.delete(view);
  }

  protected release(): void {
    // The contract lets views go "before or with the pin": with it, here.
    for (const v of [...this.#views]) v.dispose();
    this.#machine.ram.pinPages(this.address, this.length, -1);
  }
}

export class SimGuestMemory implements GuestMemory {
  readonly #machine: SimMachine;

  constructor(machine: SimMachine) {
    this.#machine = machine;
  }

  get ram(): RangeSet<RamRegion> {
    return this.#machine.ram.map;
  }

  read(address: bigint, dst: Uint8Array): void {
    const op = 'memory.read';
    this.#machine.guard(op);
    checkBytes(dst, op);
    this.#machine.ram.read(address, dst, op);
  }

  write(address: bigint, src: Uint8Array): void {
    const op = 'memory.write';
    this.#machine.guard(op);
    checkBytes(src, op);
    this.#machine.ram.write(address, src, op);
  }

  view(address: bigint, length: number, access: MemoryAccess): MemoryView {
    const op = 'memory.view';
    this.#machine.guard(op);
    checkLength(length, op);
    checkAccess(access, op);
    const hostOffset = this.#machine.ram.hostSpan(address, length, op);
    const fault = this.#machine.faults.takeMapFailure(op);
    if (fault !== undefined) throw fault;
    return new SimMemoryView(this.#machine, address, length, access, hostOffset);
  }

  pin(address: bigint, length: number): PinnedRange {
    const op = 'memory.pin';
    this.#machine.guard(op);
    if (!this.#machine.capabilities.pinning) throw new UnsupportedError(op, 'this session has no pinning');
    checkLength(length, op);
    this.#machine.ram.pieces(address, length, op);
    const fault = this.#machine.faults.takePinFailure(op);
    if (fault !== undefined) throw fault;
    return new SimPinnedRange(this.#machine, address, length);
  }
}
