/**
 * The Xen ABI as vmed uses it: the layouts of the pages an IOREQ server shares with Xen, the
 * constants of the device-model interface, and the koffi prototypes of every library function
 * the backend calls. One place, each item beside the header line it mirrors, so a reviewer can
 * hold this file next to `/usr/include/xen/hvm/ioreq.h`, `xendevicemodel.h`,
 * `xenforeignmemory.h`, `xenevtchn.h` and `xenstore.h`. `test/abi.test.ts` compiles a C program
 * against the installed headers and checks every layout and constant here against it.
 *
 * Nothing in this module loads a library: `libs/load.ts` does, on first use, so importing the
 * Xen backend on a machine without Xen costs nothing until a session opens. This module imports
 * only koffi, so the event-channel worker loads it cheaply.
 */
import koffi, { type LibraryHandle } from 'koffi';

/** A native pointer as koffi 3 passes it: a bigint address; `null` is NULL. */
export type Pointer = bigint;

// ---------------------------------------------------------------------------------------------
// xen/hvm/ioreq.h — struct ioreq (ioreq_t), one per vCPU in the shared ioreq page
// ---------------------------------------------------------------------------------------------

/** `sizeof(ioreq_t)`; vCPU n's slot is at `n * IOREQ_SIZE` in the shared page. */
export const IOREQ_SIZE = 32;
/** `uint64_t addr;          physical address` */
export const IOREQ_OFF_ADDR = 0;
/** `uint64_t data;          data (or paddr of data)` */
export const IOREQ_OFF_DATA = 8;
/** `uint32_t count;         for rep prefixes` */
export const IOREQ_OFF_COUNT = 16;
/** `uint32_t size;          size in bytes` */
export const IOREQ_OFF_SIZE = 20;
/** `uint32_t vp_eport;      evtchn for notifications to/from device model` */
export const IOREQ_OFF_VP_EPORT = 24;
/** The byte holding `uint8_t state:4; data_is_ptr:1; dir:1; df:1; _pad1:1;` */
export const IOREQ_OFF_FLAGS = 30;
/** `uint8_t type;           I/O type` */
export const IOREQ_OFF_TYPE = 31;

/** `state:4` — bits 0..3 of the flags byte. */
export const IOREQ_FLAG_STATE_MASK = 0x0f;
/** `data_is_ptr:1` — if 1, data above is the guest paddr of the real data to use. */
export const IOREQ_FLAG_DATA_IS_PTR = 0x10;
/** `dir:1` — 1=read, 0=write. */
export const IOREQ_FLAG_DIR_READ = 0x20;
/** `df:1` — the guest's direction flag: rep iterations walk down. */
export const IOREQ_FLAG_DF = 0x40;

/** `#define IOREQ_READ      1` / `#define IOREQ_WRITE     0` */
export const IOREQ_READ = 1;
export const IOREQ_WRITE = 0;

/** `#define STATE_IOREQ_NONE        0` */
export const STATE_IOREQ_NONE = 0;
/** `#define STATE_IOREQ_READY       1` */
export const STATE_IOREQ_READY = 1;
/** `#define STATE_IOREQ_INPROCESS   2` */
export const STATE_IOREQ_INPROCESS = 2;
/** `#define STATE_IORESP_READY      3` */
export const STATE_IORESP_READY = 3;

/** `#define IOREQ_TYPE_PIO          0 /* pio *\/` */
export const IOREQ_TYPE_PIO = 0;
/** `#define IOREQ_TYPE_COPY         1 /* mmio ops *\/` */
export const IOREQ_TYPE_COPY = 1;
/** `#define IOREQ_TYPE_PCI_CONFIG   2` — addr is `SEGMENT<<48 | BUS<<40 | DEV<<35 | FN<<32 | OFFSET`. */
export const IOREQ_TYPE_PCI_CONFIG = 2;
/** `#define IOREQ_TYPE_TIMEOFFSET   7` */
export const IOREQ_TYPE_TIMEOFFSET = 7;
/** `#define IOREQ_TYPE_INVALIDATE   8 /* mapcache *\/` */
export const IOREQ_TYPE_INVALIDATE = 8;

