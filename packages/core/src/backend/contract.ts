/**
 * The backend contract: the one seam between core and a hypervisor.
 *
 * A backend is a session on one guest (a VM fd on KVM, a domid on Xen, an in-process guest on
 * `sim`). It is made of small capability-scoped parts — guest memory, I/O claims, interrupts,
 * doorbells, dirty tracking, page tracking — and states in {@link BackendCapabilities} which it
 * has. Calling an absent capability throws `UnsupportedError`; it is never a silent no-op.
 *
 * Every method of a disposed backend, and of any object it handed out, throws `BadHandle` —
 * except {@link Backend.resources}, which stays callable so a leak check can see that a closed
 * session holds nothing.
 * Disposing the backend releases everything it handed out, in a known order: doorbells and
 * claims, then routes and lines, then tracking, then mappings and pins, then the hypervisor
 * handle (KVM: VM fd; Xen: ioreq server, event channels, library handles).
 */
import type { AddressRange } from '../address.js';
import type { EventChannelRoute, LineIrq, LineTarget, LineTrigger, MsiMessage, MsiRoute } from './interrupts.js';
import type { IoRequestSink, PciAddress } from './io.js';
import type { GuestMemory } from './memory.js';
import type { DirectMapping, Doorbell, DoorbellHandler, IoClaim, IoEventSpec, SharedMemory } from './regions.js';
import type { DirtyLog, PageTrack, TrackedWriteHandler } from './tracking.js';

/** What a backend can do. Read once; it does not change during a session. */
export interface BackendCapabilities {
  /** `"kvm"`, `"xen"`, `"sim"` or a third-party backend's name. */
  readonly hypervisor: string;
  /**
   * Who decodes PCI configuration cycles. `hypervisor`: the guest's 0xCF8/0xCFC (and ECAM)
   * accesses arrive as `pci` requests for claimed functions (Xen). `device-model`: they
   * arrive as port and MMIO accesses, and the core's host bridge decodes them (KVM, `sim`).
   */
  readonly pciConfig: 'hypervisor' | 'device-model';
  /**
   * Who answers for the guest's PCI host bridge when `pciConfig` is `hypervisor`: reads of the
   * 0xCF8 address register and function 00:00.0. `device-model`: the core's host bridge, whose
   * ports and function the core claims from the backend (Xen PVH: nothing emulates a chipset;
   * Xen latches writes to 0xCF8 to decode 0xCFC itself, but hands reads of 0xCF8 to whichever
   * IOREQ server claims the port, so Linux's type-1 probe fails without one). `platform`: the
   * guest's emulated chipset (Xen HVM: QEMU's, which the core must not shadow). Absent means
   * `platform`. Not read when `pciConfig` is `device-model`: the core's bridge serves it all.
   */
  readonly pciHostBridge?: 'device-model' | 'platform';
  /** Direct regions mapped into the guest without exits (KVM slots, `sim`); false on Xen. */
  readonly directRegions: boolean;
  /** Most MSI routes this session can hold at once (KVM: 4096 GSIs, fewer the irqchip's). */
  readonly maxMsiRoutes: number;
  /** `signalMsi` without a route (KVM `KVM_SIGNAL_MSI`, Xen `inject_msi`). */
  readonly signalMsi: boolean;
  /** Line interrupts: which triggers; `false` when the guest has no emulated PIC/IOAPIC (Xen PVH). */
  readonly lineIrq: false | { readonly edge: boolean; readonly level: boolean; readonly resample: boolean };
  /** Doorbells: `kernel` (KVM ioeventfd, no exit), `userspace` (Xen ioreq path, `sim`). */
  readonly doorbells: 'kernel' | 'userspace';
  /** Whether doorbells can match on data. */
  readonly doorbellDatamatch: boolean;
  /** Dirty tracking mode; `false` if the backend has none. */
  readonly dirtyTracking: 'pull' | 'push' | false;
  /** Write-protect tracking of guest pages. */
  readonly pageTracking: boolean;
  /** Whether {@link GuestMemory.pin} holds pages (KVM `mlock`, Xen mapping, `sim`). */
  readonly pinning: boolean;
  /** Interdomain event-channel routes (Xen only). */
  readonly eventChannels: boolean;
}

