/**
 * The KVM ABI: every ioctl number, constant and struct layout this backend uses, grouped by the
 * file descriptor the ioctl applies to, each beside the `linux/kvm.h` (or x86 `asm/kvm.h`)
 * declaration it mirrors. Nothing else in the package defines an ioctl number or an offset:
 * the rest reads `*_OFFSETS` and `*_SIZE` from here. `test/abi-layout.test.ts` checks every
 * size, offset and ioctl number against the C headers compiled with gcc.
 *
 * Structs are anonymous koffi types (no names: a second evaluation of this module in the same
 * thread cannot collide), used for their layout; encoding goes through DataView with the
 * offsets koffi computed, so the layout is written down exactly once.
 */
import koffi from 'koffi';
import type { TypeObject } from 'koffi';

// ---- ioctl number encoding (asm-generic/ioctl.h) ----------------------------------------

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

function ioc(dir: number, type: number, nr: number, size: number): number {
  // _IOC(dir,type,nr,size): dir<<30 | size<<16 | type<<8 | nr, as an unsigned 32-bit value.
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
const io = (nr: number): number => ioc(IOC_NONE, KVMIO, nr, 0);
const iow = (nr: number, size: number): number => ioc(IOC_WRITE, KVMIO, nr, size);
const ior = (nr: number, size: number): number => ioc(IOC_READ, KVMIO, nr, size);

// linux/kvm.h: #define KVMIO 0xAE
export const KVMIO = 0xae;
// linux/kvm.h: #define KVM_API_VERSION 12
export const KVM_API_VERSION = 12;

// ---- struct layouts ---------------------------------------------------------------------

// linux/kvm.h: struct kvm_userspace_memory_region { __u32 slot; __u32 flags; __u64 guest_phys_addr;
//              __u64 memory_size; __u64 userspace_addr; };
export const kvm_userspace_memory_region = koffi.struct({
  slot: 'uint32',
  flags: 'uint32',
  guest_phys_addr: 'uint64',
  memory_size: 'uint64',
  userspace_addr: 'uint64',
});

// linux/kvm.h: struct kvm_dirty_log { __u32 slot; __u32 padding1; union { void *dirty_bitmap; __u64 padding2; }; };
export const kvm_dirty_log = koffi.struct({
  slot: 'uint32',
  padding1: 'uint32',
  dirty_bitmap: 'uint64',
});

// linux/kvm.h: struct kvm_irq_level { union { __u32 irq; __s32 status; }; __u32 level; };
export const kvm_irq_level = koffi.struct({
  irq: 'uint32',
  level: 'uint32',
});

// linux/kvm.h: struct kvm_irqfd { __u32 fd; __u32 gsi; __u32 flags; __u32 resamplefd; __u8 pad[16]; };
export const kvm_irqfd = koffi.struct({
  fd: 'uint32',
  gsi: 'uint32',
  flags: 'uint32',
  resamplefd: 'uint32',
  pad: koffi.array('uint8', 16),
});

// linux/kvm.h: struct kvm_ioeventfd { __u64 datamatch; __u64 addr; __u32 len; __s32 fd; __u32 flags; __u8 pad[36]; };
export const kvm_ioeventfd = koffi.struct({
  datamatch: 'uint64',
  addr: 'uint64',
  len: 'uint32',
  fd: 'int32',
  flags: 'uint32',
  pad: koffi.array('uint8', 36),
});

// linux/kvm.h: struct kvm_irq_routing_irqchip { __u32 irqchip; __u32 pin; };
export const kvm_irq_routing_irqchip = koffi.struct({
  irqchip: 'uint32',
  pin: 'uint32',
});

// linux/kvm.h: struct kvm_irq_routing_msi { __u32 address_lo; __u32 address_hi; __u32 data; union { __u32 pad; __u32 devid; }; };
export const kvm_irq_routing_msi = koffi.struct({
  address_lo: 'uint32',
  address_hi: 'uint32',
  data: 'uint32',
  devid: 'uint32',
});

// linux/kvm.h: struct kvm_irq_routing_entry { __u32 gsi; __u32 type; __u32 flags; __u32 pad;
//              union { struct kvm_irq_routing_irqchip irqchip; struct kvm_irq_routing_msi msi; ... __u32 pad[8]; } u; };
export const kvm_irq_routing_entry = koffi.struct({
  gsi: 'uint32',
  type: 'uint32',
  flags: 'uint32',
  pad: 'uint32',
  u: koffi.union({
    irqchip: kvm_irq_routing_irqchip,
    msi: kvm_irq_routing_msi,
    pad: koffi.array('uint32', 8),
  }),
});

// linux/kvm.h: struct kvm_irq_routing { __u32 nr; __u32 flags; struct kvm_irq_routing_entry entries[]; };
export const kvm_irq_routing = koffi.struct({
  nr: 'uint32',
  flags: 'uint32',
});

// linux/kvm.h: struct kvm_msi { __u32 address_lo; __u32 address_hi; __u32 data; __u32 flags; __u32 devid; __u8 pad[12]; };
export const kvm_msi = koffi.struct({
  address_lo: 'uint32',
  address_hi: 'uint32',
  data: 'uint32',
  flags: 'uint32',
  devid: 'uint32',
  pad: koffi.array('uint8', 12),
});

// linux/kvm.h: struct kvm_mp_state { __u32 mp_state; };
export const kvm_mp_state = koffi.struct({ mp_state: 'uint32' });

// asm/kvm.h: struct kvm_regs { __u64 rax, rbx, rcx, rdx; __u64 rsi, rdi, rsp, rbp; __u64 r8..r15; __u64 rip, rflags; };
export const kvm_regs = koffi.struct({
  rax: 'uint64', rbx: 'uint64', rcx: 'uint64', rdx: 'uint64',
  rsi: 'uint64', rdi: 'uint64', rsp: 'uint64', rbp: 'uint64',
  r8: 'uint64', r9: 'uint64', r10: 'uint64', r11: 'uint64',
  r12: 'uint64', r13: 'uint64', r14: 'uint64', r15: 'uint64',
  rip: 'uint64', rflags: 'uint64',
});

// asm/kvm.h: struct kvm_segment { __u64 base; __u32 limit; __u16 selector; __u8 type;
//            __u8 present, dpl, db, s, l, g, avl; __u8 unusable; __u8 padding; };
export const kvm_segment = koffi.struct({
  base: 'uint64',
  limit: 'uint32',
  selector: 'uint16',
  type: 'uint8',
  present: 'uint8',
  dpl: 'uint8',
  db: 'uint8',
  s: 'uint8',
  l: 'uint8',
  g: 'uint8',
  avl: 'uint8',
  unusable: 'uint8',
  padding: 'uint8',
});

// asm/kvm.h: struct kvm_dtable { __u64 base; __u16 limit; __u16 padding[3]; };
export const kvm_dtable = koffi.struct({
  base: 'uint64',
  limit: 'uint16',
  padding: koffi.array('uint16', 3),
});

// asm/kvm.h: struct kvm_sregs { struct kvm_segment cs, ds, es, fs, gs, ss; struct kvm_segment tr, ldt;
//            struct kvm_dtable gdt, idt; __u64 cr0, cr2, cr3, cr4, cr8; __u64 efer; __u64 apic_base;
//            __u64 interrupt_bitmap[(KVM_NR_INTERRUPTS + 63) / 64]; };
export const kvm_sregs = koffi.struct({
  cs: kvm_segment, ds: kvm_segment, es: kvm_segment, fs: kvm_segment, gs: kvm_segment, ss: kvm_segment,
  tr: kvm_segment, ldt: kvm_segment,
  gdt: kvm_dtable, idt: kvm_dtable,
  cr0: 'uint64', cr2: 'uint64', cr3: 'uint64', cr4: 'uint64', cr8: 'uint64',
  efer: 'uint64',
  apic_base: 'uint64',
  interrupt_bitmap: koffi.array('uint64', 4),
});

// linux/kvm.h: struct kvm_run — the head and the exit union members this backend decodes.
// The union is `char padding[256]` wide; the sync-regs tail is not used.
const kvm_run_io = koffi.struct({
  direction: 'uint8', // KVM_EXIT_IO_IN / KVM_EXIT_IO_OUT
  size: 'uint8', // bytes
  port: 'uint16',
  count: 'uint32',
  data_offset: 'uint64', // relative to kvm_run start
});
const kvm_run_mmio = koffi.struct({
  phys_addr: 'uint64',
  data: koffi.array('uint8', 8),
  len: 'uint32',
  is_write: 'uint8',
});
const kvm_run_internal = koffi.struct({
  suberror: 'uint32',
  ndata: 'uint32',
  data: koffi.array('uint64', 16),
});
const kvm_run_fail_entry = koffi.struct({
  hardware_entry_failure_reason: 'uint64',
  cpu: 'uint32',
});
const kvm_run_hw = koffi.struct({ hardware_exit_reason: 'uint64' });
export const kvm_run = koffi.struct({
  request_interrupt_window: 'uint8',
  immediate_exit: 'uint8',
  padding1: koffi.array('uint8', 6),
  exit_reason: 'uint32',
  ready_for_interrupt_injection: 'uint8',
  if_flag: 'uint8',
  flags: 'uint16',
  cr8: 'uint64',
  apic_base: 'uint64',
  exit: koffi.union({
    hw: kvm_run_hw,
    fail_entry: kvm_run_fail_entry,
    io: kvm_run_io,
    mmio: kvm_run_mmio,
    internal: kvm_run_internal,
    padding: koffi.array('uint8', 256),
  }),
});

const off = (type: TypeObject, member: string): number => koffi.offsetof(type, member);
const EXIT = off(kvm_run, 'exit');

/** Offsets in the mmap'd `struct kvm_run` read on every exit (DataView, no koffi call). */
export const KVM_RUN_OFFSETS = {
  immediateExit: off(kvm_run, 'immediate_exit'),
  exitReason: off(kvm_run, 'exit_reason'),
  ioDirection: EXIT + off(kvm_run_io, 'direction'),
  ioSize: EXIT + off(kvm_run_io, 'size'),
  ioPort: EXIT + off(kvm_run_io, 'port'),
  ioCount: EXIT + off(kvm_run_io, 'count'),
  ioDataOffset: EXIT + off(kvm_run_io, 'data_offset'),
  mmioPhysAddr: EXIT + off(kvm_run_mmio, 'phys_addr'),
  mmioData: EXIT + off(kvm_run_mmio, 'data'),
  mmioLen: EXIT + off(kvm_run_mmio, 'len'),
  mmioIsWrite: EXIT + off(kvm_run_mmio, 'is_write'),
  internalSuberror: EXIT + off(kvm_run_internal, 'suberror'),
  internalNdata: EXIT + off(kvm_run_internal, 'ndata'),
  internalData: EXIT + off(kvm_run_internal, 'data'),
  failEntryReason: EXIT + off(kvm_run_fail_entry, 'hardware_entry_failure_reason'),
  failEntryCpu: EXIT + off(kvm_run_fail_entry, 'cpu'),
  hwExitReason: EXIT + off(kvm_run_hw, 'hardware_exit_reason'),
} as const;

/** Sizes of the argument structs, for buffers allocated once per object. */
export const KVM_SIZES = {
  userspaceMemoryRegion: koffi.sizeof(kvm_userspace_memory_region),
  dirtyLog: koffi.sizeof(kvm_dirty_log),
  irqLevel: koffi.sizeof(kvm_irq_level),
  irqfd: koffi.sizeof(kvm_irqfd),
  ioeventfd: koffi.sizeof(kvm_ioeventfd),
  irqRouting: koffi.sizeof(kvm_irq_routing),
  irqRoutingEntry: koffi.sizeof(kvm_irq_routing_entry),
  msi: koffi.sizeof(kvm_msi),
  mpState: koffi.sizeof(kvm_mp_state),
  regs: koffi.sizeof(kvm_regs),
  sregs: koffi.sizeof(kvm_sregs),
  segment: koffi.sizeof(kvm_segment),
  dtable: koffi.sizeof(kvm_dtable),
} as const;

/** Member offsets of each argument struct, for DataView encoding. */
export function offsets<const K extends string>(type: TypeObject, members: readonly K[]): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const m of members) out[m] = off(type, m);
  return out;
}

