/**
 * A secondary IOREQ server for one domain, as DEMU and XenGT attach: made, mapped, enabled,
 * bound to event channels, fed claims, and destroyed — never left behind, since a guest whose
 * accesses go to a dead server waits forever.
 *
 * Order of setup (each step undone in reverse if a later one fails):
 *  1. `xendevicemodel_create_ioreq_server` (buffered ioreqs `ATOMIC`, or `OFF`).
 *  2. The buffered ring's port from `xendevicemodel_get_ioreq_server_info` without gfns.
 *  3. The pages: `xenforeignmemory_map_resource(XENMEM_resource_ioreq_server, id, frame 0 =
 *     buffered ring, frame 1 = the shared page)`; if the kernel or Xen lack resource mapping,
 *     the legacy way: the gfns from `get_ioreq_server_info` mapped with `xenforeignmemory_map`
 *     (before enabling — enabling removes them from the guest's physmap).
 *  4. `xendevicemodel_set_ioreq_server_state(1)`.
 *  5. Only now does Xen write each vCPU's `vp_eport` into its slot: bind each with
 *     `xenevtchn_bind_interdomain`, and the buffered port.
 * Claims (`map_io_range_to_ioreq_server`, `map_pcidev_to_ioreq_server`) come after.
 *
 * Teardown: disable (Xen stops routing to us), answer whatever is still waiting in a slot,
 * stop the waiter, answer again, unbind, unmap, destroy.
 */
import { IoError, UnsupportedError, isVmedError, type VmedError } from '@vmed/core';
import {
  HVM_IOREQSRV_BUFIOREQ_ATOMIC,
  HVM_IOREQSRV_BUFIOREQ_OFF,
  IOREQ_MAX_VCPUS,
  XEN_PAGE_SIZE,
  XENMEM_resource_ioreq_server,
  XENMEM_resource_ioreq_server_frame_bufioreq,
  XENMEM_resource_ioreq_server_frame_ioreq,
} from '../abi/xen.js';
import type { DeviceModelHandle } from '../libs/devicemodel.js';
import type { EvtchnHandle } from '../libs/evtchn.js';
import type { ForeignMapping, ForeignMemoryHandle } from '../libs/foreignmemory.js';
import { UndoStack } from '../util/undo.js';
import { IoreqLoop, type IoreqTargets } from './loop.js';
import { createPortSource, type PortSource, type WaitMode } from './waiter.js';

/** How to make the server. */
export interface IoreqServerOptions {
  readonly domid: number;
  /** Ask Xen for a buffered ring (`HVM_IOREQSRV_BUFIOREQ_ATOMIC`). */
  readonly buffered: boolean;
  readonly wait: WaitMode;
  readonly idlePollMs?: number;
  /** Force the legacy gfn mapping instead of resource mapping (for tests of the fallback). */
  readonly legacyMapping?: boolean;
  /**
   * Called with the id as soon as Xen has made the server, before anything else can fail; the
   * returned release runs right before the server is destroyed (after it is disabled and its
   * vCPUs answered). The watchdog (`watchdog/client.ts`) uses this window.
   */
  readonly watch?: (id: number) => { release(): void };
}

/** How the server's pages were mapped. */
export type PageMapping = 'resource' | 'legacy';

/** See the module doc. */
export class IoreqServer {
  readonly domid: number;
  readonly id: number;
  readonly vcpus: number;
  readonly pageMapping: PageMapping;
  readonly loop: IoreqLoop;
  readonly #dm: DeviceModelHandle;
  readonly #evtchn: EvtchnHandle;
  readonly #mappings: ForeignMapping[];
  /** Local port of each vCPU's channel, by vCPU. */
  readonly #vcpuPorts: number[];
  readonly #bufferedPort: number | undefined;
  readonly #ports: PortSource;
  readonly #watch: { release(): void } | undefined;
  #state: 'ready' | 'serving' | 'stopping' | 'destroyed' = 'ready';

  private constructor(init: {
    options: IoreqServerOptions;
    id: number;
    vcpus: number;
    pageMapping: PageMapping;
    loop: IoreqLoop;
    dm: DeviceModelHandle;
    evtchn: EvtchnHandle;
    mappings: ForeignMapping[];
    vcpuPorts: number[];
    bufferedPort: number | undefined;
    watch: { release(): void } | undefined;
  }) {
    this.domid = init.options.domid;
    this.id = init.id;
    this.vcpus = init.vcpus;
    this.pageMapping = init.pageMapping;
    this.loop = init.loop;
    this.#dm = init.dm;
    this.#evtchn = init.evtchn;
    this.#mappings = init.mappings;
    this.#vcpuPorts = init.vcpuPorts;
    this.#bufferedPort = init.bufferedPort;
    this.#watch = init.watch;
    this.#ports = createPortSource(init.options.wait, init.evtchn.fd, init.options.idlePollMs === undefined ? {} : { idlePollMs: init.options.idlePollMs });
  }

