/**
 * The Xen backend: a dom0 process serving devices to a running HVM or PVH guest as a secondary
 * IOREQ server, through Xen's stable libraries (libxendevicemodel, libxenforeignmemory,
 * libxenevtchn, libxenstore) called with koffi.
 *
 * How the contract maps onto Xen:
 * - I/O: claims are `map_io_range_to_ioreq_server` / `map_pcidev_to_ioreq_server`; requests come
 *   from the ioreq page (`ioreq/loop.ts`), PCI config cycles already decoded by Xen
 *   (`pciConfig: 'hypervisor'`). No direct regions (`mapDirect` is `Unsupported`).
 * - Memory: foreign mappings of the guest's frames (`memory/`), checked against the RAM map.
 * - Interrupts: `inject_msi`; `set_isa_irq_level`/`set_pci_intx_level` on HVM only (refused on
 *   PVH before any call: Xen 4.17 panics); event channels for Xen-aware guests.
 * - Doorbells: caught in the ioreq path (`doorbells: 'userspace'`).
 * - Dirty tracking: `push` (`modified_memory`); page tracking: `set_mem_type(HVMMEM_ioreq_server)`.
 *
 * After setup the device-model and foreign-memory handles are restricted to the domid (option
 * `restrict`, on by default). Closing — or SIGINT, SIGTERM, an uncaught exception, exit — tears
 * everything down in the contract's order, and the IOREQ server last but one (before the
 * library handles), after answering any vCPU still waiting on it.
 */
import {
  BadHandleError,
  ExistsError,
  InvalidError,
  IoError,
  NoSpaceError,
  StateError,
  UnsupportedError,
  allOnes,
  formatPciAddress,
  isVmedError,
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
  type VmedError,
} from '@vmed/core';
import { HVMMEM_ioreq_server, HVMMEM_ram_rw, XEN_DMOP_IOREQ_MEM_ACCESS_WRITE } from './abi/xen.js';
import { detectGuestType, type XenGuestType } from './guest.js';
import { openEventChannel, type XenEventChannelRoute } from './interrupts/event-channel.js';
import { XenLineIrq, checkLineTarget } from './interrupts/lines.js';
import { XenMsiRoute, checkMsiMessage, formatMsi, isX86MsiAddress } from './interrupts/msi.js';
import { DoorbellTable } from './ioreq/doorbells.js';
import type { IoreqTargets } from './ioreq/loop.js';
import { IoRouting } from './ioreq/routing.js';
import { IoreqServer } from './ioreq/server.js';
import { DeviceModelHandle } from './libs/devicemodel.js';
import { EvtchnHandle } from './libs/evtchn.js';
import { ForeignMemoryHandle } from './libs/foreignmemory.js';
import { XenstoreHandle } from './libs/xenstore.js';
import { XenGuestMemory } from './memory/guest-memory.js';
import { MapCache } from './memory/map-cache.js';
import { defaultRamMap, parseMemoryKib } from './memory/ram-map.js';
import { resolveXenOptions, type ResolvedXenOptions } from './options.js';
import { registerTeardown } from './teardown.js';
import { processWatchdog } from './watchdog/client.js';
import { XenDirtyLog } from './tracking/dirty.js';
import { PageTracker } from './tracking/page-track.js';
import { UndoStack } from './util/undo.js';

/** Most MSI routes a session holds: Xen has no table, this bounds a runaway device model. */
export const XEN_MAX_MSI_ROUTES = 4096;

/** Largest shared memory for a (trapped, on Xen) direct BAR. */
const MAX_SHARED_MEMORY = 1 << 30;

/** Until `attach`, requests are answered as unclaimed: reads all-ones, writes dropped. */
const UNATTACHED_SINK: IoRequestSink = {
  read: (_space, _address, size) => allOnes(size),
  write: () => {},
};

/** Counters a test or benchmark can read. */
export interface XenBackendStats {
  readonly pio: number;
  readonly mmio: number;
  readonly pci: number;
  readonly invalidate: number;
  readonly buffered: number;
  readonly doorbells: number;
  readonly trackedWrites: number;
  readonly faults: number;
  readonly droppedMsis: number;
}

class XenSharedMemory implements SharedMemory {
  readonly size: number;
  #bytes: Uint8Array | undefined;
  readonly #onDispose: (m: XenSharedMemory) => void;

  constructor(size: number, onDispose: (m: XenSharedMemory) => void) {
    this.size = size;
    this.#bytes = new Uint8Array(size);
    this.#onDispose = onDispose;
  }