export const MEMORY_REGION = offsets(kvm_userspace_memory_region, ['slot', 'flags', 'guest_phys_addr', 'memory_size', 'userspace_addr']);
export const DIRTY_LOG = offsets(kvm_dirty_log, ['slot', 'dirty_bitmap']);
export const IRQ_LEVEL = offsets(kvm_irq_level, ['irq', 'level']);
export const IRQFD = offsets(kvm_irqfd, ['fd', 'gsi', 'flags', 'resamplefd']);
export const IOEVENTFD = offsets(kvm_ioeventfd, ['datamatch', 'addr', 'len', 'fd', 'flags']);
export const IRQ_ROUTING = offsets(kvm_irq_routing, ['nr', 'flags']);
export const IRQ_ROUTING_ENTRY = {
  ...offsets(kvm_irq_routing_entry, ['gsi', 'type', 'flags', 'u']),
  irqchipChip: off(kvm_irq_routing_entry, 'u') + off(kvm_irq_routing_irqchip, 'irqchip'),
  irqchipPin: off(kvm_irq_routing_entry, 'u') + off(kvm_irq_routing_irqchip, 'pin'),
  msiAddressLo: off(kvm_irq_routing_entry, 'u') + off(kvm_irq_routing_msi, 'address_lo'),
  msiAddressHi: off(kvm_irq_routing_entry, 'u') + off(kvm_irq_routing_msi, 'address_hi'),
  msiData: off(kvm_irq_routing_entry, 'u') + off(kvm_irq_routing_msi, 'data'),
} as const;
export const MSI = offsets(kvm_msi, ['address_lo', 'address_hi', 'data', 'flags', 'devid']);
export const MP_STATE = offsets(kvm_mp_state, ['mp_state']);
export const REGS = offsets(kvm_regs, [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
]);
export const SEGMENT = offsets(kvm_segment, [
  'base', 'limit', 'selector', 'type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable',
]);
export const DTABLE = offsets(kvm_dtable, ['base', 'limit']);
export const SREGS = offsets(kvm_sregs, [
  'cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt', 'gdt', 'idt',
  'cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base', 'interrupt_bitmap',
]);

