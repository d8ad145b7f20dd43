/**
 * The watchdog helper's Xen side: a device-model handle per watched domain, opened when the
 * first server of the domain is watched and restricted to it at once (the helper can then
 * touch nothing else), and, only for a rescue, a foreign-memory handle (restricted too) to map
 * the server's ioreq page and an event-channel handle to wake waiting vCPUs.
 */
import { XENMEM_resource_ioreq_server, XENMEM_resource_ioreq_server_frame_ioreq } from '../abi/xen.js';
import { DeviceModelHandle } from '../libs/devicemodel.js';
import { EvtchnHandle } from '../libs/evtchn.js';
import { ForeignMemoryHandle } from '../libs/foreignmemory.js';
import { rescueServer, type RescueReport } from './rescue.js';
import type { WatchdogXen } from './watch-loop.js';

/** {@link WatchdogXen} over Xen's libraries. */
export class XenRescuer implements WatchdogXen {
  readonly #dm = new Map<number, DeviceModelHandle>();

  prepare(domid: number): void {
    this.#handle(domid);
  }

  forget(domid: number): void {
    this.#dm.get(domid)?.close();
    this.#dm.delete(domid);
  }

  rescue(domid: number, server: number): RescueReport {
    let dm: DeviceModelHandle;
    try {
      dm = this.#handle(domid);
    } catch (error) {
      return { answered: 0, destroyed: false, errors: [error] };
    }
    let fmem: ForeignMemoryHandle | undefined;
    let evtchn: EvtchnHandle | undefined;
    try {
      return rescueServer({
        disable: () => dm.setIoreqServerState(domid, server, false),
        vcpus: () => dm.nrVcpus(domid),
        mapIoreqPage: () => {
          fmem = ForeignMemoryHandle.open();
          fmem.restrict(domid);
          // Frame 1 of the server's resource is the shared page, whether or not it has a ring.
          const mapping = fmem.mapResource(domid, XENMEM_resource_ioreq_server, server, XENMEM_resource_ioreq_server_frame_ioreq(0), 1);
          return { bytes: new Uint8Array(mapping.buffer), release: () => mapping.release() };
        },
        notify: (remotePort) => {
          evtchn ??= EvtchnHandle.open();
          const local = evtchn.bindInterdomain(domid, remotePort);
          try {
            evtchn.notify(local);
          } finally {
            evtchn.unbind(local);
          }
        },
        destroy: () => dm.destroyIoreqServer(domid, server),
      });
    } finally {
      evtchn?.close();
      fmem?.close();
    }
  }

  /** Closes every handle. */
  close(): void {
    for (const dm of this.#dm.values()) dm.close();
    this.#dm.clear();
  }

  #handle(domid: number): DeviceModelHandle {
    const open = this.#dm.get(domid);
    if (open !== undefined) return open;
    const dm = DeviceModelHandle.open();
    try {
      dm.restrict(domid);
    } catch (error) {
      dm.close();
      throw error;
    }
    this.#dm.set(domid, dm);
    return dm;
  }
}