/** The page size of every Xen frame we map (`XC_PAGE_SIZE`). */
export const XEN_PAGE_SIZE = 4096;
export const XEN_PAGE_SHIFT = 12n;
/** Slots in one shared ioreq page: Xen 4.17 uses a single page, so at most this many vCPUs. */
export const IOREQ_MAX_VCPUS = XEN_PAGE_SIZE / IOREQ_SIZE;

// ---------------------------------------------------------------------------------------------
// xen/hvm/ioreq.h — struct buf_ioreq and struct buffered_iopage (the buffered ring)
// ---------------------------------------------------------------------------------------------

/** `#define IOREQ_BUFFER_SLOT_NUM     511 /* 8 bytes each, plus 2 4-byte indexes *\/` */
export const IOREQ_BUFFER_SLOT_NUM = 511;
/** `uint32_t read_pointer;` — advanced by the device model only. */
export const BUFIOREQ_OFF_READ_POINTER = 0;
/** `uint32_t write_pointer;` — advanced by Xen only. */
export const BUFIOREQ_OFF_WRITE_POINTER = 4;
/** `buf_ioreq_t buf_ioreq[IOREQ_BUFFER_SLOT_NUM];` */
export const BUFIOREQ_OFF_SLOTS = 8;
/** `sizeof(buf_ioreq_t)` */
export const BUF_IOREQ_SIZE = 8;
/**
 * `uint8_t type; uint8_t pad:1; dir:1; size:2; uint32_t addr:20;` share the first 32-bit word
 * of a slot (GCC packs `addr:20` into the same unit after the 12 bits before it): type in bits
 * 0..7, dir bit 9, size bits 10..11 (0=>1, 1=>2, 2=>4, 3=>8 — 8 takes two slots, the second
 * holding the high 32 bits in its data), addr bits 12..31.
 */
export const BUF_IOREQ_TYPE_MASK = 0xff;
export const BUF_IOREQ_DIR_SHIFT = 9;
export const BUF_IOREQ_SIZE_SHIFT = 10;
export const BUF_IOREQ_ADDR_SHIFT = 12;
/** `uint32_t data;` */
export const BUF_IOREQ_OFF_DATA = 4;

// ---------------------------------------------------------------------------------------------
// xen/hvm/hvm_op.h, xen/hvm/dm_op.h, xen/memory.h — device-model constants
// ---------------------------------------------------------------------------------------------

/** `#define HVM_IOREQSRV_BUFIOREQ_OFF    0` */
export const HVM_IOREQSRV_BUFIOREQ_OFF = 0;
/** `#define HVM_IOREQSRV_BUFIOREQ_LEGACY 1` */
export const HVM_IOREQSRV_BUFIOREQ_LEGACY = 1;
/** `#define HVM_IOREQSRV_BUFIOREQ_ATOMIC 2` — Xen canonicalises both ring pointers with one 64-bit cmpxchg. */
export const HVM_IOREQSRV_BUFIOREQ_ATOMIC = 2;

/** `#define XEN_DMOP_IO_RANGE_PORT   0 /* I/O port range *\/` */
export const XEN_DMOP_IO_RANGE_PORT = 0;
/** `#define XEN_DMOP_IO_RANGE_MEMORY 1 /* MMIO range *\/` */
export const XEN_DMOP_IO_RANGE_MEMORY = 1;
/** `#define XEN_DMOP_IO_RANGE_PCI    2 /* PCI segment/bus/dev/func range *\/` */
export const XEN_DMOP_IO_RANGE_PCI = 2;

/** `#define XEN_DMOP_IOREQ_MEM_ACCESS_READ (1u << 0)` */
export const XEN_DMOP_IOREQ_MEM_ACCESS_READ = 1;
/** `#define XEN_DMOP_IOREQ_MEM_ACCESS_WRITE (1u << 1)` — the only flag Xen 4.17 accepts. */
export const XEN_DMOP_IOREQ_MEM_ACCESS_WRITE = 2;