// ---- ioctls on the /dev/kvm fd (system) ---------------------------------------------------

// linux/kvm.h: #define KVM_GET_API_VERSION _IO(KVMIO, 0x00)
export const KVM_GET_API_VERSION = io(0x00);
// linux/kvm.h: #define KVM_CREATE_VM _IO(KVMIO, 0x01) /* returns a VM fd */
export const KVM_CREATE_VM = io(0x01);
// linux/kvm.h: #define KVM_CHECK_EXTENSION _IO(KVMIO, 0x03) (also valid on a VM fd)
export const KVM_CHECK_EXTENSION = io(0x03);
// linux/kvm.h: #define KVM_GET_VCPU_MMAP_SIZE _IO(KVMIO, 0x04) /* in bytes */
export const KVM_GET_VCPU_MMAP_SIZE = io(0x04);

// ---- ioctls on a VM fd --------------------------------------------------------------------

// linux/kvm.h: #define KVM_CREATE_VCPU _IO(KVMIO, 0x41)
export const KVM_CREATE_VCPU = io(0x41);
// linux/kvm.h: #define KVM_GET_DIRTY_LOG _IOW(KVMIO, 0x42, struct kvm_dirty_log)
export const KVM_GET_DIRTY_LOG = iow(0x42, KVM_SIZES.dirtyLog);
// linux/kvm.h: #define KVM_SET_USER_MEMORY_REGION _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)
export const KVM_SET_USER_MEMORY_REGION = iow(0x46, KVM_SIZES.userspaceMemoryRegion);
// linux/kvm.h: #define KVM_SET_TSS_ADDR _IO(KVMIO, 0x47)
export const KVM_SET_TSS_ADDR = io(0x47);
// linux/kvm.h: #define KVM_SET_IDENTITY_MAP_ADDR _IOW(KVMIO, 0x48, __u64)
export const KVM_SET_IDENTITY_MAP_ADDR = iow(0x48, 8);
// linux/kvm.h: #define KVM_CREATE_IRQCHIP _IO(KVMIO, 0x60)
export const KVM_CREATE_IRQCHIP = io(0x60);
// linux/kvm.h: #define KVM_IRQ_LINE _IOW(KVMIO, 0x61, struct kvm_irq_level)
export const KVM_IRQ_LINE = iow(0x61, KVM_SIZES.irqLevel);
// linux/kvm.h: #define KVM_SET_GSI_ROUTING _IOW(KVMIO, 0x6a, struct kvm_irq_routing)
export const KVM_SET_GSI_ROUTING = iow(0x6a, KVM_SIZES.irqRouting);
// linux/kvm.h: #define KVM_IRQFD _IOW(KVMIO, 0x76, struct kvm_irqfd)
export const KVM_IRQFD = iow(0x76, KVM_SIZES.irqfd);
// linux/kvm.h: #define KVM_IOEVENTFD _IOW(KVMIO, 0x79, struct kvm_ioeventfd)
export const KVM_IOEVENTFD = iow(0x79, KVM_SIZES.ioeventfd);
// linux/kvm.h: #define KVM_SIGNAL_MSI _IOW(KVMIO, 0xa5, struct kvm_msi)
export const KVM_SIGNAL_MSI = iow(0xa5, KVM_SIZES.msi);

