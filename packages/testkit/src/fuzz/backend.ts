/**
 * The fuzzer's backend: the real `sim` backend behind a thin layer that watches what the core
 * asks of it — every guest memory access made for a device (DMA), every MSI route's triggers,
 * deliveries and dropped pending interrupts, every INTx line's level, every direct mapping and
 * doorbell — so that invariants can be checked against what the guest was allowed to cause.
 *
 * The guest side does not go through the sim's asynchronous scripted guest: {@link FuzzGuest}
 * (in `guest.ts`) issues accesses synchronously, as a vCPU exit would, straight into the sink
 * the core attached.
 */
import type {
  AddressRange,
  Backend,
  BackendCapabilities,
  DirectMapping,
  DirtyLog,
  Doorbell,
  DoorbellHandler,
  EventChannelRoute,
  GuestMemory,
  IoClaim,
  IoEventSpec,
  IoRequestSink,
  LineIrq,
  LineTarget,
  LineTrigger,
  MemoryAccess,
  MemoryView,
  MsiMessage,
  MsiRoute,
  PageTrack,
  PciAddress,
  PinnedRange,
  RamRegion,
  RangeSet,
  SharedMemory,
  TrackedWriteHandler,
} from '@vmed/core';
import { SimBackend, type SimResources } from '../sim/backend.js';
import type { SimBackendOptions } from '../sim/options.js';

/** The kinds of guest memory access a device model can make through the core. */
export type DmaKind = 'read' | 'write' | 'view' | 'pin';

/** What the instrumented backend reports to the session. */
export interface BackendObserver {
  /** The core is about to touch guest memory for a device; called before the access. */
  dma(kind: DmaKind, address: bigint, length: number, access: MemoryAccess | undefined): void;
  /** The access above was carried out (not refused). */
  dmaDone(kind: DmaKind, address: bigint, length: number): void;
  /** An MSI left a route for the guest. */
  delivered(message: MsiMessage): void;
  /** A route that still held a pending interrupt was disposed. */
  droppedPending(message: MsiMessage | undefined): void;
}

/** A guest-visible direct mapping (the guest reads and writes its memory without exits). */
export interface DirectWindow {
  readonly range: AddressRange;
  readonly bytes: Uint8Array;
}

/** A registered doorbell, as the fuzz guest must ring it. */
export interface DoorbellWindow {
  readonly spec: IoEventSpec;
  readonly handler: DoorbellHandler;
}

class ObservedRoute implements MsiRoute {
  constructor(
    private readonly inner: MsiRoute,
    private readonly observer: BackendObserver,
    private readonly live: Set<ObservedRoute>,
  ) {
    live.add(this);
  }

  get id(): number {
    return this.inner.id;
  }
  get masked(): boolean {
    return this.inner.masked;
  }
  get pending(): boolean {
    return this.inner.pending;
  }
  get disposed(): boolean {
    return this.inner.disposed;
  }
  get message(): MsiMessage | undefined {
    return this.inner.message;
  }

  setMsi(message: MsiMessage): void {
    this.watch(() => this.inner.setMsi(message));
  }

  mask(): void {
    this.inner.mask();
  }

  unmask(): void {
    this.watch(() => this.inner.unmask());
  }

  trigger(): void {
    // The contract: delivered now unless masked or without a message, else left pending.
    const deliverable = !this.inner.masked && this.inner.message !== undefined;
    const message = this.inner.message;
    this.inner.trigger();
    if (deliverable && message !== undefined) this.observer.delivered(message);
  }

  dispose(): void {
    if (this.inner.disposed) return;
    if (this.inner.pending) this.observer.droppedPending(this.inner.message);
    this.live.delete(this);
    this.inner.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Runs a step that may release a pending interrupt; reports the delivery if it did. */
  private watch(step: () => void): void {
    const wasPending = this.inner.pending;
    step();
    const message = this.inner.message;
    if (wasPending && !this.inner.pending && message !== undefined) this.observer.delivered(message);
  }
}

class ObservedMemory implements GuestMemory {
  constructor(
    private readonly inner: GuestMemory,
    private readonly observer: BackendObserver,
  ) {}

  get ram(): RangeSet<RamRegion> {
    return this.inner.ram;
  }

  read(address: bigint, dst: Uint8Array): void {
    this.observer.dma('read', address, dst.length, undefined);
    this.inner.read(address, dst);
    this.observer.dmaDone('read', address, dst.length);
  }

  write(address: bigint, src: Uint8Array): void {
    this.observer.dma('write', address, src.length, undefined);
    this.inner.write(address, src);
    this.observer.dmaDone('write', address, src.length);
  }

  view(address: bigint, length: number, access: MemoryAccess): MemoryView {
    this.observer.dma('view', address, length, access);
    const view = this.inner.view(address, length, access);
    this.observer.dmaDone('view', address, length);
    return view;
  }