/** `HVMMEM_ram_rw,             /* Normal read/write guest RAM *\/` */
export const HVMMEM_ram_rw = 0;
/** `HVMMEM_ioreq_server        /* Memory type claimed by an ioreq server *\/` */
export const HVMMEM_ioreq_server = 4;

/** `#define XENMEM_resource_ioreq_server 0` */
export const XENMEM_resource_ioreq_server = 0;
/** `#define XENMEM_resource_ioreq_server_frame_bufioreq 0` */
export const XENMEM_resource_ioreq_server_frame_bufioreq = 0;
/** `#define XENMEM_resource_ioreq_server_frame_ioreq(n) (1 + (n))` */
export function XENMEM_resource_ioreq_server_frame_ioreq(n: number): number {
  return 1 + n;
}

/** `#define DOMID_FIRST_RESERVED xen_mk_uint(0x7FF0)` — domids at or above are special. */
export const DOMID_FIRST_RESERVED = 0x7ff0;

// ---------------------------------------------------------------------------------------------
// xenstore_lib.h — struct xs_permissions
// ---------------------------------------------------------------------------------------------

/** `sizeof(struct xs_permissions)`: `unsigned int id; unsigned int perms;` */
export const XS_PERMISSIONS_SIZE = 8;
/** `#define XS_PERM_NONE		0x00` */
export const XS_PERM_NONE = 0;
/** `#define XS_PERM_READ		0x01` */
export const XS_PERM_READ = 1;
/** `#define XS_PERM_WRITE		0x02` */
export const XS_PERM_WRITE = 2;
/** `#define XBT_NULL 0` */
export const XBT_NULL = 0;

// ---------------------------------------------------------------------------------------------
// libc: sys/mman.h, poll.h, sys/eventfd.h (the event-channel waiter)
// ---------------------------------------------------------------------------------------------

/** `#define PROT_READ 0x1` / `#define PROT_WRITE 0x2` */
export const PROT_READ = 1;
export const PROT_WRITE = 2;
/** `sizeof(struct pollfd)`: `int fd; short events; short revents;` */
export const POLLFD_SIZE = 8;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
/** `EFD_CLOEXEC = 02000000` */
export const EFD_CLOEXEC = 0o2000000;

// ---------------------------------------------------------------------------------------------
// koffi helpers (the libraries are loaded by libs/load.ts)
// ---------------------------------------------------------------------------------------------

/** Declares every prototype of `table` on `lib`: the typed interface over koffi's functions. */
export function bindPrototypes<T>(lib: LibraryHandle, table: Readonly<Record<keyof T, string>>): T {
  const out: Record<string, unknown> = {};
  for (const [name, decl] of Object.entries(table) as Array<[string, string]>) out[name] = lib.func(decl);
  return out as T;
}

/** The `errno` left by the last native call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** Wraps external memory (an mmap'd or foreign-mapped range) as an ArrayBuffer, without copying. */
export function viewNative(pointer: Pointer, length: number): ArrayBuffer {
  return koffi.view(pointer, length);
}

/** Reads a NUL-terminated or length-bounded C string. */
export function decodeCString(pointer: Pointer, length: number): string {
  return koffi.decode(pointer, 'char', length) as string;
}

/** `free(3)` for memory a library returned with `malloc` (xenstore results). */
export function freeNative(pointer: Pointer): void {
  koffi.free(pointer);
}

// ---------------------------------------------------------------------------------------------
// xendevicemodel.h
// ---------------------------------------------------------------------------------------------

/**
 * libxendevicemodel. Every function but `open`/`close` is a DM op on the target domain; each
 * returns 0 or -1 with `errno` set. Buffers passed as typed arrays are read or written during
 * the call only.
 */
