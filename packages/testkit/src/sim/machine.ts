/**
 * The state one sim session shares between its two faces: the backend (what the host side
 * calls) and the guest (the scripted CPU). It also holds the guest's bus: where an access
 * goes — a doorbell, RAM (dirty-logged, page-tracked), a direct region, the sink for a
 * claimed range, or nowhere (all-ones, dropped).
 */
import {
  BadHandleError,
  InvalidError,
  allOnes,
  hex,
  type AccessSize,
  type BackendCapabilities,
  type IoRequestSink,
} from '@vmed/core';
import { FaultPlan } from './faults.js';
import { RELEASE_ORDER, type SimHandle, type SimHandleKind } from './handle.js';
import { SimInterruptController } from './interrupt-controller.js';
import type { SimLineIrq, SimMsiRoute } from './interrupts.js';
import type { SimDoorbell, SimIoClaim } from './io.js';
import type { SimMemoryView, SimPinnedRange } from './memory.js';
import type { ResolvedSimOptions } from './options.js';
import { SimRam } from './ram.js';
import type { SimDirectMapping, SimSharedMemory } from './regions.js';
import type { SimPageTrack } from './tracking.js';

export type BusSpace = 'mmio' | 'pio';

export class SimMachine {
  readonly options: ResolvedSimOptions;
  readonly capabilities: BackendCapabilities;
  readonly ram: SimRam;
  readonly interrupts: SimInterruptController;
  readonly faults: FaultPlan;

  readonly doorbells = new Set<SimDoorbell>();
  readonly claims = new Set<SimIoClaim>();
  readonly routes = new Set<SimMsiRoute>();
  readonly lines = new Set<SimLineIrq>();
  readonly pageTracks = new Set<SimPageTrack>();
  readonly views = new Set<SimMemoryView>();
  readonly pins = new Set<SimPinnedRange>();
  readonly directMappings = new Set<SimDirectMapping>();
  readonly sharedMemory = new Set<SimSharedMemory>();

  sink: IoRequestSink | undefined;
  dirtyActive = false;
  closed = false;
  guestStopped = false;
  /** Kinds in the order `close()` released them, for tests of the release order. */
  readonly releaseLog: SimHandleKind[] = [];

  readonly #freeRouteIds: number[] = [];
  #nextRouteId = 0;

  constructor(options: ResolvedSimOptions) {
    this.options = options;
    this.capabilities = options.capabilities;
    this.ram = new SimRam(options.ram, options.hostGaps);
    const lineIrq = options.capabilities.lineIrq;
    this.interrupts = new SimInterruptController(options.ioApicPins, options.autoEoi, lineIrq !== false && lineIrq.resample);
    this.faults = new FaultPlan((op) => this.guard(op));
  }

  /** Every host-side method starts here. */
  guard(operation: string): void {
    if (this.closed) throw new BadHandleError(operation, 'the sim backend is closed');
  }

  /** Every guest-side method starts here. */
  guardGuest(operation: string): void {
    if (this.closed || this.guestStopped) throw new BadHandleError(operation, 'the sim guest has stopped');
  }

  allocateRouteId(): number {
    return this.#freeRouteIds.pop() ?? this.#nextRouteId++;
  }

  freeRouteId(id: number): void {
    this.#freeRouteIds.push(id);
  }

