/**
 * A stand-in backend that routes a guest's port I/O the way Xen 4.17 does for an HVM-type
 * domain (PVH included), so the mediator's PCI wiring can be checked against Linux's probe
 * without Xen. What it models, read from Xen's `arch_ioreq_server_get_type_addr`,
 * `ioreq_server_select` and `hvm_access_cf8`:
 *
 * - a 4-byte write to 0xCF8 is latched by Xen, then still sent on like any port write;
 * - an access to 0xCFC–0xCFF while the latch has bit 31 set becomes a `PCI_CONFIG` request for
 *   the latched function, sent to the server that claimed that function, else answered by Xen
 *   (reads all-ones, writes dropped) — never sent as port I/O;
 * - any other port access goes to the server whose claimed ranges contain all of it, else Xen
 *   answers it the same way.
 *
 * Everything the mediator does not need for enumeration throws `Unsupported`.
 */
import {
  RangeSet,
  UnsupportedError,
  addressRange,
  allOnes,
  guestAddress,
  pciConfigAddress,
  type AccessSize,
  type AddressRange,
  type Backend,
  type BackendCapabilities,
  type BackendResources,
  type GuestMemory,
  type IoClaim,
  type IoRequestSink,
  type PciAddress,
  type RamRegion,
} from '@vmed/core';

const CF8 = 0xcf8;

/** A claim as the stand-in records it. */
export interface RecordedClaim {
  readonly space: 'mmio' | 'pio' | 'pci';
  readonly first: bigint;
  readonly last: bigint;
}

function unsupported(op: string): never {
  throw new UnsupportedError(op, 'not part of the routing model');
}

/** See the module doc; `guestType` decides `pciHostBridge` as the Xen backend does. */
export class XenRoutingModel {
  readonly claims = new Set<RecordedClaim>();
  readonly backend: Backend;
  #sink: IoRequestSink | undefined;
  #latch = 0;
  /** Port accesses that reached the device model (the ioreq round trips). */
  serverPortAccesses = 0;

  constructor(guestType: 'pvh' | 'hvm', ramBytes = 256n << 20n) {
    const capabilities: BackendCapabilities = {
      hypervisor: 'xen-model',
      pciConfig: 'hypervisor',
      pciHostBridge: guestType === 'pvh' ? 'device-model' : 'platform',
      directRegions: false,
      maxMsiRoutes: 16,
      signalMsi: false,
      lineIrq: false,
      doorbells: 'userspace',
      doorbellDatamatch: false,
      dirtyTracking: false,
      pageTracking: false,
      pinning: false,
      eventChannels: false,
    };
    const memory: GuestMemory = {
      ram: new RangeSet<RamRegion>([{ base: guestAddress(0), length: ramBytes, name: 'low' }]),
      read: () => unsupported('model.memory.read'),
      write: () => unsupported('model.memory.write'),
      view: () => unsupported('model.memory.view'),
      pin: () => unsupported('model.memory.pin'),
    };
    let closed = false;
    const claim = (space: RecordedClaim['space'], range: AddressRange): IoClaim => {
      const record = { space, first: range.base, last: range.base + range.length - 1n };
      this.claims.add(record);
      let disposed = false;
      return {
        space,
        range,
        get disposed() {
          return disposed;
        },
        dispose: () => {
          disposed = true;
          this.claims.delete(record);
        },
        [Symbol.dispose]() {
          this.dispose();
        },
      };
    };
    const resources = (): BackendResources => ({ fds: 0, mappings: 0, msiRoutes: 0, lineIrqs: 0, doorbells: 0, claims: this.claims.size, pins: 0, pageTracks: 0, workers: 0 });
    this.backend = {
      capabilities,
      memory,
      get closed() {
        return closed;
      },
      attach: (sink) => {
        this.#sink = sink;
      },
      claimIo: (space, range) => claim(space, range),
      claimPciFunction: (d: PciAddress) => claim('pci', addressRange(pciConfigAddress(d, 0), 4096n)),
      allocateSharedMemory: () => unsupported('model.allocateSharedMemory'),
      mapDirect: () => unsupported('model.mapDirect'),
      createMsiRoute: () => unsupported('model.createMsiRoute'),
      signalMsi: () => unsupported('model.signalMsi'),
      createLineIrq: () => unsupported('model.createLineIrq'),
      createEventChannel: () => unsupported('model.createEventChannel'),
      registerIoEvent: () => unsupported('model.registerIoEvent'),
      trackWrites: () => unsupported('model.trackWrites'),
      dirty: {
        mode: 'push',
        active: false,
        start: () => unsupported('model.dirty'),
        stop: () => unsupported('model.dirty'),
        pull: () => unsupported('model.dirty'),
        push: () => unsupported('model.dirty'),
      },
      resources,
      close: async () => {
        closed = true;
      },
      [Symbol.asyncDispose]: async () => {
        closed = true;
      },
    };
  }

  #claimed(space: RecordedClaim['space'], first: bigint, last: bigint): boolean {
    for (const c of this.claims) if (c.space === space && c.first <= first && last <= c.last) return true;
    return false;
  }

  /** The PCI request Xen makes of a data-port access, when the latch is enabled. */
  #pciTarget(port: number): bigint | undefined {
    if ((port & ~3) !== 0xcfc || (this.#latch & 0x8000_0000) === 0) return undefined;
    const bdf = { bus: (this.#latch >>> 16) & 0xff, device: (this.#latch >>> 11) & 0x1f, function: (this.#latch >>> 8) & 7 };
    return pciConfigAddress(bdf, (this.#latch & 0xfc) | (port & 3));
  }

  /** A guest `in` of `size` bytes from `port`. */
  in(port: number, size: AccessSize): number {
    const sink = this.#sink;
    const pci = this.#pciTarget(port);
    if (pci !== undefined) {
      const fn = pci & ~0xfffn;
      return sink !== undefined && this.#claimed('pci', fn, fn) ? Number(sink.read('pci', pci, size)) : Number(allOnes(size));
    }
    if (sink === undefined || !this.#claimed('pio', BigInt(port), BigInt(port + size - 1))) return Number(allOnes(size));
    this.serverPortAccesses++;
    return Number(sink.read('pio', BigInt(port), size));
  }

  /** A guest `out` of `size` bytes of `value` to `port`. */
  out(port: number, size: AccessSize, value: number): void {
    const sink = this.#sink;
    const pci = this.#pciTarget(port);
    if (pci !== undefined) {
      const fn = pci & ~0xfffn;
      if (sink !== undefined && this.#claimed('pci', fn, fn)) sink.write('pci', pci, size, BigInt(value));
      return;
    }
    // hvm_access_cf8: latch, then fall through to whoever serves the port.
    if (port === CF8 && size === 4) this.#latch = value >>> 0;
    if (sink === undefined || !this.#claimed('pio', BigInt(port), BigInt(port + size - 1))) return;
    this.serverPortAccesses++;
    sink.write('pio', BigInt(port), size, BigInt(value));
  }
}
