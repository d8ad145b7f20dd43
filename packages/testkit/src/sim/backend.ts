/**
 * `sim`: the in-process reference backend. It implements the whole backend contract with no
 * kernel or hypervisor underneath — RAM in an `ArrayBuffer`, a scripted guest
 * ({@link SimGuest}), an interrupt controller that counts deliveries — so it is the yardstick
 * the KVM and Xen backends are held to by the conformance suite, and the backend of unit
 * tests on machines with neither hypervisor. {@link SimFaults} injects the failures real
 * hypervisors give only rarely.
 */
import {
  InvalidError,
  StateError,
  UnsupportedError,
  type AddressRange,
  type Backend,
  type BackendCapabilities,
  type BackendFactory,
  type BackendResources,
  type DirtyBitmap,
  type DirtyLog,
  type DirectMapping,
  type Doorbell,
  type DoorbellHandler,
  type EventChannelRoute,
  type GuestMemory,
  type IoClaim,
  type IoEventSpec,
  type IoRequestSink,
  type LineIrq,
  type LineTarget,
  type LineTrigger,
  type MsiMessage,
  type MsiRoute,
  type PageTrack,
  type PciAddress,
  type SharedMemory,
  type TrackedWriteHandler,
} from '@vmed/core';
import type { SimFaults } from './faults.js';
import { SimGuest } from './guest.js';
import type { SimHandleKind } from './handle.js';
import { createLineIrq, createMsiRoute, signalMsi } from './interrupts.js';
import { claimIo, registerIoEvent } from './io.js';
import { SimMachine } from './machine.js';
import { SimGuestMemory } from './memory.js';
import { parseSimOptions, resolveSimOptions, type SimBackendOptions } from './options.js';
import { allocateSharedMemory, mapDirect } from './regions.js';
import { SimDirtyLog, trackWrites } from './tracking.js';

/** {@link BackendResources} plus what only the sim can count. */
export interface SimResources extends BackendResources {
  readonly views: number;
  readonly sharedMemory: number;
  readonly directMappings: number;
  /** Guest pages held by at least one pin. */
  readonly pinnedPages: number;
}

export class SimBackend implements Backend {
  readonly capabilities: BackendCapabilities;
  readonly memory: GuestMemory;
  readonly dirty: DirtyLog;
  /** The scripted guest; it stops when the backend closes. */
  readonly guest: SimGuest;
  /** Fault injection for this session. */
  readonly faults: SimFaults;
  readonly #machine: SimMachine;

  constructor(options: SimBackendOptions = {}) {
    const machine = new SimMachine(resolveSimOptions(options));
    this.#machine = machine;
    this.capabilities = machine.capabilities;
    this.memory = new SimGuestMemory(machine);
    this.dirty = new SimDirtyLog(machine);
    this.guest = new SimGuest(machine);
    this.faults = machine.faults;
  }

  get closed(): boolean {
    return this.#machine.closed;
  }

  /** What `close()` released, kind by kind, in order (empty until closed). */
  get releaseLog(): readonly SimHandleKind[] {
    return this.#machine.releaseLog;
  }

  /** Once; a second call is `State` (requests would otherwise go to two dispatchers). */
  attach(sink: IoRequestSink): void {
    const op = 'backend.attach';
    this.#machine.guard(op);
    if (typeof sink !== 'object' || sink === null || typeof sink.read !== 'function' || typeof sink.write !== 'function') {
      throw new InvalidError(op, 'sink must have read() and write()');
    }
    if (this.#machine.sink !== undefined) throw new StateError(op, 'a sink is already attached');
    this.#machine.sink = sink;
  }

  claimIo(space: 'mmio' | 'pio', range: AddressRange): IoClaim {
    return claimIo(this.#machine, space, range);
  }

  /** `Unsupported`: the sim's config cycles arrive as port accesses (`pciConfig: 'device-model'`). */
  claimPciFunction(_device: PciAddress): IoClaim {
    const op = 'io.claimPciFunction';
    this.#machine.guard(op);
    throw new UnsupportedError(op, "the sim's guest config cycles reach the core's host bridge as port I/O; claim 0xCF8-0xCFF instead");
  }

  allocateSharedMemory(size: number): SharedMemory {
    return allocateSharedMemory(this.#machine, size);
  }

  mapDirect(range: AddressRange, memory: SharedMemory): DirectMapping {
    return mapDirect(this.#machine, range, memory);
  }

  createMsiRoute(): MsiRoute {
    return createMsiRoute(this.#machine);
  }

  signalMsi(message: MsiMessage): void {
    signalMsi(this.#machine, message);
  }

  createLineIrq(target: LineTarget, trigger: LineTrigger): LineIrq {
    return createLineIrq(this.#machine, target, trigger);
  }

  /** `Unsupported`: event channels are Xen's. */
  createEventChannel(): EventChannelRoute {
    const op = 'evtchn.create';
    this.#machine.guard(op);
    throw new UnsupportedError(op, 'event channels exist only on Xen');
  }

  registerIoEvent(spec: IoEventSpec, handler: DoorbellHandler): Doorbell {
    return registerIoEvent(this.#machine, spec, handler);
  }

  trackWrites(range: AddressRange, handler: TrackedWriteHandler): PageTrack {
    return trackWrites(this.#machine, range, handler);
  }

  /** What the session holds; callable after `close()` (all zeros then if close released everything). */
  resources(): SimResources {
    const m = this.#machine;
    return {
      fds: 0,
      // The RAM buffer (until close releases it), every view and every shared memory.
      mappings: (m.ram.released ? 0 : 1) + m.views.size + m.sharedMemory.size,
      msiRoutes: m.routes.size,
      lineIrqs: m.lines.size,
      doorbells: m.doorbells.size,
      claims: m.claims.size,
      pins: m.pins.size,
      pageTracks: m.pageTracks.size,
      workers: 0,
      views: m.views.size,
      sharedMemory: m.sharedMemory.size,
      directMappings: m.directMappings.size,
      pinnedPages: m.ram.pinnedPages,
    };
  }

  /**
   * Push mode only: takes and clears the toolstack-side log (what Xen's log-dirty bitmap
   * would hold: guest stores and `dirty.push` reports).
   */
  takeToolstackDirtyLog(): DirtyBitmap[] {
    const op = 'sim.takeToolstackDirtyLog';
    this.#machine.guard(op);
    if (this.capabilities.dirtyTracking !== 'push') throw new UnsupportedError(op, 'only in push mode');
    return this.#machine.ram.takeDirty();
  }

  /** Releases everything in the contract's order (see `releaseLog`); idempotent. */
  async close(): Promise<void> {
    this.#machine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A new sim session. */
export async function createSimBackend(options: SimBackendOptions = {}): Promise<SimBackend> {
  return new SimBackend(options);
}

/** The {@link BackendFactory} a mediator config naming `sim` loads: options come from `config.sim`. */
export const createBackend: BackendFactory = async (options) => new SimBackend(parseSimOptions(options));