// ---- ioctls on a vCPU fd ------------------------------------------------------------------

// linux/kvm.h: #define KVM_RUN _IO(KVMIO, 0x80)
export const KVM_RUN = io(0x80);
// linux/kvm.h: #define KVM_GET_REGS _IOR(KVMIO, 0x81, struct kvm_regs)
export const KVM_GET_REGS = ior(0x81, KVM_SIZES.regs);
// linux/kvm.h: #define KVM_SET_REGS _IOW(KVMIO, 0x82, struct kvm_regs)
export const KVM_SET_REGS = iow(0x82, KVM_SIZES.regs);
// linux/kvm.h: #define KVM_GET_SREGS _IOR(KVMIO, 0x83, struct kvm_sregs)
export const KVM_GET_SREGS = ior(0x83, KVM_SIZES.sregs);
// linux/kvm.h: #define KVM_SET_SREGS _IOW(KVMIO, 0x84, struct kvm_sregs)
export const KVM_SET_SREGS = iow(0x84, KVM_SIZES.sregs);
// linux/kvm.h: #define KVM_GET_MP_STATE _IOR(KVMIO, 0x98, struct kvm_mp_state)
export const KVM_GET_MP_STATE = ior(0x98, KVM_SIZES.mpState);
// linux/kvm.h: #define KVM_SET_MP_STATE _IOW(KVMIO, 0x99, struct kvm_mp_state)
export const KVM_SET_MP_STATE = iow(0x99, KVM_SIZES.mpState);