  /** Creates, maps, enables and binds a server; see the module doc for the order. */
  static create(dm: DeviceModelHandle, fmem: ForeignMemoryHandle, evtchn: EvtchnHandle, options: IoreqServerOptions, targets: IoreqTargets): IoreqServer {
    const { domid } = options;
    const undo = new UndoStack();
    try {
      const vcpus = dm.nrVcpus(domid);
      if (vcpus < 1 || vcpus > IOREQ_MAX_VCPUS) {
        throw new UnsupportedError('xen.createIoreqServer', `domain ${domid} has ${vcpus} vCPUs; one ioreq page serves 1..${IOREQ_MAX_VCPUS}`);
      }
      const id = dm.createIoreqServer(domid, options.buffered ? HVM_IOREQSRV_BUFIOREQ_ATOMIC : HVM_IOREQSRV_BUFIOREQ_OFF);
      undo.push(() => dm.destroyIoreqServer(domid, id));
      const watch = options.watch?.(id);
      if (watch !== undefined) undo.push(() => watch.release());

      const { bufioreqPort } = dm.getIoreqServerInfo(domid, id, false);
      const pages = mapPages(dm, fmem, options, id);
      for (const m of pages.mappings) undo.push(() => m.release());

      // Filled below, once Xen has allocated the remote ports; the loop only notifies after
      // serving, which cannot happen before start().
      const vcpuPorts: number[] = [];
      const loop = new IoreqLoop(pages.shared, vcpus, pages.ring, targets, (vcpu) => {
        const port = vcpuPorts[vcpu];
        if (port !== undefined) evtchn.notify(port);
      });

      dm.setIoreqServerState(domid, id, true);
      undo.push(() => dm.setIoreqServerState(domid, id, false));

      for (let v = 0; v < vcpus; v++) {
        const local = evtchn.bindInterdomain(domid, loop.remotePort(v));
        undo.push(() => evtchn.unbind(local));
        vcpuPorts.push(local);
      }
      let bufferedPort: number | undefined;
      if (options.buffered) {
        const local = evtchn.bindInterdomain(domid, bufioreqPort);
        undo.push(() => evtchn.unbind(local));
        bufferedPort = local;
      }
      const server = new IoreqServer({
        options,
        id,
        vcpus,
        pageMapping: pages.kind,
        loop,
        dm,
        evtchn,
        mappings: pages.mappings,
        vcpuPorts,
        bufferedPort,
        watch,
      });
      undo.commit();
      return server;
    } catch (error) {
      undo.unwind();
      throw error;
    }
  }

