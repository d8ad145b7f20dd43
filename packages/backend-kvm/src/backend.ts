/**
 * `KvmBackend`: the backend contract on Linux KVM, and `createBackend`, the factory the core's
 * `createMediator` loads with `import('@vmed/backend-kvm')`.
 *
 * The parts, each in its own folder: `ioctls/` (one class per kernel object), `memory/` (RAM,
 * slots, views, pins), `interrupts/` (GSI routing, MSI routes, lines), `doorbells/`
 * (ioeventfd), `poller/` (the thread that waits on eventfds), `vcpu/` (KVM_RUN loops, inline
 * and worker), `tracking/` (dirty log, write-protect tracking), `regions/` (claims, shared
 * memory, direct regions), `guest/` (the standalone guest controller).
 *
 * Threads: every method is called on the I/O context (the thread that called `attach`), and
 * every sink call, doorbell handler and tracked-write handler runs there. vCPU threads and the
 * poller thread only touch shared memory, eventfds and their own vCPU. When the I/O context
 * is Node's main thread, it hears doorbells, resamples and forwarded exits through libuv
 * handles on its own loop (`poller/uv-loop.ts`), one thread wake-up each; on a worker thread,
 * through the poller thread and `Atomics.waitAsync`.
 */
import {
  ExistsError,
  InvalidError,
  UnsupportedError,
  addressRange,
  formatRange,
  rangesOverlap,
  StateError,
  type AddressRange,
  type Backend,
  type BackendCapabilities,
  type BackendResources,
  type DirectMapping,
  type Doorbell,
  type DoorbellHandler,
  type EventChannelRoute,
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
import {
  KVM_CAP_IOEVENTFD,
  KVM_CAP_IRQFD,
  KVM_CAP_IRQFD_RESAMPLE,
  KVM_CAP_IRQ_ROUTING,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_SET_IDENTITY_MAP_ADDR,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_SIGNAL_MSI,
  KVM_IOAPIC_NUM_PINS,
} from './abi/kvm.js';
import { KvmDoorbell, checkDoorbellOverlap } from './doorbells/doorbell.js';
import { assertOpen, checkBigInt, checkInt } from './errors.js';
import { GuestController } from './guest/controller.js';
import { GsiRoutingTable, defaultIrqchipRoutes } from './interrupts/gsi-routing.js';
import { KvmLineIrq } from './interrupts/line-irq.js';
import { KvmMsiRoute } from './interrupts/msi-route.js';
import { KvmSystem } from './ioctls/system.js';
import type { KvmVcpu } from './ioctls/vcpu.js';
import type { KvmVm } from './ioctls/vm.js';
import { GuardedRam } from './memory/guarded-ram.js';
import { KvmGuestMemory } from './memory/guest-memory.js';
import { HostRam } from './memory/host-ram.js';
import { SlotTable } from './memory/slots.js';
import {
  defaultRamLayout,
  parseOptions,
  type AdoptOptions,
  type KvmBackendOptions,
  type StandaloneOptions,
} from './options.js';
import { DEFAULT_QUANTUM_MS, acquirePoller, releasePoller, type EventfdPoller } from './poller/eventfd-poller.js';
import { KvmDirectMapping } from './regions/direct-mapping.js';
import { IoClaims } from './regions/io-claims.js';
import { KvmSharedMemory } from './regions/shared-memory.js';
import { kickSignal } from './threads/kick-signal.js';
import { KvmDirtyLog } from './tracking/dirty-log.js';
import { PageTracker } from './tracking/page-tracker.js';
import { ExitServer } from './vcpu/exit-server.js';
import { KIND_MMIO, KIND_PIO, Mailbox } from './vcpu/mailbox.js';

/** Where vmed puts the three pages VMX needs for real mode, when they are free of RAM (as QEMU does). */
const TSS_ADDRESS = 0xfffb_d000;
const IDENTITY_MAP_ADDRESS = 0xfffb_c000n;
/** Default slot ids vmed uses in an adopted VM (the top of KVM's 32764). */
const ADOPT_SLOTS = { first: 32252, count: 512 } as const;

interface Parts {
  readonly options: KvmBackendOptions;
  readonly vm: KvmVm;
  readonly ramMapping: GuardedRam | undefined;
  readonly hostRam: HostRam;
  readonly slots: SlotTable;
  readonly routing: GsiRoutingTable | undefined;
  readonly vcpus: readonly KvmVcpu[];
  readonly caps: {
    readonly irqfd: boolean;
    readonly ioeventfd: boolean;
    readonly resample: boolean;
    readonly signalMsi: boolean;
    readonly readonlyMem: boolean;
  };
}

/** {@link BackendResources}, and what only the KVM backend holds. */
export interface KvmBackendResources extends BackendResources {
  /**
   * libuv poll handles on Node's main loop watching this session's doorbell and resample
   * eventfds (when the I/O context is the main thread; 0 on a worker, where the poller thread
   * watches them). Present while the session is open: a closed session reports the
   * contract's fields only, all zero.
   */
  readonly pollHandles?: number;
}

/** The KVM backend. Made by {@link createBackend}. */
export class KvmBackend implements Backend {
  readonly capabilities: BackendCapabilities;
  readonly memory: KvmGuestMemory;
  readonly dirty: KvmDirtyLog;
  /** `standalone` or `adopt`. */
  readonly mode: 'standalone' | 'adopt';
  readonly #vm: KvmVm;
  readonly #ramMapping: GuardedRam | undefined;
  readonly #hostRam: HostRam;
  readonly #slots: SlotTable;
  readonly #routing: GsiRoutingTable | undefined;
  readonly #vcpus: readonly KvmVcpu[];
  readonly #guest: GuestController | undefined;
  readonly #server: ExitServer;
  readonly #tracker: PageTracker;
  readonly #claims = new IoClaims();
  readonly #msiRoutes = new Set<KvmMsiRoute>();
  readonly #lines = new Set<KvmLineIrq>();
  readonly #doorbells = new Set<KvmDoorbell>();
  readonly #shared = new Set<KvmSharedMemory>();
  readonly #direct = new Set<KvmDirectMapping>();
  readonly #caps: Parts['caps'];
  readonly #onError: (error: unknown) => void;
  #sink: IoRequestSink | undefined;
  /**
   * Started with the session, not on first use: the thread that kicks an inline vCPU (and,
   * off the main thread, waits on doorbell and resample eventfds) is part of what a session
   * holds, so `resources()` is the same before an object is made and after it is disposed.
   */
  readonly #poller: EventfdPoller;
  readonly #stopListening: () => void;
  #closed = false;
  #pollerReleased = false;
  #closing: Promise<void> | undefined;

  private constructor(parts: Parts, poller: EventfdPoller) {
    this.#poller = poller;
    this.#stopListening = poller.addErrorListener((error) => this.#onError(error));
    this.mode = parts.options.mode;
    this.#vm = parts.vm;
    this.#ramMapping = parts.ramMapping;
    this.#hostRam = parts.hostRam;
    this.#slots = parts.slots;
    this.#routing = parts.routing;
    this.#vcpus = parts.vcpus;
    this.#caps = parts.caps;
    this.#onError = parts.options.onError ?? rethrowLater;
    this.memory = new KvmGuestMemory(parts.hostRam);
    const adoptedWithoutSlots = parts.options.mode === 'adopt' && parts.options.memory.some((m) => m.slot === undefined);
    this.dirty = new KvmDirtyLog(
      parts.hostRam,
      parts.slots,
      () => this.#closed,
      adoptedWithoutSlots ? 'an adopted VM needs the slot of every memory region for dirty logging' : undefined,
    );
    this.#tracker = new PageTracker(parts.hostRam, parts.slots, () => this.#quiesce(), this.#onError);
    this.#server = new ExitServer({ tracker: this.#tracker, onError: this.#onError });
    const irqchip = parts.options.irqchip ?? 'kernel';
    this.capabilities = Object.freeze({
      hypervisor: 'kvm',
      pciConfig: 'device-model',
      directRegions: true,
      maxMsiRoutes: parts.routing !== undefined && parts.caps.irqfd ? parts.routing.capacity : 0,
      signalMsi: parts.caps.signalMsi && irqchip !== 'none',
      lineIrq: irqchip === 'kernel' && parts.caps.irqfd ? { edge: true, level: parts.caps.resample, resample: parts.caps.resample } : false,
      doorbells: 'kernel',
      doorbellDatamatch: true,
      dirtyTracking: adoptedWithoutSlots ? false : 'pull',
      pageTracking: parts.options.mode === 'standalone' && parts.caps.readonlyMem,
      pinning: true,
      eventChannels: false,
    } satisfies BackendCapabilities);
    this.#guest =
      parts.options.mode === 'standalone'
        ? new GuestController(parts.vcpus, {
            memory: this.memory,
            server: this.#server,
            signal: () => kickSignal(),
            poller: () => this.#usablePoller(),
            quantumMs: parts.options.quantumMs ?? DEFAULT_QUANTUM_MS,
            onError: this.#onError,
            isClosed: () => this.#closed,
          })
        : undefined;
  }

  /** Creates the VM (standalone) or adopts one; see {@link KvmBackendOptions}. */
  static async create(options: KvmBackendOptions): Promise<KvmBackend> {
    const parts = options.mode === 'standalone' ? buildStandalone(options) : buildAdopt(options);
    let poller: EventfdPoller;
    try {
      poller = acquirePoller(kickSignal());
    } catch (error) {
      parts.vm.close();
      parts.ramMapping?.close();
      throw error;
    }
    const backend = new KvmBackend(parts, poller);
    // The session is handed out with its poller thread up: `resources()` and the process's
    // fd and thread counts then hold still until the owner makes or disposes something.
    await poller.ready;
    return backend;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The standalone guest: load an image, set entries, run, pause, resume, stop.
   * @throws `Unsupported` in adopt mode (the embedding VMM runs its own vCPUs).
   */
  get guest(): GuestController {
    if (this.#guest === undefined) throw new UnsupportedError('kvm.guest', 'an adopted VM runs its own vCPUs');
    return this.#guest;
  }

  attach(sink: IoRequestSink): void {
    assertOpen(this.#closed, 'kvm.attach');
    if (this.#sink !== undefined) throw new StateError('kvm.attach', 'a sink is already attached');
    if (typeof sink?.read !== 'function' || typeof sink.write !== 'function') throw new InvalidError('kvm.attach', 'sink must have read and write');
    this.#sink = sink;
    this.#server.sink = sink;
  }

  claimIo(space: 'mmio' | 'pio', range: AddressRange): IoClaim {
    assertOpen(this.#closed, 'kvm.claimIo');
    return this.#claims.claim(space, range, (r) => this.#occupant(r));
  }

  claimPciFunction(device: PciAddress): IoClaim {
    assertOpen(this.#closed, 'kvm.claimPciFunction');
    throw new UnsupportedError('kvm.claimPciFunction', `KVM does not decode PCI config cycles (${device.bus}:${device.device}.${device.function}); claim 0xCF8-0xCFF and ECAM instead`);
  }

  allocateSharedMemory(size: number): SharedMemory {
    assertOpen(this.#closed, 'kvm.allocateSharedMemory');
    const memory = KvmSharedMemory.allocate(size, (m) => this.#shared.delete(m));
    this.#shared.add(memory);
    return memory;
  }

  mapDirect(range: AddressRange, memory: SharedMemory): DirectMapping {
    const op = 'kvm.mapDirect';
    assertOpen(this.#closed, op);
    if (!(memory instanceof KvmSharedMemory)) throw new InvalidError(op, 'memory was not allocated by allocateSharedMemory');
    assertOpen(memory.disposed, op);
    if (!this.#shared.has(memory)) throw new InvalidError(op, 'memory was allocated by another backend');
    const checked = addressRange(range.base, range.length, op);
    if (checked.base % 4096n !== 0n || checked.length % 4096n !== 0n) throw new InvalidError(op, `${formatRange(checked)} is not page aligned`);
    if (checked.length > BigInt(memory.mappedSize)) throw new InvalidError(op, `${formatRange(checked)} is larger than the ${memory.size}-byte shared memory`);
    const occupant = this.#occupant(checked);
    if (occupant !== undefined) throw new ExistsError(op, `${formatRange(checked)} overlaps ${occupant}`);
    const mapping = new KvmDirectMapping(checked, memory, this.#slots, (m) => this.#direct.delete(m));
    this.#direct.add(mapping);
    return mapping;
  }

  createMsiRoute(): MsiRoute {
    const op = 'kvm.createMsiRoute';
    assertOpen(this.#closed, op);
    if (this.#routing === undefined || this.capabilities.maxMsiRoutes === 0) throw new UnsupportedError(op, 'MSI routes need an in-kernel irqchip with irqfd and GSI routing');
    const route = KvmMsiRoute.create(this.#vm, this.#routing, (r) => this.#msiRoutes.delete(r));
    this.#msiRoutes.add(route);
    return route;
  }

  signalMsi(message: MsiMessage): void {
    const op = 'kvm.signalMsi';
    assertOpen(this.#closed, op);
    if (!this.capabilities.signalMsi) throw new UnsupportedError(op, 'KVM_SIGNAL_MSI needs an in-kernel LAPIC');
    this.#vm.signalMsi(message.address, message.data);
  }

  createLineIrq(target: LineTarget, trigger: LineTrigger): LineIrq {
    const op = 'kvm.createLineIrq';
    assertOpen(this.#closed, op);
    const lines = this.capabilities.lineIrq;
    if (lines === false) throw new UnsupportedError(op, 'line interrupts need the in-kernel PIC/IOAPIC (irqchip: kernel)');
    if (trigger !== 'edge' && trigger !== 'level') throw new InvalidError(op, `trigger ${String(trigger)} is not edge or level`);
    if (trigger === 'level' && !lines.level) throw new UnsupportedError(op, 'level lines need KVM_CAP_IRQFD_RESAMPLE');
    if (target?.kind !== 'gsi' && target?.kind !== 'intx') throw new InvalidError(op, 'target kind must be gsi or intx');
    checkInt(target.line, 0, KVM_IOAPIC_NUM_PINS - 1, op, 'line');
    if (target.kind === 'intx') {
      // KVM routes INTx by the GSI the platform gave it; the function is checked all the same.
      checkInt(target.pin, 1, 4, op, 'INTx pin');
      checkInt(target.device.segment ?? 0, 0, 0xffff, op, 'segment');
      checkInt(target.device.bus, 0, 0xff, op, 'bus');
      checkInt(target.device.device, 0, 0x1f, op, 'device');
      checkInt(target.device.function, 0, 7, op, 'function');
    }
    for (const l of this.#lines) {
      if (l.target.line === target.line) throw new ExistsError(op, `GSI ${target.line} already has a line object`);
    }
    const line = KvmLineIrq.create(this.#vm, target, trigger, trigger === 'level' ? this.#usablePoller() : undefined, (l) => this.#lines.delete(l));
    this.#lines.add(line);
    return line;
  }

  createEventChannel(): EventChannelRoute {
    assertOpen(this.#closed, 'kvm.createEventChannel');
    throw new UnsupportedError('kvm.createEventChannel', 'event channels exist only on Xen');
  }

  registerIoEvent(spec: IoEventSpec, handler: DoorbellHandler): Doorbell {
    const op = 'kvm.registerIoEvent';
    assertOpen(this.#closed, op);
    if (!this.#caps.ioeventfd) throw new UnsupportedError(op, 'KVM_CAP_IOEVENTFD is missing');
    checkDoorbellOverlap(spec, this.#doorbells);
    const doorbell = KvmDoorbell.create(this.#vm, this.#usablePoller(), spec, handler, this.#onError, (d) => this.#doorbells.delete(d));
    this.#doorbells.add(doorbell);
    return doorbell;
  }

  trackWrites(range: AddressRange, handler: TrackedWriteHandler): PageTrack {
    const op = 'kvm.trackWrites';
    assertOpen(this.#closed, op);
    if (!this.capabilities.pageTracking) {
      throw new UnsupportedError(op, this.mode === 'adopt' ? 'an adopted VM owns its RAM slots' : 'KVM_CAP_READONLY_MEM is missing');
    }
    return this.#tracker.track(addressRange(range.base, range.length, op), handler);
  }

  /**
   * Adopt mode: serves an MMIO exit the embedding VMM got from its own `KVM_RUN`. `data` is
   * the exit's `mmio.data` (1–8 bytes): written from for a write, filled for a read.
   */
  forwardMmio(address: bigint, data: Uint8Array, isWrite: boolean): void {
    const op = 'kvm.forwardMmio';
    assertOpen(this.#closed, op);
    checkBigInt(address, 0n, (1n << 64n) - 1n, op, 'address');
    checkInt(data.length, 1, 8, op, 'length');
    this.#forward(KIND_MMIO, address, data.length, 1, data, isWrite);
  }

  /**
   * Adopt mode: serves a port exit; `data` holds `count * size` bytes (string I/O included):
   * written from for `out`, filled for `in`.
   */
  forwardPio(port: number, size: 1 | 2 | 4, data: Uint8Array, isWrite: boolean): void {
    const op = 'kvm.forwardPio';
    assertOpen(this.#closed, op);
    checkInt(port, 0, 0xffff, op, 'port');
    if (size !== 1 && size !== 2 && size !== 4) throw new InvalidError(op, `size ${String(size)} is not 1, 2 or 4`);
    if (data.length === 0 || data.length % size !== 0 || data.length > 4096) throw new InvalidError(op, `data length ${data.length} is not a multiple of ${size} up to 4096`);
    this.#forward(KIND_PIO, BigInt(port), size, data.length / size, data, isWrite);
  }

  /**
   * Exact counts of what this session holds. The I/O thread's poller (one thread, an epoll
   * set and a control eventfd, shared by the sessions of that thread) counts in each session
   * holding it; so do the libuv poll handles of its doorbells and level lines
   * (`pollHandles`). Callable after close: all zeros.
   */
  resources(): KvmBackendResources {
    if (this.#closed) {
      return { fds: 0, mappings: 0, msiRoutes: 0, lineIrqs: 0, doorbells: 0, claims: 0, pins: 0, pageTracks: 0, workers: 0 };
    }
    let pollHandles = 0;
    for (const d of this.#doorbells) pollHandles += d.pollHandles;
    for (const l of this.#lines) pollHandles += l.pollHandles;
    const openVcpus = this.#vcpus.filter((v) => !v.closed).length;
    let fds = (this.#vm.owned ? 1 : 0) + openVcpus + (this.#ramMapping === undefined ? 0 : 1) + this.#shared.size + this.#doorbells.size;
    for (const r of this.#msiRoutes) fds += r.fds;
    for (const l of this.#lines) fds += l.fds;
    if (!this.#pollerReleased) fds += this.#poller.fds;
    return {
      fds,
      mappings: (this.#ramMapping === undefined ? 0 : 1) + openVcpus + this.#shared.size,
      msiRoutes: this.#msiRoutes.size,
      lineIrqs: this.#lines.size,
      doorbells: this.#doorbells.size,
      claims: this.#claims.count,
      pins: this.memory.pinCount,
      pageTracks: this.#tracker.count,
      workers: (this.#guest?.workerCount ?? 0) + (this.#pollerReleased ? 0 : 1),
      pollHandles,
    };
  }

  /**
   * Releases everything: the vCPUs are stopped first (their threads joined), then, in the
   * contract's order, doorbells and claims, routes and lines, tracking, direct mappings,
   * shared memory and pins, the poller thread, and last the vCPU and VM fds (an adopted VM fd
   * is left open, its routing table back to the VMM's routes) and the RAM mapping.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = (fn: () => void): void => {
      try {
        fn();
      } catch (error) {
        errors.push(error);
      }
    };
    if (this.#guest !== undefined) await this.#guest.stop();
    this.#closed = true;
    for (const d of [...this.#doorbells]) attempt(() => d.dispose());
    attempt(() => this.#claims.releaseAll());
    const release = (): void => {
      for (const r of [...this.#msiRoutes]) attempt(() => r.dispose());
    };
    if (this.#routing !== undefined) attempt(() => (this.#routing as GsiRoutingTable).batch(release));
    else release();
    for (const l of [...this.#lines]) attempt(() => l.dispose());
    attempt(() => this.#tracker.releaseAll());
    if (this.#slots.dirtyLogging) attempt(() => this.#slots.setDirtyLogging(false));
    for (const m of [...this.#direct]) attempt(() => m.dispose());
    for (const s of [...this.#shared]) attempt(() => s.dispose());
    attempt(() => this.memory.releasePinsAndViews());
    this.#stopListening();
    this.#pollerReleased = true;
    await releasePoller(this.#poller);
    if (!this.#vm.owned) attempt(() => this.#slots.releaseAll());
    attempt(() => this.#vm.close());
    attempt(() => this.memory.close());
    this.#ramMapping?.close();
    if (errors.length > 0) this.#onError(new AggregateError(errors, 'kvm.close: some resources failed to release cleanly'));
  }

  #usablePoller(): EventfdPoller {
    assertOpen(this.#closed, 'kvm.poller');
    return this.#poller;
  }

  #quiesce(): () => void {
    return this.#guest?.quiesce() ?? (() => {});
  }

  /** What covers `range` in guest-physical space besides claims: RAM or a direct region. */
  #occupant(range: AddressRange): string | undefined {
    for (const r of this.#hostRam.ram.ranges) if (rangesOverlap(r, range)) return `guest RAM ${formatRange(r)}`;
    for (const m of this.#direct) if (rangesOverlap(m.range, range)) return `the direct region ${formatRange(m.range)}`;
    return undefined;
  }

  #forward(kind: number, address: bigint, size: number, count: number, data: Uint8Array, isWrite: boolean): void {
    const mailbox = (this.#forwardMailbox ??= Mailbox.local());
    mailbox.setRequest(kind, Number(address & 0xffff_ffffn), Number(address >> 32n), size, isWrite, count);
    if (isWrite) mailbox.data.set(data);
    this.#server.serve(mailbox, -1);
    if (!isWrite) data.set(mailbox.data.subarray(0, data.length));
  }

  #forwardMailbox: Mailbox | undefined;
}

/** No `onError` configured: a failure surfaces like an unhandled 'error' event. */
function rethrowLater(error: unknown): void {
  setImmediate(() => {
    throw error;
  });
}

function buildStandalone(options: StandaloneOptions): Parts {
  const op = 'kvm.createBackend';
  const layout = options.ramLayout ?? defaultRamLayout(options.memoryMiB);
  const cleanup: Array<() => void> = [];
  const system = KvmSystem.open(options.device);
  try {
    const vm = system.createVm();
    cleanup.push(() => vm.close());
    const caps = capabilitiesOf(vm);
    const irqchip = options.irqchip ?? 'kernel';
    // Sorted, validated once; each region lands at the next offset of one memfd, each run of
    // guest-adjacent regions between PROT_NONE guard pages (see memory/guarded-ram.ts).
    const sorted = [...layout].sort((a, b) => (BigInt(a.base) < BigInt(b.base) ? -1 : 1));
    const ramMapping = GuardedRam.create(
      'vmed-ram',
      sorted.map((r) => ({ base: BigInt(r.base), length: BigInt(r.size), ...(r.name === undefined ? {} : { name: r.name }) })),
      op,
    );
    cleanup.push(() => ramMapping.close());
    const hostRam = new HostRam(ramMapping.regions, op, false);
    const free = (base: bigint, length: bigint): boolean => !hostRam.ram.ranges.some((r) => rangesOverlap(r, { base: base as never, length }));
    if (vm.checkExtension(KVM_CAP_SET_TSS_ADDR) > 0 && free(BigInt(TSS_ADDRESS), 0x3000n)) vm.setTssAddress(TSS_ADDRESS);
    if (vm.checkExtension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 && free(IDENTITY_MAP_ADDRESS, 0x1000n)) vm.setIdentityMapAddress(IDENTITY_MAP_ADDRESS);
    if (irqchip === 'kernel') vm.createIrqchip();
    const maxSlots = vm.checkExtension(KVM_CAP_NR_MEMSLOTS);
    const slots = new SlotTable(vm, { first: 0, count: maxSlots > 0 ? maxSlots : 32 });
    for (const region of hostRam.ram.ranges) slots.addRam(region);
    const maxRoutes = vm.checkExtension(KVM_CAP_IRQ_ROUTING);
    const routing =
      irqchip === 'kernel' && maxRoutes > 0
        ? new GsiRoutingTable(vm, { base: defaultIrqchipRoutes(), firstMsiGsi: KVM_IOAPIC_NUM_PINS, maxEntries: maxRoutes })
        : undefined;
    const vcpus: KvmVcpu[] = [];
    for (let i = 0; i < options.vcpus; i++) vcpus.push(vm.createVcpu(i));
    system.close();
    return { options, vm, ramMapping, hostRam, slots, routing, vcpus, caps };
  } catch (error) {
    for (const undo of cleanup.reverse()) undo();
    system.close();
    throw error;
  }
}

function buildAdopt(options: AdoptOptions): Parts {
  const op = 'kvm.createBackend';
  const system = KvmSystem.open(options.device);
  let vm: KvmVm;
  try {
    vm = system.adoptVm(options.vmFd);
  } finally {
    system.close();
  }
  const caps = capabilitiesOf(vm);
  const hostRam = new HostRam(
    options.memory.map((m) => ({
      base: BigInt(m.guestAddress),
      length: BigInt(m.size),
      hostAddress: m.hostAddress,
      ...(m.name === undefined ? {} : { name: m.name }),
      ...(m.slot === undefined ? {} : { vmmSlot: m.slot }),
    })),
    op,
    true,
  );
  const slotRange = options.slotRange ?? ADOPT_SLOTS;
  const slots = new SlotTable(vm, slotRange);
  for (const region of hostRam.ram.ranges) {
    if (region.vmmSlot === undefined) continue;
    if (region.vmmSlot >= slotRange.first && region.vmmSlot < slotRange.first + slotRange.count) {
      throw new InvalidError(op, `memory slot ${region.vmmSlot} is inside slotRange, which is vmed's`);
    }
    const flags = options.memory.find((m) => BigInt(m.guestAddress) === region.base)?.flags ?? 0;
    slots.adoptRam(region, region.vmmSlot, flags);
  }
  const irqchip = options.irqchip ?? 'kernel';
  const maxRoutes = vm.checkExtension(KVM_CAP_IRQ_ROUTING);
  const base = options.gsiRoutes ?? (irqchip === 'kernel' ? defaultIrqchipRoutes() : []);
  const routing =
    irqchip !== 'none' && maxRoutes > 0
      ? new GsiRoutingTable(vm, { base, firstMsiGsi: options.firstMsiGsi ?? KVM_IOAPIC_NUM_PINS, maxEntries: maxRoutes })
      : undefined;
  return { options, vm, ramMapping: undefined, hostRam, slots, routing, vcpus: [], caps };
}

function capabilitiesOf(vm: KvmVm): Parts['caps'] {
  return {
    irqfd: vm.checkExtension(KVM_CAP_IRQFD) > 0,
    ioeventfd: vm.checkExtension(KVM_CAP_IOEVENTFD) > 0,
    resample: vm.checkExtension(KVM_CAP_IRQFD_RESAMPLE) > 0,
    signalMsi: vm.checkExtension(KVM_CAP_SIGNAL_MSI) > 0,
    readonlyMem: vm.checkExtension(KVM_CAP_READONLY_MEM) > 0,
  };
}

/**
 * The backend factory (`BackendFactory`): validates `options` (the mediator config's `kvm`
 * section, see {@link KvmBackendOptions}) and opens a session.
 * @throws `Invalid` for bad options; `Unsupported` when `/dev/kvm` is missing.
 */
export async function createBackend(options: Record<string, unknown>): Promise<KvmBackend> {
  return KvmBackend.create(parseOptions(options));
}