/** Every ioctl number, by its header name (for the layout test and diagnostics). */
export const KVM_IOCTLS = {
  KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE,
  KVM_CREATE_VCPU, KVM_GET_DIRTY_LOG, KVM_SET_USER_MEMORY_REGION, KVM_SET_TSS_ADDR,
  KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP, KVM_IRQ_LINE, KVM_SET_GSI_ROUTING, KVM_IRQFD,
  KVM_IOEVENTFD, KVM_SIGNAL_MSI, KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS,
  KVM_SET_SREGS, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
} as const;

/** Every struct, by its C name (for the layout test). */
export const KVM_STRUCTS = {
  kvm_userspace_memory_region, kvm_dirty_log, kvm_irq_level, kvm_irqfd, kvm_ioeventfd,
  kvm_irq_routing_irqchip, kvm_irq_routing_msi, kvm_irq_routing_entry, kvm_irq_routing, kvm_msi,
  kvm_mp_state, kvm_regs, kvm_segment, kvm_dtable, kvm_sregs,
} as const;

// ---- capabilities (KVM_CHECK_EXTENSION arguments) -----------------------------------------

// linux/kvm.h: #define KVM_CAP_IRQCHIP 0
export const KVM_CAP_IRQCHIP = 0;
// linux/kvm.h: #define KVM_CAP_USER_MEMORY 3
export const KVM_CAP_USER_MEMORY = 3;
// linux/kvm.h: #define KVM_CAP_SET_TSS_ADDR 4
export const KVM_CAP_SET_TSS_ADDR = 4;
// linux/kvm.h: #define KVM_CAP_NR_VCPUS 9 /* returns recommended max vcpus per vm */
export const KVM_CAP_NR_VCPUS = 9;
// linux/kvm.h: #define KVM_CAP_NR_MEMSLOTS 10 /* returns max memory slots per vm */
export const KVM_CAP_NR_MEMSLOTS = 10;
// linux/kvm.h: #define KVM_CAP_MP_STATE 14
export const KVM_CAP_MP_STATE = 14;
// linux/kvm.h: #define KVM_CAP_IRQ_ROUTING 25
export const KVM_CAP_IRQ_ROUTING = 25;
// linux/kvm.h: #define KVM_CAP_IRQFD 32
export const KVM_CAP_IRQFD = 32;
// linux/kvm.h: #define KVM_CAP_IOEVENTFD 36
export const KVM_CAP_IOEVENTFD = 36;
// linux/kvm.h: #define KVM_CAP_SET_IDENTITY_MAP_ADDR 37
export const KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
// linux/kvm.h: #define KVM_CAP_MAX_VCPUS 66 /* returns max vcpus per vm */
export const KVM_CAP_MAX_VCPUS = 66;
// linux/kvm.h: #define KVM_CAP_SIGNAL_MSI 77
export const KVM_CAP_SIGNAL_MSI = 77;
// linux/kvm.h: #define KVM_CAP_READONLY_MEM 81
export const KVM_CAP_READONLY_MEM = 81;
// linux/kvm.h: #define KVM_CAP_IRQFD_RESAMPLE 82
export const KVM_CAP_IRQFD_RESAMPLE = 82;
// linux/kvm.h: #define KVM_CAP_SPLIT_IRQCHIP 121
export const KVM_CAP_SPLIT_IRQCHIP = 121;
// linux/kvm.h: #define KVM_CAP_IOEVENTFD_ANY_LENGTH 122
export const KVM_CAP_IOEVENTFD_ANY_LENGTH = 122;
// linux/kvm.h: #define KVM_CAP_IMMEDIATE_EXIT 136
export const KVM_CAP_IMMEDIATE_EXIT = 136;