export interface DeviceModelLib {
  /** `xendevicemodel_handle *xendevicemodel_open(struct xentoollog_logger *logger, unsigned int open_flags);` */
  open(logger: null, flags: number): Pointer | null;
  /** `int xendevicemodel_close(xendevicemodel_handle *dmod);` */
  close(dmod: Pointer): number;
  /** `int xendevicemodel_create_ioreq_server(xendevicemodel_handle *dmod, domid_t domid, int handle_bufioreq, ioservid_t *id);` */
  createIoreqServer(dmod: Pointer, domid: number, handleBufioreq: number, id: Uint16Array): number;
  /** `int xendevicemodel_get_ioreq_server_info(dmod, domid_t domid, ioservid_t id, xen_pfn_t *ioreq_gfn, xen_pfn_t *bufioreq_gfn, evtchn_port_t *bufioreq_port);` */
  getIoreqServerInfo(
    dmod: Pointer,
    domid: number,
    id: number,
    ioreqGfn: BigUint64Array | null,
    bufioreqGfn: BigUint64Array | null,
    bufioreqPort: Uint32Array | null,
  ): number;
  /** `int xendevicemodel_map_io_range_to_ioreq_server(dmod, domid_t domid, ioservid_t id, int is_mmio, uint64_t start, uint64_t end);` (end inclusive) */
  mapIoRangeToIoreqServer(dmod: Pointer, domid: number, id: number, isMmio: number, start: bigint, end: bigint): number;
  /** `int xendevicemodel_unmap_io_range_from_ioreq_server(dmod, domid_t domid, ioservid_t id, int is_mmio, uint64_t start, uint64_t end);` */
  unmapIoRangeFromIoreqServer(dmod: Pointer, domid: number, id: number, isMmio: number, start: bigint, end: bigint): number;
  /** `int xendevicemodel_map_mem_type_to_ioreq_server(dmod, domid_t domid, ioservid_t id, uint16_t type, uint32_t flags);` */
  mapMemTypeToIoreqServer(dmod: Pointer, domid: number, id: number, type: number, flags: number): number;
  /** `int xendevicemodel_map_pcidev_to_ioreq_server(dmod, domid_t domid, ioservid_t id, uint16_t segment, uint8_t bus, uint8_t device, uint8_t function);` */
  mapPcidevToIoreqServer(dmod: Pointer, domid: number, id: number, segment: number, bus: number, device: number, fn: number): number;
  /** `int xendevicemodel_unmap_pcidev_from_ioreq_server(dmod, domid_t domid, ioservid_t id, uint16_t segment, uint8_t bus, uint8_t device, uint8_t function);` */
  unmapPcidevFromIoreqServer(dmod: Pointer, domid: number, id: number, segment: number, bus: number, device: number, fn: number): number;
  /** `int xendevicemodel_destroy_ioreq_server(dmod, domid_t domid, ioservid_t id);` */
  destroyIoreqServer(dmod: Pointer, domid: number, id: number): number;
  /** `int xendevicemodel_set_ioreq_server_state(dmod, domid_t domid, ioservid_t id, int enabled);` */
  setIoreqServerState(dmod: Pointer, domid: number, id: number, enabled: number): number;
  /** `int xendevicemodel_set_pci_intx_level(dmod, domid_t domid, uint16_t segment, uint8_t bus, uint8_t device, uint8_t intx, unsigned int level);` */
  setPciIntxLevel(dmod: Pointer, domid: number, segment: number, bus: number, device: number, intx: number, level: number): number;
  /** `int xendevicemodel_set_isa_irq_level(dmod, domid_t domid, uint8_t irq, unsigned int level);` */
  setIsaIrqLevel(dmod: Pointer, domid: number, irq: number, level: number): number;
  /** `int xendevicemodel_inject_msi(dmod, domid_t domid, uint64_t msi_addr, uint32_t msi_data);` */
  injectMsi(dmod: Pointer, domid: number, address: bigint, data: number): number;
  /** `int xendevicemodel_modified_memory(dmod, domid_t domid, uint64_t first_pfn, uint32_t nr);` */
  modifiedMemory(dmod: Pointer, domid: number, firstPfn: bigint, nr: number): number;
  /** `int xendevicemodel_set_mem_type(dmod, domid_t domid, hvmmem_type_t mem_type, uint64_t first_pfn, uint32_t nr);` */
  setMemType(dmod: Pointer, domid: number, memType: number, firstPfn: bigint, nr: number): number;
  /** `int xendevicemodel_nr_vcpus(dmod, domid_t domid, unsigned int *vcpus);` */
  nrVcpus(dmod: Pointer, domid: number, vcpus: Uint32Array): number;
  /** `int xendevicemodel_restrict(xendevicemodel_handle *dmod, domid_t domid);` */
  restrict(dmod: Pointer, domid: number): number;
}

