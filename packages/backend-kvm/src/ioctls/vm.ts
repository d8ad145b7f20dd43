/**
 * A VM handle: memory slots, the in-kernel irqchip, GSI routing, irqfd, ioeventfd, MSI and
 * dirty logs, and the factory of vCPU handles. Made only by {@link KvmSystem}; owns its fd
 * unless the VM was adopted from an embedding VMM.
 *
 * Each argument struct is encoded into a buffer this handle allocates once and reuses: the
 * kernel reads (or writes) it only during the ioctl, and the I/O context is single-threaded.
 */
import { BadHandleError, InvalidError, hex } from '@vmed/core';
import { bufferAddress, lastErrno, libc } from '../abi/libc.js';
import {
  DIRTY_LOG,
  IOEVENTFD,
  IRQFD,
  IRQ_LEVEL,
  IRQ_ROUTING,
  IRQ_ROUTING_ENTRY,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_GET_DIRTY_LOG,
  KVM_IOEVENTFD,
  KVM_IOEVENTFD_FLAG_DATAMATCH,
  KVM_IOEVENTFD_FLAG_DEASSIGN,
  KVM_IOEVENTFD_FLAG_PIO,
  KVM_IRQFD,
  KVM_IRQFD_FLAG_DEASSIGN,
  KVM_IRQFD_FLAG_RESAMPLE,
  KVM_IRQ_LINE,
  KVM_IRQ_ROUTING_IRQCHIP,
  KVM_IRQ_ROUTING_MSI,
  KVM_MAX_IRQ_ROUTES,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SIGNAL_MSI,
  KVM_SIZES,
  MEMORY_REGION,
  MSI,
} from '../abi/kvm.js';
import { checkBigInt, checkInt, nativeError } from '../errors.js';
import { KvmVcpu } from './vcpu.js';

/** One memory slot as `KVM_SET_USER_MEMORY_REGION` takes it. `size` 0 deletes the slot. */
export interface MemorySlotSpec {
  readonly slot: number;
  readonly flags: number;
  readonly guestAddress: bigint;
  readonly size: bigint;
  readonly hostAddress: bigint;
}

/** One entry of the GSI routing table. */
export type GsiRoute =
  | { readonly gsi: number; readonly kind: 'irqchip'; readonly chip: number; readonly pin: number }
  | { readonly gsi: number; readonly kind: 'msi'; readonly address: bigint; readonly data: number };

/** An irqfd binding; `resampleFd` makes it a level-triggered irqfd with resampling. */
export interface IrqfdSpec {
  readonly fd: number;
  readonly gsi: number;
  readonly resampleFd?: number;
}

/** An ioeventfd binding. `length` 0 matches any width (no datamatch then). */
export interface IoeventfdSpec {
  readonly fd: number;
  readonly pio: boolean;
  readonly address: bigint;
  readonly length: 0 | 1 | 2 | 4 | 8;
  readonly datamatch?: bigint;
}

const U64_MAX = (1n << 64n) - 1n;
const PAGE_MASK = 0xfffn;

export class KvmVm implements Disposable {
  /** Whether closing this handle closes the fd (false for an adopted VM). */
  readonly owned: boolean;
  readonly vcpuMmapSize: number;
  #fd: number;
  readonly #vcpus = new Set<KvmVcpu>();
  readonly #region = new Uint8Array(KVM_SIZES.userspaceMemoryRegion);
  readonly #irqfd = new Uint8Array(KVM_SIZES.irqfd);
  readonly #ioeventfd = new Uint8Array(KVM_SIZES.ioeventfd);
  readonly #msi = new Uint8Array(KVM_SIZES.msi);
  readonly #dirtyLog = new Uint8Array(KVM_SIZES.dirtyLog);
  readonly #irqLevel = new Uint8Array(KVM_SIZES.irqLevel);
  #routing: Uint8Array | undefined;

  private constructor(fd: number, owned: boolean, vcpuMmapSize: number) {
    this.#fd = fd;
    this.owned = owned;
    this.vcpuMmapSize = vcpuMmapSize;
  }

