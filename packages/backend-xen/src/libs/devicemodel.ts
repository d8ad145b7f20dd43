/**
 * One libxendevicemodel handle: the DM ops an IOREQ server needs, checked before they cross
 * and turned into `VmedError`s after. Made by {@link DeviceModelHandle.open}, owned by one
 * backend session, closed last.
 */
import { BadHandleError, InvalidError, hex } from '@vmed/core';
import type { DeviceModelLib, Pointer } from '../abi/xen.js';
import { loadDeviceModelLib } from './load.js';
import { errorFromErrno, lastError } from './errno.js';
import { withFdDelta } from './fds.js';

/** Checks a value is an integer in `[0, max]` before it is narrowed by a C prototype. */
export function checkUint(operation: string, what: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new InvalidError(operation, `${what} ${value} is outside 0..${max}`);
  }
}

/** A libxendevicemodel handle (`xendevicemodel_open`). */
export class DeviceModelHandle {
  readonly #lib: DeviceModelLib;
  #handle: Pointer | null;
  /** Descriptors `xendevicemodel_open` opened (privcmd, and the hypercall buffer device). */
  readonly fds: number;

  private constructor(lib: DeviceModelLib, handle: Pointer, fds: number) {
    this.#lib = lib;
    this.#handle = handle;
    this.fds = fds;
  }

