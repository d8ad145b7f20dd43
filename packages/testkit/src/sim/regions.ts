/**
 * Shared memory and direct regions: a buffer the device model holds, mapped into the sim
 * guest's physical address space so guest accesses read and write it without reaching the
 * sink (a KVM memory slot over a memfd, here a plain buffer).
 */
import {
  BadHandleError,
  ExistsError,
  InvalidError,
  PAGE_SIZE,
  UnsupportedError,
  formatRange,
  type AddressRange,
  type DirectMapping,
  type SharedMemory,
} from '@vmed/core';
import { checkPageAligned, checkRange, overlaps } from './checks.js';
import { SimHandle } from './handle.js';
import type { SimMachine } from './machine.js';
import { SIM_MAX_RAM } from './options.js';

export class SimSharedMemory extends SimHandle implements SharedMemory {
  readonly kind = 'shared-memory';
  readonly size: number;
  readonly #bytes: Uint8Array;
  readonly #machine: SimMachine;
  readonly #mappings = new Set<SimDirectMapping>();

  constructor(machine: SimMachine, size: number) {
    super(machine.sharedMemory);
    this.#machine = machine;
    this.size = size;
    this.#bytes = new Uint8Array(size);
    machine.sharedMemory.add(this);
  }

  get bytes(): Uint8Array {
    this.guard('sharedMemory.bytes');
    return this.#bytes;
  }

  /** Whether this memory belongs to `machine` (a foreign object cannot be mapped). */
  ownedBy(machine: SimMachine): boolean {
    return this.#machine === machine;
  }

  /** The bytes backing a guest access, for the sim guest's bus. */
  slice(offset: number, size: number): Uint8Array {
    return this.#bytes.subarray(offset, offset + size);
  }

  track(mapping: SimDirectMapping, mapped: boolean): void {
    if (mapped) this.#mappings.add(mapping);
    else this.#mappings.delete(mapping);
  }

  protected release(): void {
    // Freeing memory the guest still has mapped would leave it reading freed pages: unmap first.
    for (const m of [...this.#mappings]) m.dispose();
  }
}

export class SimDirectMapping extends SimHandle implements DirectMapping {
  readonly kind = 'direct-mapping';
  readonly range: AddressRange;
  readonly #memory: SimSharedMemory;

  constructor(machine: SimMachine, range: AddressRange, memory: SimSharedMemory) {
    super(machine.directMappings);
    this.range = range;
    this.#memory = memory;
    memory.track(this, true);
    machine.directMappings.add(this);
  }

  /** The shared bytes behind `[address, address+size)`, which lies inside the mapping. */
  bytesAt(address: bigint, size: number): Uint8Array {
    return this.#memory.slice(Number(address - this.range.base), size);
  }

  protected release(): void {
    this.#memory.track(this, false);
  }
}

export function allocateSharedMemory(machine: SimMachine, size: number): SimSharedMemory {
  const op = 'sharedMemory.allocate';
  machine.guard(op);
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0 || size > SIM_MAX_RAM) {
    throw new InvalidError(op, `size ${size} is not a positive multiple of ${PAGE_SIZE} up to ${SIM_MAX_RAM}`);
  }
  const fault = machine.faults.takeMapFailure(op);
  if (fault !== undefined) throw fault;
  return new SimSharedMemory(machine, size);
}

export function mapDirect(machine: SimMachine, rangeArg: AddressRange, memory: SharedMemory): SimDirectMapping {
  const op = 'io.mapDirect';
  machine.guard(op);
  if (!machine.capabilities.directRegions) throw new UnsupportedError(op, 'this session cannot map memory into the guest');
  const range = checkRange(rangeArg, op);
  checkPageAligned(range, op);
  if (!(memory instanceof SimSharedMemory) || !memory.ownedBy(machine)) throw new InvalidError(op, 'memory was not allocated by this backend');
  if (memory.disposed) throw new BadHandleError(op, 'the shared memory is disposed');
  if (range.length > BigInt(memory.size)) throw new InvalidError(op, `${formatRange(range)} is larger than the ${memory.size}-byte shared memory`);
  if (machine.ram.overlaps(range.base, range.length)) throw new ExistsError(op, `${formatRange(range)} overlaps guest RAM`);
  const taken = [
    ...[...machine.directMappings].map((m) => m.range),
    ...[...machine.claims].filter((c) => c.space === 'mmio').map((c) => c.range),
    ...[...machine.doorbells].filter((d) => d.spec.space === 'mmio').map((d) => ({ base: d.spec.address, length: BigInt(Math.max(d.spec.length, 1)) })),
  ];
  for (const t of taken) {
    if (overlaps(t.base, t.length, range.base, range.length)) throw new ExistsError(op, `${formatRange(range)} overlaps ${formatRange(t as AddressRange)}`);
  }
  const fault = machine.faults.takeMapFailure(op);
  if (fault !== undefined) throw fault;
  return new SimDirectMapping(machine, range, memory);
}