  /** Descriptors and workers the waiter holds. */
  get waiterResources(): { fds: number; workers: number } {
    return { fds: this.#ports.fds, workers: this.#ports.workers };
  }

  /** Host mappings of the server's pages (1 with resource mapping, 1–2 the legacy way); 0 once destroyed. */
  get pageMappings(): number {
    return this.#state === 'destroyed' ? 0 : this.#mappings.length;
  }

  /** Local ports of the vCPUs' channels (for tests). */
  get vcpuPorts(): readonly number[] {
    return this.#vcpuPorts;
  }

  /** True once teardown has begun: no more claims, no more serving. */
  get destroyed(): boolean {
    return this.#state === 'stopping' || this.#state === 'destroyed';
  }

  /**
   * Starts serving: fired ports are unmasked (so the next event can come), then every slot
   * and the ring are served. Ports not ours (event-channel routes' guest notifications) are
   * only unmasked.
   */
  start(onError: (error: VmedError) => void): void {
    if (this.#state !== 'ready') return;
    this.#state = 'serving';
    this.#ports.start((ports) => {
      for (const port of ports) {
        try {
          this.#evtchn.unmask(port);
        } catch (error) {
          if (!this.#evtchn.closed) onError(isVmedError(error) ? error : new IoError('xen.evtchn.unmask', 'unmasking a fired port failed', { cause: error }));
        }
      }
      if (this.#state === 'serving') this.loop.serveAll();
    }, onError);
    // Requests may have arrived between enabling and starting the waiter (their events are
    // already latched on the descriptor too, but serving now costs nothing).
    this.loop.serveAll();
  }

  /** `map_io_range_to_ioreq_server` for `[first, last]` (inclusive). */
  mapRange(space: 'mmio' | 'pio', first: bigint, last: bigint): void {
    this.#dm.mapIoRange(this.domid, this.id, space === 'mmio', first, last);
  }

  /** `unmap_io_range_from_ioreq_server`. */
  unmapRange(space: 'mmio' | 'pio', first: bigint, last: bigint): void {
    this.#dm.unmapIoRange(this.domid, this.id, space === 'mmio', first, last);
  }

  /** `map_pcidev_to_ioreq_server`. */
  mapPci(segment: number, bus: number, device: number, fn: number): void {
    this.#dm.mapPcidev(this.domid, this.id, segment, bus, device, fn);
  }

  /** `unmap_pcidev_from_ioreq_server`. */
  unmapPci(segment: number, bus: number, device: number, fn: number): void {
    this.#dm.unmapPcidev(this.domid, this.id, segment, bus, device, fn);
  }

  /** Tears down (see the module doc) and waits for the waiter to stop. Idempotent. */
  async destroy(): Promise<unknown[]> {
    if (this.destroyed) return [];
    const errors = this.#disableAndAnswer();
    await this.#ports.stop();
    // A synchronous teardown (exit, signal) may have finished the job while we waited.
    if (this.#state === 'destroyed') return errors;
    return [...errors, ...this.#finish()];
  }

  /** The same without waiting (signal, exit and crash handlers); also completes a pending destroy(). Idempotent. */
  destroySync(): unknown[] {
    if (this.#state === 'destroyed') return [];
    const errors = this.#state === 'stopping' ? [] : this.#disableAndAnswer();
    this.#ports.stopSync();
    return [...errors, ...this.#finish()];
  }

  #disableAndAnswer(): unknown[] {
    this.#state = 'stopping';
    const errors: unknown[] = [];
    try {
      this.#dm.setIoreqServerState(this.domid, this.id, false);
    } catch (error) {
      errors.push(error);
    }
    try {
      this.loop.answerPending();
    } catch (error) {
      errors.push(error);
    }
    return errors;
  }

  #finish(): unknown[] {
    this.#state = 'destroyed';
    const errors: unknown[] = [];
    const attempt = (step: () => void) => {
      try {
        step();
      } catch (error) {
        errors.push(error);
      }
    };
    attempt(() => this.loop.answerPending());
    for (const port of this.#vcpuPorts) attempt(() => this.#evtchn.unbind(port));
    if (this.#bufferedPort !== undefined) {
      const port = this.#bufferedPort;
      attempt(() => this.#evtchn.unbind(port));
    }
    for (const m of this.#mappings) attempt(() => m.release());
    attempt(() => this.#watch?.release());
    attempt(() => this.#dm.destroyIoreqServer(this.domid, this.id));
    return errors;
  }
}

interface MappedPages {
  readonly kind: PageMapping;
  readonly shared: Uint8Array;
  readonly ring: Uint8Array | undefined;
  readonly mappings: ForeignMapping[];
}

function mapPages(dm: DeviceModelHandle, fmem: ForeignMemoryHandle, options: IoreqServerOptions, id: number): MappedPages {
  const { domid, buffered } = options;
  if (options.legacyMapping !== true) {
    try {
      const first = buffered ? XENMEM_resource_ioreq_server_frame_bufioreq : XENMEM_resource_ioreq_server_frame_ioreq(0);
      const count = buffered ? 2 : 1;
      const mapping = fmem.mapResource(domid, XENMEM_resource_ioreq_server, id, first, count);
      return {
        kind: 'resource',
        ring: buffered ? new Uint8Array(mapping.buffer, 0, XEN_PAGE_SIZE) : undefined,
        shared: new Uint8Array(mapping.buffer, buffered ? XEN_PAGE_SIZE : 0, XEN_PAGE_SIZE),
        mappings: [mapping],
      };
    } catch (error) {
      // Only a missing interface falls back (old kernel or Xen); a real failure is reported.
      if (!isVmedError(error, 'Unsupported')) throw error;
    }
  }
  const info = dm.getIoreqServerInfo(domid, id, true);
  const mappings: ForeignMapping[] = [];
  try {
    const shared = fmem.map(domid, new BigUint64Array([info.ioreqGfn]), true);
    mappings.push(shared);
    let ring: Uint8Array | undefined;
    if (buffered) {
      const r = fmem.map(domid, new BigUint64Array([info.bufioreqGfn]), true);
      mappings.push(r);
      ring = new Uint8Array(r.buffer, 0, XEN_PAGE_SIZE);
    }
    return { kind: 'legacy', shared: new Uint8Array(shared.buffer, 0, XEN_PAGE_SIZE), ring, mappings };
  } catch (error) {
    for (const m of mappings) m.release();
    throw error;
  }
}
