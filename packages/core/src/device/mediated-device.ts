/**
 * One mediated device: a device model, the PCI function the guest sees, and everything that
 * connects them to a backend — BAR ranges claimed where the guest puts them, doorbells,
 * direct memory, DMA, interrupts, migration. Lifecycle as VFIO mdev:
 *
 * ```
 * create ──► created ──open()──► open ──close()──► closed ──open()──► open …
 *                 └──────────────────── remove() ──────────────────► removed
 * ```
 *
 * Crash isolation: a model that throws is marked broken — its trapped BARs read all-ones and
 * drop writes, its doorbells are ignored, `device-broken` is emitted with the cause — and the VM
 * and the other devices carry on. `reset()` or `remove()` recover. Direct BARs are plain memory
 * the model never sees accesses to (a framebuffer): they stay readable and writable by the guest
 * while the device is broken or stopped, on every backend (on Xen, where they are trapped and
 * served from the same memory, too), and their content travels in the migration stream.
 */
import type { AddressRange } from '../address.js';
import { addressRange, rangesOverlap } from '../address.js';
import type { Backend } from '../backend/contract.js';
import type { LineTarget } from '../backend/interrupts.js';
import type { PciAddress } from '../backend/io.js';
import { formatPciAddress } from '../backend/io.js';
import type { DirectMapping, Doorbell, IoClaim, SharedMemory } from '../backend/regions.js';
import type { DirtyTracker } from '../dirty/dirty-tracker.js';
import type { DispatchRegistration, IoDispatcher, IoTarget } from '../dispatch/dispatcher.js';
import { BadHandleError, InvalidError, StateError, hex } from '../errors.js';
import type { BarAssigner } from '../firmware/bar-assigner.js';
import type { BarLocation } from '../pci/bars.js';
import type { PciBus } from '../pci/bus.js';
import { PciFunction } from '../pci/function.js';
import { DeviceMigration } from './device-migration.js';
import { DeviceDmaEngine } from './dma.js';
import type { DeviceContext, DeviceDefinition, DeviceDoorbellSpec, DeviceModel, RegionAccessSize } from './model.js';

/** Where a device is in its mdev lifecycle. */
export type DeviceLifecycleState = 'created' | 'open' | 'closed' | 'removed';

/** First GSI used for PCI INTx: the IOAPIC pins above the ISA IRQs. */
export const PCI_INTX_FIRST_GSI = 16;

/** What the mediator lends each device. */
export interface DeviceEnvironment {
  readonly backend: Backend;
  readonly dispatcher: IoDispatcher;
  readonly bus: PciBus;
  readonly dirty: DirtyTracker;
  /** Present when the mediator programs BARs as firmware would. */
  readonly firmware: BarAssigner | undefined;
  /** Lifecycle and fault notifications, re-emitted by the mediator. */
  notify(event: DeviceNotification): void;
}

/** What a device reports to its mediator. */
export type DeviceNotification =
  | { readonly kind: 'state'; readonly device: MediatedDevice; readonly state: DeviceLifecycleState | 'reset' }
  | { readonly kind: 'broken'; readonly device: MediatedDevice; readonly cause: unknown }
  | { readonly kind: 'warning'; readonly device: MediatedDevice; readonly message: string; readonly cause?: unknown };

/** What a BAR holds while it decodes. */
interface BarMapping {
  readonly location: BarLocation;
  registration?: DispatchRegistration;
  claim?: IoClaim;
  direct?: DirectMapping;
}

interface DoorbellEntry {
  readonly spec: DeviceDoorbellSpec;
  readonly handler: (count: number) => void;
  live: Doorbell | undefined;
}

export class MediatedDevice {
  readonly uuid: string;
  readonly type: string;
  readonly address: PciAddress;
  readonly function: PciFunction;
  readonly model: DeviceModel;
  readonly dma: DeviceDmaEngine;
  readonly migration: DeviceMigration;

  /** How many times the model raised an interrupt (for summaries). */
  interruptsRaised = 0;
  private lifecycle: DeviceLifecycleState = 'created';
  private brokenCause: unknown = undefined;
  private isBroken = false;
  private readonly env: DeviceEnvironment;
  private readonly shared = new Map<number, SharedMemory>();
  private readonly mappings = new Map<number, BarMapping>();
  private readonly doorbells = new Set<DoorbellEntry>();
  private releaseBars: (() => void) | undefined;
  private pciClaim: IoClaim | undefined;