// ---- flags and enumerations ---------------------------------------------------------------

// linux/kvm.h: #define KVM_MEM_LOG_DIRTY_PAGES (1UL << 0)
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
// linux/kvm.h: #define KVM_MEM_READONLY (1UL << 1)
export const KVM_MEM_READONLY = 1 << 1;

// linux/kvm.h: #define KVM_IRQFD_FLAG_DEASSIGN (1 << 0)
export const KVM_IRQFD_FLAG_DEASSIGN = 1 << 0;
// linux/kvm.h: #define KVM_IRQFD_FLAG_RESAMPLE (1 << 1)
export const KVM_IRQFD_FLAG_RESAMPLE = 1 << 1;

// linux/kvm.h: #define KVM_IOEVENTFD_FLAG_DATAMATCH (1 << kvm_ioeventfd_flag_nr_datamatch) — nr 0
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
// linux/kvm.h: #define KVM_IOEVENTFD_FLAG_PIO (1 << kvm_ioeventfd_flag_nr_pio) — nr 1
export const KVM_IOEVENTFD_FLAG_PIO = 1 << 1;
// linux/kvm.h: #define KVM_IOEVENTFD_FLAG_DEASSIGN (1 << kvm_ioeventfd_flag_nr_deassign) — nr 2
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2;