  get bytes(): Uint8Array {
    if (this.#bytes === undefined) throw new BadHandleError('sharedMemory.bytes', 'shared memory is disposed');
    return this.#bytes;
  }

  get disposed(): boolean {
    return this.#bytes === undefined;
  }

  dispose(): void {
    if (this.#bytes === undefined) return;
    this.#bytes = undefined;
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** One session on one guest; see the module doc. Made by {@link createBackend}. */
export class XenBackend implements Backend {
  readonly capabilities: BackendCapabilities;
  readonly memory: XenGuestMemory;
  readonly dirty: XenDirtyLog;
  readonly domid: number;
  readonly guestType: XenGuestType;
  readonly #options: ResolvedXenOptions;
  readonly #dm: DeviceModelHandle;
  readonly #fmem: ForeignMemoryHandle;
  readonly #evtchn: EvtchnHandle;
  #xs: XenstoreHandle | undefined;
  #server: IoreqServer | undefined;
  readonly #routing: IoRouting;
  readonly #doorbells: DoorbellTable;
  readonly #tracker: PageTracker;
  readonly #msiRoutes = new Set<XenMsiRoute>();
  #nextMsiId = 0;
  readonly #lines = new Set<XenLineIrq>();
  readonly #eventChannels = new Set<XenEventChannelRoute>();
  readonly #shared = new Set<XenSharedMemory>();
  #sink: IoRequestSink | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #handlesClosed = false;
  #unregisterTeardown: (() => void) | undefined;
  #droppedMsis = 0;
  #faults = 0;
  readonly #targets: IoreqTargets;

  private constructor(init: {
    options: ResolvedXenOptions;
    guestType: XenGuestType;
    dm: DeviceModelHandle;
    fmem: ForeignMemoryHandle;
    evtchn: EvtchnHandle;
    memory: XenGuestMemory;
  }) {
    this.#options = init.options;
    this.domid = init.options.domid;
    this.guestType = init.guestType;
    this.#dm = init.dm;
    this.#fmem = init.fmem;
    this.#evtchn = init.evtchn;
    this.memory = init.memory;
    const domid = this.domid;
    this.dirty = new XenDirtyLog(this.memory.ram, (pfn, nr) => this.#dm.modifiedMemory(domid, pfn, nr));
    // Writes the device model makes to guest RAM through this backend are reported while the
    // log is active (QEMU does the same while migrating).
    this.memory.onWrite = (address, length) => {
      if (this.dirty.active) this.dirty.reportBytes(address, BigInt(length));
    };
    this.#routing = new IoRouting({
      mapRange: (space, first, last) => this.#requireServer().mapRange(space, first, last),
      unmapRange: (space, first, last) => this.#requireServer().unmapRange(space, first, last),
      mapPci: (s, b, d, f) => this.#requireServer().mapPci(s, b, d, f),
      unmapPci: (s, b, d, f) => this.#requireServer().unmapPci(s, b, d, f),
    });
    this.#doorbells = new DoorbellTable(this.#routing);
    this.#tracker = new PageTracker(this.memory.ram, {
      claimType: (claim) => {
        const server = this.#requireServer();
        this.#dm.mapMemType(domid, server.id, HVMMEM_ioreq_server, claim ? XEN_DMOP_IOREQ_MEM_ACCESS_WRITE : 0);
      },
      setType: (tracked, pfn, nr) => this.#dm.setMemType(domid, tracked ? HVMMEM_ioreq_server : HVMMEM_ram_rw, pfn, nr),
    });
    this.capabilities = Object.freeze({
      hypervisor: 'xen',
      pciConfig: 'hypervisor',
      // A PVH guest has no chipset: nobody else would answer reads of 0xCF8 or be 00:00.0.
      pciHostBridge: init.guestType === 'pvh' ? 'device-model' : 'platform',
      directRegions: false,
      maxMsiRoutes: XEN_MAX_MSI_ROUTES,
      signalMsi: true,
      // Xen's emulated IOAPIC tracks level lines itself; EOIs are not reported to the DM.
      lineIrq: init.guestType === 'hvm' ? Object.freeze({ edge: true, level: true, resample: false }) : false,
      doorbells: 'userspace',
      doorbellDatamatch: true,
      dirtyTracking: 'push',
      pageTracking: true,
      pinning: true,
      eventChannels: true,
    } satisfies BackendCapabilities);
    const currentSink = () => this.#sink ?? UNATTACHED_SINK;
    this.#targets = {
      get sink() {
        return currentSink();
      },
      ram: this.memory,
      doorbell: (space, address, size, value) => this.#doorbells.match(space, address, size, value),
      tracked: (address) => this.#tracker.find(address),
      invalidate: () => this.memory.invalidate(),
      onFault: (error) => this.#fault(error),
    };
  }