  /** @internal Made by {@link KvmSystem.createVm} and {@link KvmSystem.adoptVm} only. */
  static fromSystem(fd: number, owned: boolean, vcpuMmapSize: number): KvmVm {
    return new KvmVm(fd, owned, vcpuMmapSize);
  }

  get fd(): number {
    if (this.#fd < 0) throw new BadHandleError('kvm.vm');
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** `KVM_CHECK_EXTENSION` on the VM fd (per-VM answers, e.g. routes left); 0 when absent. */
  checkExtension(cap: number): number {
    // Integer argument; the kernel reads only `cap`.
    const r = libc().ioctlInt(this.fd, KVM_CHECK_EXTENSION, cap);
    if (r < 0) throw nativeError('kvm.checkExtension', lastErrno(), `KVM_CHECK_EXTENSION(${cap}) failed`);
    return r;
  }

  /**
   * `KVM_SET_USER_MEMORY_REGION`: creates, changes the flags of, or (size 0) deletes a slot.
   * Guest address, size and host address must be page aligned; only `KVM_MEM_LOG_DIRTY_PAGES`
   * and `KVM_MEM_READONLY` flags are accepted.
   */
  setUserMemoryRegion(spec: MemorySlotSpec): void {
    const op = 'kvm.setUserMemoryRegion';
    checkInt(spec.slot, 0, 0xffff, op, 'slot');
    checkInt(spec.flags, 0, KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY, op, 'flags');
    checkBigInt(spec.guestAddress, 0n, U64_MAX, op, 'guest address');
    checkBigInt(spec.size, 0n, U64_MAX, op, 'size');
    checkBigInt(spec.hostAddress, 0n, U64_MAX, op, 'host address');
    if ((spec.guestAddress | spec.size | spec.hostAddress) & PAGE_MASK) {
      throw new InvalidError(op, `slot ${spec.slot}: ${hex(spec.guestAddress)}+${hex(spec.size)} at host ${hex(spec.hostAddress)} is not page aligned`);
    }
    const v = new DataView(this.#region.buffer);
    v.setUint32(MEMORY_REGION.slot, spec.slot, true);
    v.setUint32(MEMORY_REGION.flags, spec.flags, true);
    v.setBigUint64(MEMORY_REGION.guest_phys_addr, spec.guestAddress, true);
    v.setBigUint64(MEMORY_REGION.memory_size, spec.size, true);
    v.setBigUint64(MEMORY_REGION.userspace_addr, spec.hostAddress, true);
    // The kernel reads the 32-byte region struct during the call; the host range must stay
    // mapped for as long as the slot exists (the owner deletes the slot before unmapping).
    if (libc().ioctl(this.fd, KVM_SET_USER_MEMORY_REGION, this.#region) < 0) {
      throw nativeError(op, lastErrno(), `slot ${spec.slot} at ${hex(spec.guestAddress)}+${hex(spec.size)} flags ${spec.flags}`);
    }
  }

  /** `KVM_CREATE_IRQCHIP`: in-kernel PIC, IOAPIC and LAPICs, with the default GSI routes 0–23. */
  createIrqchip(): void {
    // No argument; must happen before the first vCPU is created.
    if (libc().ioctlInt(this.fd, KVM_CREATE_IRQCHIP, 0) < 0) {
      throw nativeError('kvm.createIrqchip', lastErrno(), 'KVM_CREATE_IRQCHIP failed');
    }
  }

  /** `KVM_SET_TSS_ADDR`: three pages of guest-physical space (outside RAM) VMX needs for real mode. */
  setTssAddress(address: number): void {
    checkInt(address, 0, 0xffff_ffff - 0x3000, 'kvm.setTssAddr', 'TSS address');
    // Integer argument.
    if (libc().ioctlInt(this.fd, KVM_SET_TSS_ADDR, address) < 0) {
      throw nativeError('kvm.setTssAddr', lastErrno(), `KVM_SET_TSS_ADDR ${hex(address)}`);
    }
  }

  /** `KVM_SET_IDENTITY_MAP_ADDR`: one page (outside RAM) for VMX's real-mode identity map. */
  setIdentityMapAddress(address: bigint): void {
    checkBigInt(address, 0n, 0xffff_f000n, 'kvm.setIdentityMapAddr', 'identity map address');
    const arg = new Uint8Array(8);
    new DataView(arg.buffer).setBigUint64(0, address, true);
    // The kernel reads the u64 during the call.
    if (libc().ioctl(this.fd, KVM_SET_IDENTITY_MAP_ADDR, arg) < 0) {
      throw nativeError('kvm.setIdentityMapAddr', lastErrno(), `KVM_SET_IDENTITY_MAP_ADDR ${hex(address)}`);
    }
  }

  /**
   * `KVM_SET_GSI_ROUTING`: replaces the whole routing table with `routes` (at most 4096
   * entries, each GSI < 4096). The kernel has no "get"; the caller keeps the table.
   */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const op = 'kvm.setGsiRouting';
    if (routes.length > KVM_MAX_IRQ_ROUTES) throw new InvalidError(op, `${routes.length} routes exceed ${KVM_MAX_IRQ_ROUTES}`);
    this.#routing ??= new Uint8Array(KVM_SIZES.irqRouting + KVM_MAX_IRQ_ROUTES * KVM_SIZES.irqRoutingEntry);
    const buf = this.#routing;
    const v = new DataView(buf.buffer);
    const used = KVM_SIZES.irqRouting + routes.length * KVM_SIZES.irqRoutingEntry;
    buf.fill(0, 0, used);
    v.setUint32(IRQ_ROUTING.nr, routes.length, true);
    v.setUint32(IRQ_ROUTING.flags, 0, true);
    routes.forEach((route, i) => {
      const at = KVM_SIZES.irqRouting + i * KVM_SIZES.irqRoutingEntry;
      checkInt(route.gsi, 0, KVM_MAX_IRQ_ROUTES - 1, op, 'gsi');
      v.setUint32(at + IRQ_ROUTING_ENTRY.gsi, route.gsi, true);
      if (route.kind === 'irqchip') {
        checkInt(route.chip, 0, 2, op, 'irqchip');
        checkInt(route.pin, 0, 23, op, 'pin');
        v.setUint32(at + IRQ_ROUTING_ENTRY.type, KVM_IRQ_ROUTING_IRQCHIP, true);
        v.setUint32(at + IRQ_ROUTING_ENTRY.irqchipChip, route.chip, true);
        v.setUint32(at + IRQ_ROUTING_ENTRY.irqchipPin, route.pin, true);
      } else {
        checkBigInt(route.address, 0n, U64_MAX, op, 'MSI address');
        checkInt(route.data, 0, 0xffff_ffff, op, 'MSI data');
        v.setUint32(at + IRQ_ROUTING_ENTRY.type, KVM_IRQ_ROUTING_MSI, true);
        v.setUint32(at + IRQ_ROUTING_ENTRY.msiAddressLo, Number(route.address & 0xffff_ffffn), true);
        v.setUint32(at + IRQ_ROUTING_ENTRY.msiAddressHi, Number(route.address >> 32n), true);
        v.setUint32(at + IRQ_ROUTING_ENTRY.msiData, route.data, true);
      }
    });
    // The kernel reads the header and `nr` entries from `buf` during the call and builds its
    // own copy of the table (RCU-swapped: in-flight injections use the old one).
    if (libc().ioctl(this.fd, KVM_SET_GSI_ROUTING, buf) < 0) {
      throw nativeError(op, lastErrno(), `table of ${routes.length} routes refused`);
    }
  }

  /** `KVM_IRQFD` assign: writes to `fd` inject on `gsi`; with `resampleFd`, as a level line. */
  assignIrqfd(spec: IrqfdSpec): void {
    this.#irqfdCall('kvm.irqfd', spec, spec.resampleFd === undefined ? 0 : KVM_IRQFD_FLAG_RESAMPLE);
  }

  /** `KVM_IRQFD` deassign of a binding made by {@link assignIrqfd}. */
  deassignIrqfd(spec: IrqfdSpec): void {
    this.#irqfdCall('kvm.irqfdDeassign', { fd: spec.fd, gsi: spec.gsi }, KVM_IRQFD_FLAG_DEASSIGN);
  }

  #irqfdCall(op: string, spec: IrqfdSpec, flags: number): void {
    checkInt(spec.fd, 0, 0x7fff_ffff, op, 'fd');
    checkInt(spec.gsi, 0, KVM_MAX_IRQ_ROUTES - 1, op, 'gsi');
    this.#irqfd.fill(0);
    const v = new DataView(this.#irqfd.buffer);
    v.setUint32(IRQFD.fd, spec.fd, true);
    v.setUint32(IRQFD.gsi, spec.gsi, true);
    v.setUint32(IRQFD.flags, flags, true);
    v.setUint32(IRQFD.resamplefd, spec.resampleFd ?? 0, true);
    // The kernel reads the struct during the call and takes its own references to the eventfds.
    if (libc().ioctl(this.fd, KVM_IRQFD, this.#irqfd) < 0) {
      throw nativeError(op, lastErrno(), `eventfd ${spec.fd} on GSI ${spec.gsi}`);
    }
  }

  /** `KVM_IOEVENTFD` assign: guest writes matching the spec signal `fd` instead of exiting. */
  assignIoeventfd(spec: IoeventfdSpec): void {
    this.#ioeventfdCall('kvm.ioeventfd', spec, 0);
  }

  /** `KVM_IOEVENTFD` deassign; the spec must equal the one assigned. */
  deassignIoeventfd(spec: IoeventfdSpec): void {
    this.#ioeventfdCall('kvm.ioeventfdDeassign', spec, KVM_IOEVENTFD_FLAG_DEASSIGN);
  }

  #ioeventfdCall(op: string, spec: IoeventfdSpec, extraFlags: number): void {
    checkInt(spec.fd, 0, 0x7fff_ffff, op, 'fd');
    checkBigInt(spec.address, 0n, spec.pio ? 0xffffn : U64_MAX, op, 'address');
    if (![0, 1, 2, 4, 8].includes(spec.length)) throw new InvalidError(op, `length ${spec.length} is not 0, 1, 2, 4 or 8`);
    if (spec.length === 0 && spec.datamatch !== undefined) throw new InvalidError(op, 'a datamatch needs a length');
    if (spec.datamatch !== undefined) {
      checkBigInt(spec.datamatch, 0n, (1n << BigInt(spec.length * 8)) - 1n, op, 'datamatch');
    }
    let flags = extraFlags;
    if (spec.pio) flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (spec.datamatch !== undefined) flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    this.#ioeventfd.fill(0);
    const v = new DataView(this.#ioeventfd.buffer);
    v.setBigUint64(IOEVENTFD.datamatch, spec.datamatch ?? 0n, true);
    v.setBigUint64(IOEVENTFD.addr, spec.address, true);
    v.setUint32(IOEVENTFD.len, spec.length, true);
    v.setInt32(IOEVENTFD.fd, spec.fd, true);
    v.setUint32(IOEVENTFD.flags, flags, true);
    // The kernel reads the struct during the call and keeps its own reference to the eventfd.
    if (libc().ioctl(this.fd, KVM_IOEVENTFD, this.#ioeventfd) < 0) {
      throw nativeError(op, lastErrno(), `${spec.pio ? 'port' : 'MMIO'} ${hex(spec.address)} length ${spec.length}`, {
        ENOSPC: 'NoSpace',
      });
    }
  }

  /**
   * `KVM_SIGNAL_MSI`: injects one MSI now. Returns false when the guest blocked it (the
   * kernel's 0: e.g. the destination APIC is disabled).
   */
  signalMsi(address: bigint, data: number): boolean {
    const op = 'kvm.signalMsi';
    checkBigInt(address, 0n, U64_MAX, op, 'MSI address');
    checkInt(data, 0, 0xffff_ffff, op, 'MSI data');
    this.#msi.fill(0);
    const v = new DataView(this.#msi.buffer);
    v.setUint32(MSI.address_lo, Number(address & 0xffff_ffffn), true);
    v.setUint32(MSI.address_hi, Number(address >> 32n), true);
    v.setUint32(MSI.data, data, true);
    // The kernel reads the struct during the call.
    const r = libc().ioctl(this.fd, KVM_SIGNAL_MSI, this.#msi);
    if (r < 0) throw nativeError(op, lastErrno(), `MSI ${hex(address)}/${hex(data)}`);
    return r > 0;
  }

  /** `KVM_IRQ_LINE`: sets an irqchip input (GSI) to `level`. */
  irqLine(gsi: number, level: boolean): void {
    checkInt(gsi, 0, KVM_MAX_IRQ_ROUTES - 1, 'kvm.irqLine', 'gsi');
    const v = new DataView(this.#irqLevel.buffer);
    v.setUint32(IRQ_LEVEL.irq, gsi, true);
    v.setUint32(IRQ_LEVEL.level, level ? 1 : 0, true);
    // The kernel reads the struct during the call.
    if (libc().ioctl(this.fd, KVM_IRQ_LINE, this.#irqLevel) < 0) {
      throw nativeError('kvm.irqLine', lastErrno(), `GSI ${gsi} level ${level ? 1 : 0}`);
    }
  }

  /**
   * `KVM_GET_DIRTY_LOG`: copies and clears the slot's dirty bitmap into `bitmap` (one bit per
   * page, at least ceil(pages/64) u64 words). The slot must have `KVM_MEM_LOG_DIRTY_PAGES`.
   */
  getDirtyLog(slot: number, bitmap: Uint32Array): void {
    checkInt(slot, 0, 0xffff, 'kvm.getDirtyLog', 'slot');
    if (bitmap.byteLength % 8 !== 0) throw new InvalidError('kvm.getDirtyLog', 'bitmap must be a whole number of u64 words');
    const v = new DataView(this.#dirtyLog.buffer);
    v.setUint32(DIRTY_LOG.slot, slot, true);
    // The kernel writes the bitmap through the pointer in the struct during the call. `bitmap`
    // is JS-owned; the pointer is taken right before the call and not kept.
    const pointer = bufferAddress(bitmap);
    v.setBigUint64(DIRTY_LOG.dirty_bitmap, pointer, true);
    if (libc().ioctl(this.fd, KVM_GET_DIRTY_LOG, this.#dirtyLog) < 0) {
      throw nativeError('kvm.getDirtyLog', lastErrno(), `slot ${slot}`);
    }
  }

  /**
   * `KVM_CREATE_VCPU` with id `index`, and the mmap of its `struct kvm_run`. The vCPU is
   * closed with this VM.
   */
  createVcpu(index: number): KvmVcpu {
    checkInt(index, 0, 1023, 'kvm.createVcpu', 'vCPU index');
    // Integer argument (the vCPU id); returns the new vCPU fd, owned by the KvmVcpu.
    const fd = libc().ioctlInt(this.fd, KVM_CREATE_VCPU, index);
    if (fd < 0) throw nativeError('kvm.createVcpu', lastErrno(), `vCPU ${index}`);
    const vcpu = KvmVcpu.fromVm(fd, index, this.vcpuMmapSize, () => this.#vcpus.delete(vcpu));
    this.#vcpus.add(vcpu);
    return vcpu;
  }

  /** Closes every vCPU made by this VM, then the VM fd if owned. */
  close(): void {
    if (this.#fd < 0) return;
    for (const vcpu of [...this.#vcpus]) vcpu.close();
    // The last reference (vCPUs, irqfds and ioeventfds are gone): the kernel destroys the VM
    // and drops its memory slots. An adopted fd belongs to the embedding VMM and stays open.
    if (this.owned) libc().close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