  /**
   * Opens a handle. Throws `Unsupported` when the library is missing, `Io`/`NotFound` when
   * `/dev/xen/privcmd` cannot be opened (not dom0, or no Xen).
   */
  static open(): DeviceModelHandle {
    const lib = loadDeviceModelLib();
    // SAFETY: no logger (the library logs to stderr), no flags; the handle is ours until close.
    const { value: handle, fds, errno } = withFdDelta(() => lib.open(null, 0));
    if (handle === null) throw errorFromErrno('xen.devicemodel.open', 'cannot open libxendevicemodel (is this dom0 on Xen, with /dev/xen/privcmd?)', errno);
    return new DeviceModelHandle(lib, handle, fds);
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  #h(operation: string): Pointer {
    if (this.#handle === null) throw new BadHandleError(operation, 'device-model handle is closed');
    return this.#handle;
  }

  /** `xendevicemodel_create_ioreq_server`: a new secondary IOREQ server, disabled, for `domid`. */
  createIoreqServer(domid: number, handleBufioreq: number): number {
    const op = 'xen.createIoreqServer';
    const id = new Uint16Array(1);
    // SAFETY: Xen writes the server id into `id` (2 bytes) during the call.
    if (this.#lib.createIoreqServer(this.#h(op), domid, handleBufioreq, id) !== 0) {
      throw lastError(op, `cannot create an IOREQ server for domain ${domid}`);
    }
    return id[0] as number;
  }

  /**
   * `xendevicemodel_get_ioreq_server_info`. With `gfns` false it asks for the buffered port
   * only (XEN_DMOP_no_gfns), which does not put the pages in the guest's physmap.
   */
  getIoreqServerInfo(domid: number, id: number, gfns: boolean): { ioreqGfn: bigint; bufioreqGfn: bigint; bufioreqPort: number } {
    const op = 'xen.getIoreqServerInfo';
    const ioreqGfn = new BigUint64Array(1);
    const bufioreqGfn = new BigUint64Array(1);
    const bufioreqPort = new Uint32Array(1);
    // SAFETY: each out buffer is written during the call only; NULL gfn pointers mean "no gfns".
    const rc = this.#lib.getIoreqServerInfo(this.#h(op), domid, id, gfns ? ioreqGfn : null, gfns ? bufioreqGfn : null, bufioreqPort);
    if (rc !== 0) throw lastError(op, `cannot read IOREQ server ${id} of domain ${domid}`);
    return { ioreqGfn: ioreqGfn[0] as bigint, bufioreqGfn: bufioreqGfn[0] as bigint, bufioreqPort: bufioreqPort[0] as number };
  }

  /** `xendevicemodel_set_ioreq_server_state`: Xen routes requests to the server only while enabled. */
  setIoreqServerState(domid: number, id: number, enabled: boolean): void {
    const op = 'xen.setIoreqServerState';
    if (this.#lib.setIoreqServerState(this.#h(op), domid, id, enabled ? 1 : 0) !== 0) {
      throw lastError(op, `cannot ${enabled ? 'enable' : 'disable'} IOREQ server ${id}`);
    }
  }

  /** `xendevicemodel_destroy_ioreq_server`. */
  destroyIoreqServer(domid: number, id: number): void {
    const op = 'xen.destroyIoreqServer';
    if (this.#lib.destroyIoreqServer(this.#h(op), domid, id) !== 0) throw lastError(op, `cannot destroy IOREQ server ${id}`);
  }

  /** `xendevicemodel_map_io_range_to_ioreq_server`; `last` is inclusive, as in Xen's rangesets. */
  mapIoRange(domid: number, id: number, mmio: boolean, first: bigint, last: bigint): void {
    const op = 'xen.mapIoRange';
    if (this.#lib.mapIoRangeToIoreqServer(this.#h(op), domid, id, mmio ? 1 : 0, first, last) !== 0) {
      throw lastError(op, `cannot claim ${mmio ? 'MMIO' : 'ports'} ${hex(first)}..${hex(last)}`);
    }
  }

  /** `xendevicemodel_unmap_io_range_from_ioreq_server`; must lie inside one mapped range. */
  unmapIoRange(domid: number, id: number, mmio: boolean, first: bigint, last: bigint): void {
    const op = 'xen.unmapIoRange';
    if (this.#lib.unmapIoRangeFromIoreqServer(this.#h(op), domid, id, mmio ? 1 : 0, first, last) !== 0) {
      throw lastError(op, `cannot release ${mmio ? 'MMIO' : 'ports'} ${hex(first)}..${hex(last)}`);
    }
  }

  /** `xendevicemodel_map_pcidev_to_ioreq_server`: config cycles of the function become PCI_CONFIG ioreqs. */
  mapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void {
    const op = 'xen.mapPcidev';
    if (this.#lib.mapPcidevToIoreqServer(this.#h(op), domid, id, segment, bus, device, fn) !== 0) {
      throw lastError(op, `cannot claim PCI function ${segment}:${bus}:${device}.${fn}`);
    }
  }

  /** `xendevicemodel_unmap_pcidev_from_ioreq_server`. */
  unmapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void {
    const op = 'xen.unmapPcidev';
    if (this.#lib.unmapPcidevFromIoreqServer(this.#h(op), domid, id, segment, bus, device, fn) !== 0) {
      throw lastError(op, `cannot release PCI function ${segment}:${bus}:${device}.${fn}`);
    }
  }

  /** `xendevicemodel_map_mem_type_to_ioreq_server`: `flags` 0 releases the type. One server per domain may hold it. */
  mapMemType(domid: number, id: number, type: number, flags: number): void {
    const op = 'xen.mapMemTypeToIoreqServer';
    if (this.#lib.mapMemTypeToIoreqServer(this.#h(op), domid, id, type, flags) !== 0) {
      throw lastError(op, `cannot ${flags === 0 ? 'release' : 'claim'} memory type ${type} for IOREQ server ${id}`);
    }
  }

  /** `xendevicemodel_set_mem_type` over `nr` frames from `firstPfn`. */
  setMemType(domid: number, memType: number, firstPfn: bigint, nr: number): void {
    const op = 'xen.setMemType';
    if (this.#lib.setMemType(this.#h(op), domid, memType, firstPfn, nr) !== 0) {
      throw lastError(op, `cannot set memory type ${memType} on ${nr} frames from pfn ${hex(firstPfn)}`);
    }
  }

  /** `xendevicemodel_inject_msi`: delivers one MSI to the guest's (emulated) LAPICs. */
  injectMsi(domid: number, address: bigint, data: number): void {
    const op = 'xen.injectMsi';
    if (this.#lib.injectMsi(this.#h(op), domid, address, data) !== 0) {
      throw lastError(op, `cannot inject MSI address ${hex(address)} data ${hex(data)}`);
    }
  }

  /** `xendevicemodel_set_isa_irq_level`. Never on a PVH guest (Xen 4.17 panics, see the backend). */
  setIsaIrqLevel(domid: number, irq: number, level: 0 | 1): void {
    const op = 'xen.setIsaIrqLevel';
    checkUint(op, 'ISA IRQ', irq, 15);
    if (this.#lib.setIsaIrqLevel(this.#h(op), domid, irq, level) !== 0) throw lastError(op, `cannot set ISA IRQ ${irq} to ${level}`);
  }

  /** `xendevicemodel_set_pci_intx_level`. Xen takes segment 0, bus 0 only. Never on PVH. */
  setPciIntxLevel(domid: number, segment: number, bus: number, device: number, intx: number, level: 0 | 1): void {
    const op = 'xen.setPciIntxLevel';
    checkUint(op, 'INTx', intx, 3);
    checkUint(op, 'device', device, 31);
    if (this.#lib.setPciIntxLevel(this.#h(op), domid, segment, bus, device, intx, level) !== 0) {
      throw lastError(op, `cannot set INT${'ABCD'[intx]} of ${segment}:${bus}:${device} to ${level}`);
    }
  }

  /** `xendevicemodel_modified_memory`: marks `nr` frames dirty in the toolstack's log-dirty bitmap. */
  modifiedMemory(domid: number, firstPfn: bigint, nr: number): void {
    const op = 'xen.modifiedMemory';
    if (this.#lib.modifiedMemory(this.#h(op), domid, firstPfn, nr) !== 0) {
      throw lastError(op, `cannot report ${nr} modified frames from pfn ${hex(firstPfn)}`);
    }
  }

  /** `xendevicemodel_nr_vcpus`: the domain's vCPU count (max, not online). */
  nrVcpus(domid: number): number {
    const op = 'xen.nrVcpus';
    const out = new Uint32Array(1);
    if (this.#lib.nrVcpus(this.#h(op), domid, out) !== 0) throw lastError(op, `cannot read the vCPU count of domain ${domid}`);
    return out[0] as number;
  }

  /** `xendevicemodel_restrict`: from now on this handle can only act on `domid`. Irreversible. */
  restrict(domid: number): void {
    const op = 'xen.devicemodel.restrict';
    if (this.#lib.restrict(this.#h(op), domid) !== 0) throw lastError(op, `cannot restrict the device-model handle to domain ${domid}`);
  }

  /** `xendevicemodel_close`. Idempotent. */
  close(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.#lib.close(h);
  }
}