/** Counts of what a backend holds, for leak checks in tests. */
export interface BackendResources {
  /** Kernel file descriptors owned by the session (VM, vCPUs, eventfds, memfds, evtchn...). */
  readonly fds: number;
  /** Host mappings (RAM, views, foreign mappings, shared memory). */
  readonly mappings: number;
  readonly msiRoutes: number;
  readonly lineIrqs: number;
  readonly doorbells: number;
  readonly claims: number;
  readonly pins: number;
  readonly pageTracks: number;
  /** Worker threads the backend runs (vCPUs, pollers). */
  readonly workers: number;
}

/** One hypervisor session serving devices to one guest. */
export interface Backend extends AsyncDisposable {
  readonly capabilities: BackendCapabilities;
  readonly memory: GuestMemory;
  readonly closed: boolean;

  /**
   * Connects the core's dispatcher. Called once, before any claim; requests are delivered to
   * it on the thread that called `attach` (the I/O context).
   */
  attach(sink: IoRequestSink): void;

  /**
   * Traps guest accesses to `range` and delivers them to the sink. Overlapping an existing
   * claim is `Exists`; a zero-length range is `Invalid`. KVM: bookkeeping only (unbacked
   * addresses exit anyway); Xen: `map_io_range_to_ioreq_server`.
   */
  claimIo(space: 'mmio' | 'pio', range: AddressRange): IoClaim;

  /**
   * Claims a PCI function's configuration space so its config cycles arrive as `pci`
   * requests. Xen: `map_pcidev_to_ioreq_server`. Backends whose `pciConfig` is
   * `device-model` throw `Unsupported` (the core claims 0xCF8–0xCFF and ECAM instead).
   */
  claimPciFunction(device: PciAddress): IoClaim;

  /** Host memory for a direct region. */
  allocateSharedMemory(size: number): SharedMemory;

  /**
   * Maps `memory` into the guest at `range` so guest accesses do not exit. `Unsupported`
   * where `directRegions` is false. KVM: a memory slot over the memfd; `sim`: direct.
   */
  mapDirect(range: AddressRange, memory: SharedMemory): DirectMapping;

  /** A new MSI route, masked and without a message. More than `maxMsiRoutes` is `NoSpace`. */
  createMsiRoute(): MsiRoute;

  /** Delivers one MSI without a route. `Unsupported` where `signalMsi` is false. */
  signalMsi(message: MsiMessage): void;

  /** A wired line. `Unsupported` where `lineIrq` is false or lacks the trigger. */
  createLineIrq(target: LineTarget, trigger: LineTrigger): LineIrq;

  /** An interdomain event channel for a Xen-aware guest. `Unsupported` except on Xen. */
  createEventChannel(): EventChannelRoute;

  /** Registers a doorbell; overlapping an existing doorbell with the same match is `Exists`. */
  registerIoEvent(spec: IoEventSpec, handler: DoorbellHandler): Doorbell;

  /** Dirty tracking; every method throws `Unsupported` where `dirtyTracking` is false. */
  readonly dirty: DirtyLog;

  /** Write-protect tracking of a page-aligned RAM range. `Unsupported` where `pageTracking` is false. */
  trackWrites(range: AddressRange, handler: TrackedWriteHandler): PageTrack;

  /** What the session holds right now; callable after `close()` (all zeros after a clean close). */
  resources(): BackendResources;

  /** Releases everything, in the order given in this module's doc. Idempotent. */
  close(): Promise<void>;
}

/**
 * What a backend package exports as `createBackend`. `options` is the backend's own section
 * of the mediator config (e.g. `config.kvm`), validated by the backend.
 */
export type BackendFactory = (options: Record<string, unknown>) => Promise<Backend>;

/** The shape of a backend module loaded by `import()`. */
export interface BackendModule {
  readonly createBackend: BackendFactory;
}