// linux/kvm.h: #define KVM_IRQ_ROUTING_IRQCHIP 1
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
// linux/kvm.h: #define KVM_IRQ_ROUTING_MSI 2
export const KVM_IRQ_ROUTING_MSI = 2;
// asm/kvm.h: #define KVM_IRQCHIP_PIC_MASTER 0 / KVM_IRQCHIP_PIC_SLAVE 1 / KVM_IRQCHIP_IOAPIC 2
export const KVM_IRQCHIP_PIC_MASTER = 0;
export const KVM_IRQCHIP_PIC_SLAVE = 1;
export const KVM_IRQCHIP_IOAPIC = 2;
// asm/kvm.h: #define KVM_IOAPIC_NUM_PINS 24
export const KVM_IOAPIC_NUM_PINS = 24;
// virt/kvm (include/linux/kvm_host.h): #define KVM_MAX_IRQ_ROUTES 4096 — also what KVM_CAP_IRQ_ROUTING reports
export const KVM_MAX_IRQ_ROUTES = 4096;

// linux/kvm.h: #define KVM_EXIT_* (exit_reason values)
export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_EXCEPTION = 1;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_DEBUG = 4;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_SYSTEM_EVENT = 24;
// linux/kvm.h: #define KVM_EXIT_IO_IN 0 / KVM_EXIT_IO_OUT 1
export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;
// linux/kvm.h: #define KVM_INTERNAL_ERROR_EMULATION 1
export const KVM_INTERNAL_ERROR_EMULATION = 1;

// linux/kvm.h: #define KVM_MP_STATE_RUNNABLE 0 ... KVM_MP_STATE_HALTED 3
export const KVM_MP_STATE_RUNNABLE = 0;
export const KVM_MP_STATE_UNINITIALIZED = 1;
export const KVM_MP_STATE_HALTED = 3;

/** Names of exit reasons for messages. */
export function exitReasonName(reason: number): string {
  const names: Record<number, string> = {
    [KVM_EXIT_UNKNOWN]: 'UNKNOWN', [KVM_EXIT_EXCEPTION]: 'EXCEPTION', [KVM_EXIT_IO]: 'IO',
    [KVM_EXIT_HYPERCALL]: 'HYPERCALL', [KVM_EXIT_DEBUG]: 'DEBUG', [KVM_EXIT_HLT]: 'HLT',
    [KVM_EXIT_MMIO]: 'MMIO', [KVM_EXIT_IRQ_WINDOW_OPEN]: 'IRQ_WINDOW_OPEN', [KVM_EXIT_SHUTDOWN]: 'SHUTDOWN',
    [KVM_EXIT_FAIL_ENTRY]: 'FAIL_ENTRY', [KVM_EXIT_INTR]: 'INTR', [KVM_EXIT_INTERNAL_ERROR]: 'INTERNAL_ERROR',
    [KVM_EXIT_SYSTEM_EVENT]: 'SYSTEM_EVENT',
  };
  return `KVM_EXIT_${names[reason] ?? String(reason)}`;
}