/** The koffi prototypes of DeviceModelLib, by method; the first `void *` is the library's `xendevicemodel_handle *`. */
export const DEVICEMODEL_PROTOTYPES: Readonly<Record<keyof DeviceModelLib, string>> = {
  open: 'void *xendevicemodel_open(void *logger, unsigned int open_flags)',
  close: 'int xendevicemodel_close(void *dmod)',
  createIoreqServer: 'int xendevicemodel_create_ioreq_server(void *dmod, uint16_t domid, int handle_bufioreq, _Out_ uint16_t *id)',
  getIoreqServerInfo: 'int xendevicemodel_get_ioreq_server_info(void *dmod, uint16_t domid, uint16_t id, _Out_ uint64_t *ioreq_gfn, _Out_ uint64_t *bufioreq_gfn, _Out_ uint32_t *bufioreq_port)',
  mapIoRangeToIoreqServer: 'int xendevicemodel_map_io_range_to_ioreq_server(void *dmod, uint16_t domid, uint16_t id, int is_mmio, uint64_t start, uint64_t end)',
  unmapIoRangeFromIoreqServer: 'int xendevicemodel_unmap_io_range_from_ioreq_server(void *dmod, uint16_t domid, uint16_t id, int is_mmio, uint64_t start, uint64_t end)',
  mapMemTypeToIoreqServer: 'int xendevicemodel_map_mem_type_to_ioreq_server(void *dmod, uint16_t domid, uint16_t id, uint16_t type, uint32_t flags)',
  mapPcidevToIoreqServer: 'int xendevicemodel_map_pcidev_to_ioreq_server(void *dmod, uint16_t domid, uint16_t id, uint16_t segment, uint8_t bus, uint8_t device, uint8_t function)',
  unmapPcidevFromIoreqServer: 'int xendevicemodel_unmap_pcidev_from_ioreq_server(void *dmod, uint16_t domid, uint16_t id, uint16_t segment, uint8_t bus, uint8_t device, uint8_t function)',
  destroyIoreqServer: 'int xendevicemodel_destroy_ioreq_server(void *dmod, uint16_t domid, uint16_t id)',
  setIoreqServerState: 'int xendevicemodel_set_ioreq_server_state(void *dmod, uint16_t domid, uint16_t id, int enabled)',
  setPciIntxLevel: 'int xendevicemodel_set_pci_intx_level(void *dmod, uint16_t domid, uint16_t segment, uint8_t bus, uint8_t device, uint8_t intx, unsigned int level)',
  setIsaIrqLevel: 'int xendevicemodel_set_isa_irq_level(void *dmod, uint16_t domid, uint8_t irq, unsigned int level)',
  injectMsi: 'int xendevicemodel_inject_msi(void *dmod, uint16_t domid, uint64_t msi_addr, uint32_t msi_data)',
  modifiedMemory: 'int xendevicemodel_modified_memory(void *dmod, uint16_t domid, uint64_t first_pfn, uint32_t nr)',
  // hvmmem_type_t is a C enum: int-sized on the SysV x86-64 ABI.
  setMemType: 'int xendevicemodel_set_mem_type(void *dmod, uint16_t domid, int mem_type, uint64_t first_pfn, uint32_t nr)',
  nrVcpus: 'int xendevicemodel_nr_vcpus(void *dmod, uint16_t domid, _Out_ uint32_t *vcpus)',
  restrict: 'int xendevicemodel_restrict(void *dmod, uint16_t domid)',
};


// ---------------------------------------------------------------------------------------------
// xenforeignmemory.h
// ---------------------------------------------------------------------------------------------