  /**
   * Builds the device in the `created` state: not on the bus yet, so the guest cannot see it.
   * Nothing is left behind if the model's constructor throws.
   */
  constructor(definition: DeviceDefinition<never>, uuid: string, address: PciAddress, options: unknown, env: DeviceEnvironment) {
    this.uuid = uuid;
    this.type = definition.type;
    this.address = address;
    this.env = env;
    // The model's definition is only known once it exists, but the function must exist for the
    // context's interrupts: build the function from a probe of the definition first.
    let fn: PciFunction | undefined;
    const context: DeviceContext = {
      uuid,
      interrupts: {
        raise: (vector?: number) => {
          this.interruptsRaised++;
          this.requireFunction(fn).interrupts.raise(vector);
        },
        lower: (vector?: number) => this.requireFunction(fn).interrupts.lower(vector),
        get mode() {
          return fn === undefined ? 'none' : fn.interrupts.mode;
        },
      },
      dma: {
        read: (a, n) => this.dma.read(a, n),
        readInto: (a, dst) => this.dma.readInto(a, dst),
        write: (a, src) => this.dma.write(a, src),
        view: (a, n, access) => this.dma.view(a, n, access),
      },
      directMemory: (bar) => this.directMemory(bar),
      doorbell: (spec, handler) => this.addDoorbell(spec, handler),
    };
    try {
      this.model = definition.create(context, options as never);
      fn = new PciFunction(this.model.definition, {
        address,
        intxLine: intxLineFor(address, this.model.definition.interruptPin ?? 0),
        createMsiRoute: () => env.backend.createMsiRoute(),
        createLineIrq: (target: LineTarget, trigger) => env.backend.createLineIrq(target, trigger),
        onBarChange: (index, before, after) => this.barMoved(index, before, after),
        onError: (e) => this.warn(`interrupt or BAR change refused by the ${env.backend.capabilities.hypervisor} backend`, e),
      });
      this.function = fn;
      for (const entry of this.doorbells) this.checkDoorbell(entry.spec);
      for (const slot of fn.bars) {
        if (slot?.definition.backing === 'direct') this.shared.set(slot.index, env.backend.allocateSharedMemory(slot.size));
      }
    } catch (e) {
      for (const m of this.shared.values()) m.dispose();
      fn?.dispose();
      throw e;
    }
    this.dma = new DeviceDmaEngine(env.backend.memory, env.dirty, () => this.function.busMaster);
    this.migration = new DeviceMigration(this, env.backend.capabilities.hypervisor);
    const follow = () => this.updateAccepting();
    this.migration.machine.on('step', follow).on('reset', follow).on('failed', follow);
  }

  get state(): DeviceLifecycleState {
    return this.lifecycle;
  }

  /** The memory behind each direct BAR, by BAR index (saved with the device's state). */
  directMemories(): Array<[bar: number, bytes: Uint8Array]> {
    return [...this.shared.entries()].map(([bar, m]) => [bar, m.bytes]);
  }

  /** Whether a model failure has fenced the device off (until reset). */
  get broken(): boolean {
    return this.isBroken;
  }

  /** What broke the device, if it is broken. */
  get brokenBy(): unknown {
    return this.brokenCause;
  }

  /** `created`/`closed` → `open`: on the bus, BARs assigned (with firmware), visible to the guest. */
  open(): void {
    this.guard('device.open');
    if (this.lifecycle === 'open') throw new StateError('device.open', `${this.describe()} is already open`);
    const { bus, backend, firmware } = this.env;
    bus.add(this.function);
    try {
      if (backend.capabilities.pciConfig === 'hypervisor') this.pciClaim = backend.claimPciFunction(this.address);
      if (firmware !== undefined) this.releaseBars = firmware.assign(this.function);
    } catch (e) {
      this.pciClaim?.dispose();
      this.pciClaim = undefined;
      bus.remove(this.address);
      throw e;
    }
    this.lifecycle = 'open';
    this.env.notify({ kind: 'state', device: this, state: 'open' });
  }

  /**
   * Function-level reset: model and config space back to power-on, BARs reassigned (with
   * firmware), migration back to RUNNING, the broken mark cleared.
   */
  reset(): void {
    this.guard('device.reset');
    this.model.reset();
    this.function.reset();
    if (this.releaseBars !== undefined) {
      this.releaseBars();
      this.releaseBars = this.env.firmware?.assign(this.function);
    }
    this.migration.resetState();
    this.isBroken = false;
    this.brokenCause = undefined;
    this.updateAccepting();
    this.env.notify({ kind: 'state', device: this, state: 'reset' });
  }

  /**
   * `open` → `closed`: off the bus, every BAR range, doorbell, route and line released, and the
   * device back to power-on — migration RUNNING, not broken — so that a reopen starts clean.
   */
  close(): void {
    this.guard('device.close');
    if (this.lifecycle !== 'open') throw new StateError('device.close', `${this.describe()} is not open`);
    this.detach();
    this.lifecycle = 'closed';
    this.env.notify({ kind: 'state', device: this, state: 'closed' });
  }

