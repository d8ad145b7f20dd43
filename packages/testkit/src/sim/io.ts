/**
 * Trapped ranges and doorbells. A claim routes guest accesses that touch it to the sink; a
 * doorbell catches guest writes of its exact address, width (any width for length 0) and,
 * if set, value, before they reach the sink — in userspace, like Xen's ioreq path.
 */
import {
  ExistsError,
  InvalidError,
  StateError,
  UnsupportedError,
  formatRange,
  hex,
  type AccessSize,
  type AddressRange,
  type Doorbell,
  type DoorbellHandler,
  type IoClaim,
  type IoEventSpec,
} from '@vmed/core';
import { checkFunction, checkPortRange, checkRange, overlaps } from './checks.js';
import { SimHandle } from './handle.js';
import type { BusSpace, SimMachine } from './machine.js';

export class SimIoClaim extends SimHandle implements IoClaim {
  readonly kind = 'claim';
  readonly space: BusSpace;
  readonly range: AddressRange;

  constructor(machine: SimMachine, space: BusSpace, range: AddressRange) {
    super(machine.claims);
    this.space = space;
    this.range = range;
    machine.claims.add(this);
  }

  protected release(): void {}
}

export class SimDoorbell extends SimHandle implements Doorbell {
  readonly kind = 'doorbell';
  readonly spec: IoEventSpec;
  readonly #handler: DoorbellHandler;
  #rings = 0;

  constructor(machine: SimMachine, spec: IoEventSpec, handler: DoorbellHandler) {
    super(machine.doorbells);
    this.spec = spec;
    this.#handler = handler;
    machine.doorbells.add(this);
  }

  get rings(): number {
    return this.#rings;
  }

  /** Whether a guest write of `size` bytes of `value` at `address` rings this doorbell. */
  matches(space: BusSpace, address: bigint, size: AccessSize, value: bigint): boolean {
    const s = this.spec;
    return (
      s.space === space &&
      s.address === address &&
      (s.length === 0 || s.length === size) &&
      (s.datamatch === undefined || s.datamatch === value)
    );
  }

  /** The guest rang it: the handler runs on the I/O context before the guest's write retires. */
  ring(): void {
    this.#rings++;
    this.#handler(1);
  }

  protected release(): void {}
}

/** `claimIo`: see the contract; also refuses claims over RAM or a direct region (no access would ever reach them). */
export function claimIo(machine: SimMachine, space: BusSpace, rangeArg: AddressRange): SimIoClaim {
  const op = 'io.claim';
  machine.guard(op);
  if (space !== 'mmio' && space !== 'pio') throw new InvalidError(op, `space must be "mmio" or "pio", got ${String(space)}`);
  const range = checkRange(rangeArg, op);
  if (space === 'pio') checkPortRange(range, op);
  if (machine.sink === undefined) throw new StateError(op, 'attach a sink before claiming');
  for (const c of machine.claims) {
    if (c.space === space && overlaps(c.range.base, c.range.length, range.base, range.length)) {
      throw new ExistsError(op, `${space} ${formatRange(range)} overlaps the claim ${formatRange(c.range)}`);
    }
  }
  if (space === 'mmio') refuseMemoryOverlap(machine, range, op);
  return new SimIoClaim(machine, space, range);
}

/** `registerIoEvent`. Two doorbells conflict where they overlap and either matches any value or both match the same one (KVM's rule). */
export function registerIoEvent(machine: SimMachine, specArg: IoEventSpec, handler: DoorbellHandler): SimDoorbell {
  const op = 'doorbell.register';
  machine.guard(op);
  const spec = checkIoEventSpec(machine, specArg, op);
  checkFunction(handler, 'handler', op);
  const footprint = BigInt(Math.max(spec.length, 1));
  for (const d of machine.doorbells) {
    const s = d.spec;
    if (s.space !== spec.space || !overlaps(s.address, BigInt(Math.max(s.length, 1)), spec.address, footprint)) continue;
    if (s.datamatch === undefined || spec.datamatch === undefined || s.datamatch === spec.datamatch) {
      throw new ExistsError(op, `${spec.space} doorbell at ${hex(spec.address)} overlaps one at ${hex(s.address)} with the same match`);
    }
  }
  if (spec.space === 'mmio') refuseMemoryOverlap(machine, { base: spec.address, length: footprint } as AddressRange, op);
  return new SimDoorbell(machine, spec, handler);
}

function checkIoEventSpec(machine: SimMachine, spec: IoEventSpec, op: string): IoEventSpec {
  if (typeof spec !== 'object' || spec === null) throw new InvalidError(op, 'spec must be { space, address, length, datamatch? }');
  const { space, address, length, datamatch } = spec;
  if (space !== 'mmio' && space !== 'pio') throw new InvalidError(op, `space must be "mmio" or "pio", got ${String(space)}`);
  if (length !== 0 && length !== 1 && length !== 2 && length !== 4 && length !== 8) throw new InvalidError(op, `length ${String(length)} is not 0, 1, 2, 4 or 8`);
  if (space === 'pio' && length === 8) throw new InvalidError(op, 'port doorbells are at most 4 bytes wide');
  const top = space === 'pio' ? 0x1_0000n : 1n << 64n;
  if (typeof address !== 'bigint' || address < 0n || address + BigInt(Math.max(length, 1)) > top) {
    throw new InvalidError(op, `${space} address ${String(address)} is out of range`);
  }
  if (datamatch !== undefined) {
    if (!machine.capabilities.doorbellDatamatch) throw new UnsupportedError(op, 'this session has no datamatch doorbells');
    if (length === 0) throw new InvalidError(op, 'a datamatch needs a width (length 0 matches any width)');
    if (typeof datamatch !== 'bigint' || datamatch < 0n || datamatch >= 1n << BigInt(length * 8)) {
      throw new InvalidError(op, `datamatch ${String(datamatch)} does not fit in ${length} bytes`);
    }
  }
  return Object.freeze(datamatch === undefined ? { space, address, length } : { space, address, length, datamatch });
}

/** Trapped MMIO over RAM or a direct region would never trap: refuse it rather than hold a dead claim. */
export function refuseMemoryOverlap(machine: SimMachine, range: AddressRange, op: string): void {
  if (machine.ram.overlaps(range.base, range.length)) throw new ExistsError(op, `${formatRange(range)} overlaps guest RAM`);
  for (const m of machine.directMappings) {
    if (overlaps(m.range.base, m.range.length, range.base, range.length)) {
      throw new ExistsError(op, `${formatRange(range)} overlaps the direct region ${formatRange(m.range)}`);
    }
  }
}