/** libxenforeignmemory: mappings of another domain's frames into this process. */
export interface ForeignMemoryLib {
  /** `xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger, unsigned open_flags);` */
  open(logger: null, flags: number): Pointer | null;
  /** `int xenforeignmemory_close(xenforeignmemory_handle *fmem);` */
  close(fmem: Pointer): number;
  /** `void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom, int prot, size_t pages, const xen_pfn_t arr[], int err[]);` */
  map(fmem: Pointer, domid: number, prot: number, pages: number, pfns: BigUint64Array, err: Int32Array): Pointer | null;
  /** `int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages);` */
  unmap(fmem: Pointer, address: Pointer, pages: number): number;
  /** `int xenforeignmemory_restrict(xenforeignmemory_handle *fmem, domid_t domid);` */
  restrict(fmem: Pointer, domid: number): number;
  /**
   * `xenforeignmemory_resource_handle *xenforeignmemory_map_resource(xenforeignmemory_handle *fmem, domid_t domid,
   *  unsigned int type, unsigned int id, unsigned long frame, unsigned long nr_frames, void **paddr, int prot, int flags);`
   */
  mapResource(
    fmem: Pointer,
    domid: number,
    type: number,
    id: number,
    frame: number,
    nrFrames: number,
    paddr: BigUint64Array,
    prot: number,
    flags: number,
  ): Pointer | null;
  /** `int xenforeignmemory_unmap_resource(xenforeignmemory_handle *fmem, xenforeignmemory_resource_handle *fres);` */
  unmapResource(fmem: Pointer, fres: Pointer): number;
}

/** The koffi prototypes of ForeignMemoryLib, by method; the first `void *` is the library's `xenforeignmemory_handle *`. */
export const FOREIGNMEMORY_PROTOTYPES: Readonly<Record<keyof ForeignMemoryLib, string>> = {
  open: 'void *xenforeignmemory_open(void *logger, unsigned int open_flags)',
  close: 'int xenforeignmemory_close(void *fmem)',
  // xen_pfn_t is `unsigned long`: 64 bits on x86-64.
  map: 'void *xenforeignmemory_map(void *fmem, uint32_t dom, int prot, size_t pages, const uint64_t *arr, _Out_ int *err)',
  unmap: 'int xenforeignmemory_unmap(void *fmem, void *addr, size_t pages)',
  restrict: 'int xenforeignmemory_restrict(void *fmem, uint16_t domid)',
  mapResource: 'void *xenforeignmemory_map_resource(void *fmem, uint16_t domid, unsigned int type, unsigned int id, unsigned long frame, unsigned long nr_frames, _Inout_ uint64_t *paddr, int prot, int flags)',
  unmapResource: 'int xenforeignmemory_unmap_resource(void *fmem, void *fres)',
};


// ---------------------------------------------------------------------------------------------
// xenevtchn.h
// ---------------------------------------------------------------------------------------------

/** libxenevtchn: event channels through `/dev/xen/evtchn`. Ports are `evtchn_port_t` (uint32). */
export interface EvtchnLib {
  /** `xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags);` */
  open(logger: null, flags: number): Pointer | null;
  /** `int xenevtchn_close(xenevtchn_handle *xce);` */
  close(xce: Pointer): number;
  /** `int xenevtchn_fd(xenevtchn_handle *xce);` */
  fd(xce: Pointer): number;
  /** `int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port);` */
  notify(xce: Pointer, port: number): number;
  /** `xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid);` */
  bindUnboundPort(xce: Pointer, domid: number): number;
  /** `xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid, evtchn_port_t remote_port);` */
  bindInterdomain(xce: Pointer, domid: number, remotePort: number): number;
  /** `int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port);` */
  unbind(xce: Pointer, port: number): number;
  /** `int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port);` */
  unmask(xce: Pointer, port: number): number;
}