  /** Removes the device for good (closing it first if open). */
  remove(): void {
    if (this.lifecycle === 'removed') return;
    if (this.lifecycle === 'open') this.detach();
    for (const entry of this.doorbells) entry.live?.dispose();
    this.doorbells.clear();
    try {
      this.model.dispose?.();
    } finally {
      this.function.dispose();
      for (const m of this.shared.values()) m.dispose();
      this.shared.clear();
      this.migration.dispose();
      this.lifecycle = 'removed';
      this.env.notify({ kind: 'state', device: this, state: 'removed' });
    }
  }

  /** `serial 3f1c… at 0000:00:03.0`. */
  describe(): string {
    return `${this.type} ${this.uuid} at ${formatPciAddress(this.address)}`;
  }

  /** Fences the device off after a model failure. Idempotent; the first cause is kept. */
  markBroken(cause: unknown): void {
    if (this.isBroken) return;
    this.isBroken = true;
    this.brokenCause = cause;
    this.updateAccepting();
    this.env.notify({ kind: 'broken', device: this, cause });
  }

  /**
   * Whether guest accesses reach the model: not broken, and migration in a running state.
   * Kept as a field (updated on both changes) because every access reads it.
   */
  private accepting = true;

  private updateAccepting(): void {
    this.accepting = !this.isBroken && this.migration.running;
  }

  private detach(): void {
    for (const index of [...this.mappings.keys()]) this.unmapBar(index);
    for (const entry of this.doorbells) {
      entry.live?.dispose();
      entry.live = undefined;
    }
    this.releaseBars?.();
    this.releaseBars = undefined;
    this.pciClaim?.dispose();
    this.pciClaim = undefined;
    this.env.bus.remove(this.address);
    // Back to power-on so a reopened device starts clean; this also releases routes and the line.
    // Clean includes the migration state (RUNNING, streams abandoned, as a VFIO device is on open)
    // and the broken mark, which the model reset below sets again if it throws.
    this.function.reset();
    this.migration.resetState();
    this.isBroken = false;
    this.brokenCause = undefined;
    this.updateAccepting();
    this.safeModelReset();
  }

  private safeModelReset(): void {
    try {
      this.model.reset();
    } catch (e) {
      this.markBroken(e);
    }
  }

  // ---- BARs ---------------------------------------------------------------------------------

  private barMoved(index: number, before: BarLocation | undefined, after: BarLocation | undefined): void {
    if (before !== undefined) this.unmapBar(index);
    if (after !== undefined && this.lifecycle === 'open') this.mapBar(index, after);
  }

  private mapBar(index: number, location: BarLocation): void {
    const { backend, dispatcher } = this.env;
    const range = addressRange(location.base, location.size, 'device.mapBar');
    const name = `${this.type}[${this.uuid.slice(0, 8)}].bar${index}`;
    if (location.space === 'mmio' && backend.memory.ram.ranges.some((r) => rangesOverlap(r, range))) {
      // A BAR over RAM would shadow guest memory (or be shadowed by it): leave it unmapped.
      this.warn(`${name} programmed over guest RAM at ${hex(location.base)}; not mapped`);
      return;
    }
    const mapping: BarMapping = { location };
    this.mappings.set(index, mapping);
    const memory = this.shared.get(index);
    try {
      if (memory !== undefined && backend.capabilities.directRegions) {
        mapping.direct = backend.mapDirect(range, memory);
      } else {
        const target = memory !== undefined ? sharedMemoryTarget(memory) : this.trappedTarget(index);
        mapping.registration = dispatcher.add(location.space, range, target, name, (e) => this.markBroken(e));
        mapping.claim = backend.claimIo(location.space, range);
      }
    } catch (e) {
      // The guest put two BARs on top of each other, or the backend refused the range.
      this.unmapBar(index);
      this.warn(`${name} at ${hex(location.base)} could not be mapped`, e);
      return;
    }
    for (const entry of this.doorbells) if (entry.spec.bar === index) this.armDoorbell(entry);
  }

  private unmapBar(index: number): void {
    const mapping = this.mappings.get(index);
    if (mapping === undefined) return;
    this.mappings.delete(index);
    for (const entry of this.doorbells) {
      if (entry.spec.bar === index) {
        entry.live?.dispose();
        entry.live = undefined;
      }
    }
    mapping.direct?.dispose();
    mapping.claim?.dispose();
    mapping.registration?.dispose();
  }

  /** BAR accesses in: MSI-X table and PBA to the function, the rest to the model. */
  private trappedTarget(index: number): IoTarget {
    const fn = this.function;
    const model = this.model;
    return {
      read: (offset, size) => {
        if (!this.accepting) return size === 4 ? 0xffff_ffff : (1 << (size * 8)) - 1;
        if (fn.isMsixTableAccess(index, offset)) return fn.msixRead(index, offset, size);
        return model.read(index, offset, size as RegionAccessSize);
      },
      write: (offset, size, value) => {
        if (!this.accepting) return;
        if (fn.isMsixTableAccess(index, offset)) fn.msixWrite(index, offset, size, value);
        else model.write(index, offset, size as RegionAccessSize, value);
      },
    };
  }