  /** Opens a session: see {@link createBackend}. */
  static async open(options: ResolvedXenOptions): Promise<XenBackend> {
    const undo = new UndoStack();
    try {
      const dm = DeviceModelHandle.open();
      undo.push(() => dm.close());
      const fmem = ForeignMemoryHandle.open();
      undo.push(() => fmem.close());
      const evtchn = EvtchnHandle.open();
      undo.push(() => evtchn.close());
      let guestType = options.guestType;
      let ram = options.ram;
      if (guestType === undefined || ram === undefined) {
        // Only needed to learn about the guest: closed again, reopened if event channels need it.
        const xs = XenstoreHandle.open();
        try {
          guestType ??= detectGuestType(xs, options.domid);
          ram ??= defaultRamMap(readMemorySize(xs, options.domid));
        } finally {
          xs.close();
        }
      }
      const cache = new MapCache(
        (firstPfn, pages) => {
          const pfns = new BigUint64Array(pages);
          for (let i = 0; i < pages; i++) pfns[i] = firstPfn + BigInt(i);
          const mapping = fmem.map(options.domid, pfns, true);
          return { bytes: new Uint8Array(mapping.buffer), release: () => mapping.release() };
        },
        ram,
        { maxIdleBuckets: options.mapCacheBuckets },
      );
      const memory = new XenGuestMemory(ram, cache);
      undo.push(() => memory.close());
      const backend = new XenBackend({ options, guestType, dm, fmem, evtchn, memory });

      const server = IoreqServer.create(
        dm,
        fmem,
        evtchn,
        {
          domid: options.domid,
          buffered: options.bufferedIoreqs,
          wait: options.wait,
          idlePollMs: options.idlePollMs,
          legacyMapping: options.legacyPageMapping,
          ...(options.watchdog ? { watch: (id: number) => processWatchdog().watch(options.domid, id, (e) => backend.#fault(e)) } : {}),
        },
        backend.#targets,
      );
      undo.push(() => server.destroySync());
      backend.#server = server;
      server.start((error) => backend.#waiterFailed(error));

      if (options.restrict) {
        dm.restrict(options.domid);
        fmem.restrict(options.domid);
      }
      if (options.teardownOnExit) backend.#unregisterTeardown = registerTeardown(backend);
      undo.commit();
      return backend;
    } catch (error) {
      undo.unwind();
      throw error;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The IOREQ server's id, vCPU count and how its pages were mapped (diagnostics, tests). */
  get server(): { readonly id: number; readonly vcpus: number; readonly pageMapping: 'resource' | 'legacy' } {
    const s = this.#requireServer();
    return { id: s.id, vcpus: s.vcpus, pageMapping: s.pageMapping };
  }

  /** The pid of the watchdog helper watching this process's servers (`watchdog` option), while it runs. */
  get watchdogPid(): number | undefined {
    return this.#options.watchdog ? processWatchdog().pid : undefined;
  }

  /**
   * Whether the domain still exists, as the toolstack sees it: its xenstore directory
   * (`/local/domain/<domid>`), which libxl removes when it destroys the domain — after a
   * poweroff or crash with `on_poweroff`/`on_crash="destroy"`, or `xl destroy`. (Xen itself may
   * keep a dying domain a while, as a zombie, while foreign mappings of its memory are held.)
   */
  domainExists(): boolean {
    this.#open('xen.domainExists');
    return this.#xenstore().read(`/local/domain/${this.domid}`) !== undefined;
  }

  /** What the ioreq loop has served so far. */
  stats(): XenBackendStats {
    const s = this.#server?.loop.stats;
    return {
      pio: s?.pio ?? 0,
      mmio: s?.mmio ?? 0,
      pci: s?.pci ?? 0,
      invalidate: s?.invalidate ?? 0,
      buffered: s?.buffered ?? 0,
      doorbells: s?.doorbells ?? 0,
      trackedWrites: s?.trackedWrites ?? 0,
      faults: this.#faults,
      droppedMsis: this.#droppedMsis,
    };
  }

  attach(sink: IoRequestSink): void {
    this.#open('xen.attach');
    if (this.#sink !== undefined) throw new StateError('xen.attach', 'a sink is already attached');
    if (typeof sink?.read !== 'function' || typeof sink.write !== 'function') throw new InvalidError('xen.attach', 'sink must have read and write');
    this.#sink = sink;
  }

  /** Xen: `map_io_range_to_ioreq_server`. Overlapping a claim is `Exists`. */
  claimIo(space: 'mmio' | 'pio', range: AddressRange): IoClaim {
    this.#open('xen.claimIo');
    return this.#routing.claim(space, range);
  }

  /** Xen: `map_pcidev_to_ioreq_server`; config cycles then arrive as `pci` requests. */
  claimPciFunction(device: PciAddress): IoClaim {
    this.#open('xen.claimPciFunction');
    return this.#routing.claimPci(device);
  }

  /** Plain host memory: Xen cannot map it into the guest, so the core traps the BAR and serves it from these bytes. */
  allocateSharedMemory(size: number): SharedMemory {
    this.#open('xen.allocateSharedMemory');
    if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_SHARED_MEMORY) {
      throw new InvalidError('xen.allocateSharedMemory', `size ${size} is outside 1..${MAX_SHARED_MEMORY}`);
    }
    const memory = new XenSharedMemory(size, (m) => this.#shared.delete(m));
    this.#shared.add(memory);
    return memory;
  }

  mapDirect(_range: AddressRange, _memory: SharedMemory): DirectMapping {
    this.#open('xen.mapDirect');
    throw new UnsupportedError('xen.mapDirect', 'a Xen IOREQ server cannot map host memory into the guest (directRegions: false)');
  }

  /** A local route; `trigger` is `xendevicemodel_inject_msi`. More than 4096 live routes is `NoSpace`. */
  createMsiRoute(): MsiRoute {
    this.#open('xen.createMsiRoute');
    if (this.#msiRoutes.size >= XEN_MAX_MSI_ROUTES) throw new NoSpaceError('xen.createMsiRoute', `${XEN_MAX_MSI_ROUTES} MSI routes are live`);
    const route = new XenMsiRoute(
      this.#nextMsiId++,
      { inject: (m) => this.#inject(m), dropped: (m) => this.#dropMsi(m) },
      (r) => this.#msiRoutes.delete(r),
    );
    this.#msiRoutes.add(route);
    return route;
  }

  /** `xendevicemodel_inject_msi` once. A non-MSI address (not 0xFEExxxxx) is dropped and counted. */
  signalMsi(message: MsiMessage): void {
    this.#open('xen.signalMsi');
    checkMsiMessage('xen.signalMsi', message);
    if (!isX86MsiAddress(message.address)) {
      this.#dropMsi(message);
      return;
    }
    this.#inject(message);
  }

  /**
   * HVM: `set_isa_irq_level` (ISA IRQ 0..15) or `set_pci_intx_level` (segment 0, bus 0).
   * PVH: `Unsupported`, without calling either (no emulated PIC/IOAPIC; Xen 4.17 panics).
   */
  createLineIrq(target: LineTarget, trigger: LineTrigger): LineIrq {
    const op = 'xen.createLineIrq';
    this.#open(op);
    if (this.guestType !== 'hvm') {
      throw new UnsupportedError(op, `domain ${this.domid} is a PVH guest: it has no emulated PIC/IOAPIC, so no wired lines (use MSI)`);
    }
    if (trigger !== 'edge' && trigger !== 'level') throw new InvalidError(op, `unknown trigger ${String(trigger)}`);
    checkLineTarget(op, target);
    const same = [...this.#lines].find((l) => sameLine(l.target, target));
    if (same !== undefined) throw new ExistsError(op, `line ${describeLine(target)} is already in use`);
    const domid = this.domid;
    const drive =
      target.kind === 'gsi'
        ? (level: 0 | 1) => this.#dm.setIsaIrqLevel(domid, target.line, level)
        : (level: 0 | 1) => this.#dm.setPciIntxLevel(domid, 0, 0, target.device.device, target.pin - 1, level);
    const line = new XenLineIrq(target, trigger, drive, (l) => this.#lines.delete(l));
    this.#lines.add(line);
    return line;
  }

  /**
   * An unbound port in this domain for the guest (`xenevtchn_bind_unbound_port`), published
   * at `<xenstorePath>/evtchn/<port>` (dom0's, readable by the guest); `trigger` is
   * `xenevtchn_notify`. The device model hands the port to its driver in its own registers:
   * see `interrupts/event-channel.ts` for why.
   */
  createEventChannel(): EventChannelRoute {
    const op = 'xen.createEventChannel';
    this.#open(op);
    const xs = this.#xenstore();
    let route: XenEventChannelRoute;
    try {
      route = openEventChannel(
        this.domid,
        this.#options.xenstorePath,
        this.#evtchn,
        {
          write: (path, value) => xs.write(path, value),
          setPermissions: (path, perms) => xs.setPermissions(path, perms),
          // Closed only after the last route went; nothing of ours is left to remove then.
          remove: (path) => {
            if (!xs.closed) xs.remove(path);
          },
        },
        (r) => {
          this.#eventChannels.delete(r);
          // The connection was opened for the routes: it goes with the last one.
          if (this.#eventChannels.size === 0) this.#closeXenstore();
        },
      );
    } catch (error) {
      if (this.#eventChannels.size === 0) this.#closeXenstore();
      throw error;
    }
    this.#eventChannels.add(route);
    return route;
  }

  /** Caught in the ioreq path; a doorbell outside every claim routes its own address to the server. */
  registerIoEvent(spec: IoEventSpec, handler: DoorbellHandler): Doorbell {
    this.#open('xen.registerIoEvent');
    return this.#doorbells.register(spec, handler);
  }

  /** `set_mem_type(HVMMEM_ioreq_server)` on a page-aligned RAM range; writes reach `handler`. */
  trackWrites(range: AddressRange, handler: TrackedWriteHandler): PageTrack {
    this.#open('xen.trackWrites');
    return this.#tracker.track(range, handler);
  }

  /**
   * What the session holds. `fds` are the descriptors the Xen libraries opened for its handles
   * (measured when each was opened) plus the waiter's eventfd; `mappings` are the ioreq pages,
   * the foreign mappings held by live views and pins, and shared memory — not idle mappings
   * the guest-memory cache keeps for speed (they go on eviction, INVALIDATE and close).
   * Callable after close (all zeros then), so a leak check can look at a closed session.
   */
  resources(): BackendResources {
    const waiter = this.#server?.waiterResources ?? { fds: 0, workers: 0 };
    const held = (h: { readonly closed: boolean; readonly fds: number } | undefined) => (h === undefined || h.closed ? 0 : h.fds);
    return {
      fds: held(this.#dm) + held(this.#fmem) + held(this.#evtchn) + held(this.#xs) + waiter.fds,
      mappings: (this.#server?.pageMappings ?? 0) + this.memory.heldMappings + this.#shared.size,
      msiRoutes: this.#msiRoutes.size,
      lineIrqs: this.#lines.size,
      doorbells: this.#doorbells.count,
      claims: this.#routing.claims,
      pins: this.memory.pins,
      pageTracks: this.#tracker.count,
      workers: waiter.workers,
    };
  }

  async close(): Promise<void> {
    this.#closing ??= this.#closeAsync();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** The synchronous teardown the process handlers run (see `teardown.ts`). */
  teardownSync(reason: string): void {
    if (this.#handlesClosed) return;
    this.#closing ??= Promise.resolve();
    const errors = this.#releaseAll();
    errors.push(...(this.#server?.destroySync() ?? []));
    errors.push(...this.#closeHandles());
    if (teardownFailures(errors).length > 0) this.#fault(new IoError('xen.teardown', `teardown on ${reason}: ${errors.length} step(s) failed`, { cause: new AggregateError(errors) }));
  }

  async #closeAsync(): Promise<void> {
    const all = this.#releaseAll();
    if (this.#server !== undefined) all.push(...(await this.#server.destroy()));
    all.push(...this.#closeHandles());
    const errors = teardownFailures(all);
    if (errors.length > 0) {
      throw new IoError('xen.close', `${errors.length} teardown step(s) failed; the first: ${String(errors[0])}`, { cause: new AggregateError(errors) });
    }
  }

  /** Everything handed out, in the contract's order; the server stays up to answer stragglers. */
  #releaseAll(): unknown[] {
    this.#closed = true;
    const errors: unknown[] = [];
    const attempt = (step: () => void) => {
      try {
        step();
      } catch (error) {
        errors.push(error);
      }
    };
    // Requests still arriving are answered as unclaimed from now on.
    this.#sink = UNATTACHED_SINK;
    for (const d of this.#doorbells.all()) attempt(() => d.dispose());
    for (const c of this.#routing.all()) attempt(() => c.dispose());
    for (const r of [...this.#msiRoutes]) attempt(() => r.dispose());
    for (const l of [...this.#lines]) attempt(() => l.dispose());
    for (const e of [...this.#eventChannels]) attempt(() => e.dispose());
    errors.push(...this.#tracker.disposeAll());
    attempt(() => this.dirty.close());
    attempt(() => this.memory.close());
    for (const m of [...this.#shared]) attempt(() => m.dispose());
    return errors;
  }

  #closeHandles(): unknown[] {
    this.#handlesClosed = true;
    const errors: unknown[] = [];
    for (const step of [
      () => this.#evtchn.unbindAll(),
      () => this.#evtchn.close(),
      () => this.#fmem.close(),
      () => this.#dm.close(),
      () => this.#xs?.close(),
    ]) {
      try {
        step();
      } catch (error) {
        errors.push(error);
      }
    }
    this.#unregisterTeardown?.();
    this.#unregisterTeardown = undefined;
    return errors;
  }

  #waiterFailed(error: VmedError): void {
    // Nobody would serve the guest any more: tear down now so it is not left waiting.
    this.#fault(error);
    this.teardownSync('event-channel waiter failure');
  }

  #inject(message: MsiMessage): void {
    this.#dm.injectMsi(this.domid, message.address, message.data >>> 0);
  }

  #dropMsi(message: MsiMessage): void {
    this.#droppedMsis++;
    this.#fault(new InvalidError('xen.injectMsi', `not an MSI address, dropped: ${formatMsi(message)}`));
  }

  #fault(error: Error): void {
    this.#faults++;
    try {
      this.#options.onFault?.(error);
    } catch {
      // A reporter must not break the path that reported.
    }
  }

  #xenstore(): XenstoreHandle {
    if (this.#xs === undefined || this.#xs.closed) this.#xs = XenstoreHandle.open();
    return this.#xs;
  }

  #closeXenstore(): void {
    this.#xs?.close();
    this.#xs = undefined;
  }

  #requireServer(): IoreqServer {
    const server = this.#server;
    if (server === undefined || server.destroyed) throw new BadHandleError('xen.server', 'the IOREQ server is gone');
    return server;
  }

  #open(operation: string): void {
    if (this.#closed) throw new BadHandleError(operation, `the Xen session for domain ${this.domid} is closed`);
  }
}


function sameLine(a: LineTarget, b: LineTarget): boolean {
  if (a.kind === 'gsi' && b.kind === 'gsi') return a.line === b.line;
  if (a.kind === 'intx' && b.kind === 'intx') return a.device.device === b.device.device && a.pin === b.pin;
  return false;
}

function describeLine(t: LineTarget): string {
  return t.kind === 'gsi' ? `ISA IRQ ${t.line}` : `INT${'ABCD'[t.pin - 1]} of ${formatPciAddress(t.device)}`;
}

/**
 * The teardown errors that matter: a step that failed with ESRCH found the guest already gone
 * (it powered off or was destroyed), and Xen dropped its IOREQ servers with it.
 */
function teardownFailures(errors: unknown[]): unknown[] {
  return errors.filter((e) => !(isVmedError(e) && e.errno === 'ESRCH'));
}

/** The guest's memory size from xenstore (`memory/static-max`, else `memory/target`). */
function readMemorySize(xs: XenstoreHandle, domid: number): bigint {
  const base = `/local/domain/${domid}/memory`;
  const bytes = parseMemoryKib(xs.read(`${base}/static-max`)) ?? parseMemoryKib(xs.read(`${base}/target`));
  if (bytes === undefined) throw new InvalidError('xen.ramMap', `no usable ${base}/static-max in xenstore: pass the ram option`);
  return bytes;
}

/**
 * Opens a Xen session on a running (preferably still paused) HVM or PVH guest, as a secondary
 * IOREQ server. `options` is the `xen` section of the mediator config; see
 * {@link XenBackendOptions}. Needs dom0 (or a domain with device-model privilege over the
 * guest): `/dev/xen/privcmd`, `/dev/xen/evtchn`, and xenstored unless `guestType` and `ram` are
 * given. Throws `Unsupported` naming the library when a Xen library is missing.
 */
export async function createBackend(options: Record<string, unknown>): Promise<Backend> {
  return XenBackend.open(resolveXenOptions(options));
}

/** Whether `e` says Xen is not there at all (no library, no device node). */
export function isXenAbsent(e: unknown): boolean {
  return isVmedError(e) && (e.code === 'Unsupported' || e.code === 'NotFound') && /xen|privcmd|evtchn/i.test(e.message);
}