/** The koffi prototypes of EvtchnLib, by method; the first `void *` is the library's `xenevtchn_handle *`. */
export const EVTCHN_PROTOTYPES: Readonly<Record<keyof EvtchnLib, string>> = {
  open: 'void *xenevtchn_open(void *logger, unsigned int flags)',
  close: 'int xenevtchn_close(void *xce)',
  fd: 'int xenevtchn_fd(void *xce)',
  notify: 'int xenevtchn_notify(void *xce, uint32_t port)',
  bindUnboundPort: 'int xenevtchn_bind_unbound_port(void *xce, uint32_t domid)',
  bindInterdomain: 'int xenevtchn_bind_interdomain(void *xce, uint32_t domid, uint32_t remote_port)',
  unbind: 'int xenevtchn_unbind(void *xce, uint32_t port)',
  unmask: 'int xenevtchn_unmask(void *xce, uint32_t port)',
};


// ---------------------------------------------------------------------------------------------
// xenstore.h
// ---------------------------------------------------------------------------------------------

/** libxenstore: the connection to xenstored. Results of `xs_read` are malloc'd: free them. */
export interface XenstoreLib {
  /** `struct xs_handle *xs_open(unsigned long flags);` */
  open(flags: number): Pointer | null;
  /** `void xs_close(struct xs_handle *xsh /* NULL ok *\/);` */
  close(xsh: Pointer): void;
  /** `void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *len);` */
  read(xsh: Pointer, t: number, path: string, len: Uint32Array): Pointer | null;
  /** `bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path, const void *data, unsigned int len);` */
  write(xsh: Pointer, t: number, path: string, data: Uint8Array, len: number): boolean;
  /** `bool xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path);` */
  rm(xsh: Pointer, t: number, path: string): boolean;
  /** `bool xs_set_permissions(struct xs_handle *h, xs_transaction_t t, const char *path, struct xs_permissions *perms, unsigned int num_perms);` */
  setPermissions(xsh: Pointer, t: number, path: string, perms: Uint32Array, count: number): boolean;
}

/** The koffi prototypes of XenstoreLib, by method; the first `void *` is the library's `struct xs_handle *`. */
export const XENSTORE_PROTOTYPES: Readonly<Record<keyof XenstoreLib, string>> = {
  open: 'void *xs_open(unsigned long flags)',
  close: 'void xs_close(void *xsh)',
  read: 'void *xs_read(void *h, uint32_t t, const char *path, _Out_ uint32_t *len)',
  write: 'bool xs_write(void *h, uint32_t t, const char *path, const void *data, unsigned int len)',
  rm: 'bool xs_rm(void *h, uint32_t t, const char *path)',
  // struct xs_permissions { unsigned int id; unsigned int perms; }: passed as id/perms pairs.
  setPermissions: 'bool xs_set_permissions(void *h, uint32_t t, const char *path, const uint32_t *perms, unsigned int num_perms)',
};


// ---------------------------------------------------------------------------------------------
// libc (unistd.h, poll.h, sys/eventfd.h): the event-channel waiter's wake-up plumbing
// ---------------------------------------------------------------------------------------------

/** The few libc calls the event-channel waiter makes. */
export interface LibcLib {
  /** `int poll(struct pollfd *fds, nfds_t nfds, int timeout);` — `fds` is written (revents). */
  poll(fds: Int32Array, nfds: number, timeoutMs: number): number;
  /** `ssize_t read(int fd, void *buf, size_t count);` */
  read(fd: number, buf: Uint8Array | Uint32Array, count: number): number;
  /** `ssize_t write(int fd, const void *buf, size_t count);` */
  write(fd: number, buf: Uint8Array | BigUint64Array, count: number): number;
  /** `int eventfd(unsigned int initval, int flags);` */
  eventfd(initval: number, flags: number): number;
  /** `int close(int fd);` */
  close(fd: number): number;
}

/** The koffi prototypes of the libc calls. */
export const LIBC_PROTOTYPES: Readonly<Record<keyof LibcLib, string>> = {
  poll: 'int poll(void *fds, unsigned long nfds, int timeout)',
  read: 'long read(int fd, void *buf, unsigned long count)',
  write: 'long write(int fd, const void *buf, unsigned long count)',
  eventfd: 'int eventfd(unsigned int initval, int flags)',
  close: 'int close(int fd)',
};