  private directMemory(bar: number): Uint8Array {
    const memory = this.shared.get(bar);
    if (memory === undefined) throw new InvalidError('device.directMemory', `BAR ${bar} of ${this.type} is not a direct BAR`);
    return memory.bytes;
  }

  // ---- Doorbells ----------------------------------------------------------------------------

  private addDoorbell(spec: DeviceDoorbellSpec, handler: (count: number) => void): () => void {
    // A model may register doorbells in its constructor, before the function exists: those are
    // checked as soon as it does.
    if ((this.function as PciFunction | undefined) !== undefined) this.checkDoorbell(spec);
    const entry: DoorbellEntry = { spec, handler, live: undefined };
    this.doorbells.add(entry);
    if (this.mappings.has(spec.bar)) this.armDoorbell(entry);
    return () => {
      entry.live?.dispose();
      this.doorbells.delete(entry);
    };
  }

  private checkDoorbell(spec: DeviceDoorbellSpec): void {
    const slot = this.function.bars[spec.bar];
    if (slot === undefined || slot.definition.backing === 'direct') {
      throw new InvalidError('device.doorbell', `BAR ${spec.bar} of ${this.type} is not a trapped BAR`);
    }
    if (!Number.isInteger(spec.offset) || spec.offset < 0 || spec.offset + spec.length > slot.size) {
      throw new InvalidError('device.doorbell', `doorbell at BAR ${spec.bar} + ${hex(spec.offset)} is outside the BAR`);
    }
  }

  private armDoorbell(entry: DoorbellEntry): void {
    const mapping = this.mappings.get(entry.spec.bar);
    if (mapping === undefined || entry.live !== undefined) return;
    const { spec } = entry;
    try {
      entry.live = this.env.backend.registerIoEvent(
        {
          space: mapping.location.space,
          address: mapping.location.base + BigInt(spec.offset),
          length: spec.length,
          ...(spec.datamatch === undefined ? {} : { datamatch: spec.datamatch }),
        },
        (count) => {
          if (!this.accepting) return;
          try {
            entry.handler(count);
          } catch (e) {
            this.markBroken(e);
          }
        },
      );
    } catch (e) {
      this.warn(`doorbell at BAR ${spec.bar} + ${hex(spec.offset)} could not be registered`, e);
    }
  }

  // ---- Helpers ------------------------------------------------------------------------------

  private warn(message: string, cause?: unknown): void {
    this.env.notify({ kind: 'warning', device: this, message, ...(cause === undefined ? {} : { cause }) });
  }

  private guard(operation: string): void {
    if (this.lifecycle === 'removed') throw new BadHandleError(operation, `${this.type} ${this.uuid} was removed`);
  }

  private requireFunction(fn: PciFunction | undefined): PciFunction {
    if (fn === undefined) throw new StateError('device.interrupts', 'a model may not raise interrupts from its constructor');
    return fn;
  }

  /** Ranges the device currently decodes, for dumps and tests. */
  decodedRanges(): Array<{ bar: number; space: 'mmio' | 'pio'; range: AddressRange; direct: boolean }> {
    return [...this.mappings.entries()].map(([bar, m]) => ({
      bar,
      space: m.location.space,
      range: addressRange(m.location.base, m.location.size),
      direct: m.direct !== undefined,
    }));
  }
}

/** INTx routing as a PC chipset swizzles it: slot and pin pick one of four IOAPIC pins from 16. */
export function intxLineFor(address: PciAddress, pin: number): number {
  if (pin === 0) return 0;
  return PCI_INTX_FIRST_GSI + ((address.device + pin - 1) & 3);
}

/** A direct BAR served by trapping, where the backend cannot map memory into the guest (Xen). */
function sharedMemoryTarget(memory: SharedMemory): IoTarget {
  const view = new DataView(memory.bytes.buffer, memory.bytes.byteOffset, memory.bytes.byteLength);
  return {
    read(offset, size) {
      if (offset + size > view.byteLength) return size === 4 ? 0xffff_ffff : (1 << (size * 8)) - 1;
      return size === 1 ? view.getUint8(offset) : size === 2 ? view.getUint16(offset, true) : view.getUint32(offset, true);
    },
    write(offset, size, value) {
      if (offset + size > view.byteLength) return;
      if (size === 1) view.setUint8(offset, value);
      else if (size === 2) view.setUint16(offset, value, true);
      else view.setUint32(offset, value, true);
    },
  };
}