  pin(address: bigint, length: number): PinnedRange {
    this.observer.dma('pin', address, length, undefined);
    const pin = this.inner.pin(address, length);
    this.observer.dmaDone('pin', address, length);
    return pin;
  }
}

/** `sim`, watched. */
export class InstrumentedBackend implements Backend {
  readonly inner: SimBackend;
  readonly capabilities: BackendCapabilities;
  readonly memory: GuestMemory;
  readonly dirty: DirtyLog;
  /** The sink the core attached: where the fuzz guest sends its accesses. */
  sink: IoRequestSink | undefined;
  /** Live direct mappings, for the guest's direct accesses. */
  readonly directs = new Map<DirectMapping, DirectWindow>();
  /** Live doorbells, for the guest to ring. */
  readonly doorbells = new Map<Doorbell, DoorbellWindow>();
  /** Live INTx/GSI lines. */
  readonly lines = new Set<LineIrq>();
  readonly routes = new Set<ObservedRoute>();

  constructor(
    options: SimBackendOptions,
    private readonly observer: BackendObserver,
  ) {
    this.inner = new SimBackend(options);
    this.capabilities = this.inner.capabilities;
    this.memory = new ObservedMemory(this.inner.memory, observer);
    this.dirty = this.inner.dirty;
  }

  get closed(): boolean {
    return this.inner.closed;
  }

  attach(sink: IoRequestSink): void {
    this.inner.attach(sink);
    this.sink = sink;
  }

  claimIo(space: 'mmio' | 'pio', range: AddressRange): IoClaim {
    return this.inner.claimIo(space, range);
  }

  claimPciFunction(device: PciAddress): IoClaim {
    return this.inner.claimPciFunction(device);
  }

  allocateSharedMemory(size: number): SharedMemory {
    return this.inner.allocateSharedMemory(size);
  }

  mapDirect(range: AddressRange, memory: SharedMemory): DirectMapping {
    const inner = this.inner.mapDirect(range, memory);
    const window: DirectWindow = { range, bytes: memory.bytes };
    const mapping: DirectMapping = {
      range,
      get disposed() {
        return inner.disposed;
      },
      dispose: () => {
        this.directs.delete(mapping);
        inner.dispose();
      },
      [Symbol.dispose]() {
        this.dispose();
      },
    };
    this.directs.set(mapping, window);
    return mapping;
  }

  createMsiRoute(): MsiRoute {
    return new ObservedRoute(this.inner.createMsiRoute(), this.observer, this.routes);
  }

  signalMsi(message: MsiMessage): void {
    this.inner.signalMsi(message);
    this.observer.delivered(message);
  }

  createLineIrq(target: LineTarget, trigger: LineTrigger): LineIrq {
    const line = this.inner.createLineIrq(target, trigger);
    this.lines.add(line);
    const lines = this.lines;
    return {
      target: line.target,
      trigger: line.trigger,
      get asserted() {
        return line.asserted;
      },
      get disposed() {
        return line.disposed;
      },
      get resamples() {
        return line.resamples;
      },
      assert: () => line.assert(),
      deassert: () => line.deassert(),
      dispose() {
        lines.delete(line);
        line.dispose();
      },
      [Symbol.dispose]() {
        this.dispose();
      },
    };
  }

  createEventChannel(): EventChannelRoute {
    return this.inner.createEventChannel();
  }

  registerIoEvent(spec: IoEventSpec, handler: DoorbellHandler): Doorbell {
    const inner = this.inner.registerIoEvent(spec, handler);
    const doorbells = this.doorbells;
    const bell: Doorbell = {
      spec: inner.spec,
      get disposed() {
        return inner.disposed;
      },
      get rings() {
        return inner.rings;
      },
      dispose() {
        doorbells.delete(bell);
        inner.dispose();
      },
      [Symbol.dispose]() {
        this.dispose();
      },
    };
    doorbells.set(bell, { spec: inner.spec, handler });
    return bell;
  }

  trackWrites(range: AddressRange, handler: TrackedWriteHandler): PageTrack {
    return this.inner.trackWrites(range, handler);
  }

  resources(): SimResources {
    return this.inner.resources();
  }

  async close(): Promise<void> {
    this.directs.clear();
    this.doorbells.clear();
    this.lines.clear();
    this.routes.clear();
    await this.inner.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * The fuzzer's small RAM map: two guest-adjacent regions, a hole, a third region, and RAM
 * right below the PCI hole's MMIO window would be too large for a fresh session per program,
 * so the high region sits at 1 MiB. Small RAM keeps a session cheap to make.
 */
export const FUZZ_RAM: SimBackendOptions['ram'] = [
  { base: 0x0n, length: 0x1_0000n, name: 'low' },
  { base: 0x1_0000n, length: 0x1_0000n, name: 'mid' },
  // hole [0x2_0000, 0x10_0000)
  { base: 0x10_0000n, length: 0x1_0000n, name: 'high' },
];

/** Scratch inside {@link FUZZ_RAM} (the sim insists on one). */
export const FUZZ_SCRATCH = { address: 0x8000n, length: 0x1_0000 };