  /** Releases everything in the contract's order and stops the guest. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const tables: Partial<Record<SimHandleKind, Set<SimHandle>>> = {
      doorbell: this.doorbells,
      claim: this.claims,
      'msi-route': this.routes,
      line: this.lines,
      'page-track': this.pageTracks,
      view: this.views,
      pin: this.pins,
      'direct-mapping': this.directMappings,
      'shared-memory': this.sharedMemory,
    };
    for (const kind of RELEASE_ORDER) {
      if (kind === 'dirty-log') {
        if (this.dirtyActive) {
          this.dirtyActive = false;
          this.ram.clearDirty();
          this.releaseLog.push(kind);
        }
      } else if (kind === 'ram') {
        this.guestStopped = true;
        this.interrupts.stop();
        this.ram.release();
        this.sink = undefined;
        this.releaseLog.push(kind);
      } else {
        for (const handle of [...(tables[kind] ?? [])]) {
          // A pin's views were already released in the 'view' step.
          if (handle.disposed) continue;
          handle.dispose();
          this.releaseLog.push(kind);
        }
      }
    }
  }

  // ---- the guest's bus -------------------------------------------------------------------

  async busRead(space: BusSpace, address: bigint, size: AccessSize, operation: string): Promise<bigint> {
    this.guardGuest(operation);
    if (space === 'mmio') {
      const local = this.#memoryTarget(address, size, operation);
      if (local === 'ram') {
        const buf = new Uint8Array(size);
        this.ram.read(address, buf, operation);
        return fromLittleEndian(buf);
      }
      if (local !== undefined) return fromLittleEndian(local.bytesAt(address, size));
    }
    if (!this.#claimed(space, address, size)) return allOnes(size);
    const sink = await this.#sinkAfterDelay(operation);
    return BigInt.asUintN(size * 8, sink.read(space, address, size));
  }

  async busWrite(space: BusSpace, address: bigint, size: AccessSize, value: bigint, operation: string): Promise<void> {
    this.guardGuest(operation);
    for (const bell of this.doorbells) {
      if (bell.matches(space, address, size, value)) {
        bell.ring();
        return;
      }
    }
    if (space === 'mmio') {
      const local = this.#memoryTarget(address, size, operation);
      if (local === 'ram') {
        this.storeRam(address, size, value);
        return;
      }
      if (local !== undefined) {
        local.bytesAt(address, size).set(toLittleEndian(value, size));
        return;
      }
    }
    if (!this.#claimed(space, address, size)) return;
    const sink = await this.#sinkAfterDelay(operation);
    sink.write(space, address, size, value);
  }

  /**
   * One guest store to RAM: a tracked page's handler decides whether it lands; a store that
   * lands is logged dirty (the guest wrote it, however it got there).
   */
  storeRam(address: bigint, size: AccessSize, value: bigint): void {
    for (const track of this.pageTracks) {
      if (track.touches(address, size)) {
        if (track.handle({ address, size, value }) === 'drop') return;
        break;
      }
    }
    this.ram.write(address, toLittleEndian(value, size), 'guest.store');
    if (this.dirtyActive) this.ram.markDirty(address, size);
  }

  /** RAM, a direct mapping, or neither; an access straddling memory and MMIO is not modelled. */
  #memoryTarget(address: bigint, size: AccessSize, operation: string): 'ram' | SimDirectMapping | undefined {
    const end = address + BigInt(size);
    if (this.ram.contains(address, size)) return 'ram';
    if (this.ram.overlaps(address, BigInt(size))) {
      throw new InvalidError(operation, `the sim guest does not model an access straddling RAM and MMIO at ${hex(address)}`);
    }
    for (const m of this.directMappings) {
      const mEnd = m.range.base + m.range.length;
      if (address >= m.range.base && end <= mEnd) return m;
      if (address < mEnd && m.range.base < end) {
        throw new InvalidError(operation, `the sim guest does not model an access straddling a direct region at ${hex(address)}`);
      }
    }
    return undefined;
  }

  /** Whether any claim in `space` overlaps the access (the sink then decides, as on KVM). */
  #claimed(space: BusSpace, address: bigint, size: AccessSize): boolean {
    const end = address + BigInt(size);
    for (const c of this.claims) {
      if (c.space === space && address < c.range.base + c.range.length && c.range.base < end) return true;
    }
    return false;
  }

  async #sinkAfterDelay(operation: string): Promise<IoRequestSink> {
    const delay = this.faults.takeRequestDelay();
    if (delay > 0) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      this.guardGuest(operation);
    }
    const sink = this.sink;
    // A claim cannot exist without an attached sink; a closed session was refused above.
    if (sink === undefined) throw new BadHandleError(operation, 'no sink is attached');
    return sink;
  }
}

export function toLittleEndian(value: bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = value;
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function fromLittleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
  return v;
}
