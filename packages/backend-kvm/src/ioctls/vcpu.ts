/**
 * The vCPU handle: {@link KvmVcpu} owns a vCPU fd and the mmap of its `struct kvm_run`, and is
 * made only by {@link KvmVm.createVcpu}. Running it is in `vcpu-runner.ts` (shared with the
 * vCPU threads, which borrow it); registers and MP state are here. The owner outlives every
 * borrower (the backend stops vCPU threads before it closes vCPUs).
 */
import { BadHandleError, InvalidError } from '@vmed/core';
import { MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, lastErrno, libc } from '../abi/libc.js';
import {
  DTABLE,
  KVM_GET_MP_STATE,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_SET_MP_STATE,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SIZES,
  MP_STATE,
  REGS,
  SEGMENT,
  SREGS,
} from '../abi/kvm.js';
import { checkInt, nativeError } from '../errors.js';
import { RUN_EXIT, RUN_INTERRUPTED, VcpuRunner, type VcpuRunHandle } from './vcpu-runner.js';

export type { VcpuRunHandle } from './vcpu-runner.js';

/** General-purpose registers (`struct kvm_regs`). */
export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}

/** A segment register's hidden part (`struct kvm_segment`). */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** GDTR/IDTR (`struct kvm_dtable`). */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** Special registers (`struct kvm_sregs`). */
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment;
  tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  interruptBitmap: [bigint, bigint, bigint, bigint];
}

/** Result of one `KVM_RUN` on the owner's thread. */
export type RunOutcome = 'exit' | 'interrupted';

const REG_NAMES = Object.keys(REGS) as Array<keyof Regs>;
const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const SEGMENT_BYTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

/** A vCPU fd and its kvm_run mapping, owned. Made only by {@link KvmVm.createVcpu}. */
export class KvmVcpu extends VcpuRunner implements Disposable {
  readonly #runAddress: bigint;
  readonly #runSize: number;
  readonly #onClose: () => void;
  readonly #regs = new Uint8Array(KVM_SIZES.regs);
  readonly #sregs = new Uint8Array(KVM_SIZES.sregs);
  readonly #mpState = new Uint8Array(KVM_SIZES.mpState);

  private constructor(index: number, fd: number, runAddress: bigint, runSize: number, onClose: () => void) {
    super(index, fd, runAddress, runSize);
    this.#runAddress = runAddress;
    this.#runSize = runSize;
    this.#onClose = onClose;
  }

  /** @internal Maps `struct kvm_run` of a fresh vCPU fd; on failure closes the fd. */
  static fromVm(fd: number, index: number, runSize: number, onClose: () => void): KvmVcpu {
    const c = libc();
    // The kernel maps the vCPU's kvm_run page(s); the mapping is ours until close().
    const address = c.mmap(null, runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (address === MAP_FAILED) {
      const errno = lastErrno();
      c.close(fd);
      throw nativeError('kvm.createVcpu', errno, `mmap of kvm_run for vCPU ${index}`);
    }
    return new KvmVcpu(index, fd, address, runSize, onClose);
  }

  get fd(): number {
    if (this.fdValue < 0) throw new BadHandleError('kvm.vcpu');
    return this.fdValue;
  }

  get closed(): boolean {
    return this.fdValue < 0;
  }

  /** What a vCPU thread needs to borrow this vCPU. */
  runHandle(): VcpuRunHandle {
    return { index: this.index, fd: this.fd, runAddress: this.#runAddress, runSize: this.#runSize };
  }

  /** `KVM_RUN` on the owner's thread, failures as vmed errors (see {@link VcpuRunner.run}). */
  runChecked(): RunOutcome {
    const r = this.run();
    if (r === RUN_EXIT) return 'exit';
    if (r === RUN_INTERRUPTED) return 'interrupted';
    throw nativeError('kvm.run', r, `KVM_RUN on vCPU ${this.index} failed`);
  }

  /** `KVM_GET_REGS`. */
  getRegs(): Regs {
    // The kernel writes the 144-byte struct into this handle's buffer during the call.
    if (libc().ioctl(this.fd, KVM_GET_REGS, this.#regs) < 0) throw nativeError('kvm.getRegs', lastErrno(), `vCPU ${this.index}`);
    const v = new DataView(this.#regs.buffer);
    const regs = {} as Regs;
    for (const name of REG_NAMES) regs[name] = v.getBigUint64(REGS[name], true);
    return regs;
  }

  /** `KVM_SET_REGS`. */
  setRegs(regs: Regs): void {
    const v = new DataView(this.#regs.buffer);
    for (const name of REG_NAMES) {
      const value = regs[name];
      if (typeof value !== 'bigint' || value < 0n || value >= 1n << 64n) throw new InvalidError('kvm.setRegs', `${name} is not a u64`);
      v.setBigUint64(REGS[name], value, true);
    }
    // The kernel reads the struct during the call.
    if (libc().ioctl(this.fd, KVM_SET_REGS, this.#regs) < 0) throw nativeError('kvm.setRegs', lastErrno(), `vCPU ${this.index}`);
  }

  /** `KVM_GET_SREGS`. */
  getSregs(): Sregs {
    // The kernel writes the struct into this handle's buffer during the call.
    if (libc().ioctl(this.fd, KVM_GET_SREGS, this.#sregs) < 0) throw nativeError('kvm.getSregs', lastErrno(), `vCPU ${this.index}`);
    const v = new DataView(this.#sregs.buffer);
    const segment = (at: number): Segment => {
      const s = { base: v.getBigUint64(at + SEGMENT.base, true), limit: v.getUint32(at + SEGMENT.limit, true), selector: v.getUint16(at + SEGMENT.selector, true) } as Segment;
      for (const b of SEGMENT_BYTES) s[b] = v.getUint8(at + SEGMENT[b]);
      return s;
    };
    const table = (at: number): DescriptorTable => ({ base: v.getBigUint64(at + DTABLE.base, true), limit: v.getUint16(at + DTABLE.limit, true) });
    const u64 = (at: number): bigint => v.getBigUint64(at, true);
    const bitmap = SREGS.interrupt_bitmap;
    return {
      cs: segment(SREGS.cs), ds: segment(SREGS.ds), es: segment(SREGS.es), fs: segment(SREGS.fs),
      gs: segment(SREGS.gs), ss: segment(SREGS.ss), tr: segment(SREGS.tr), ldt: segment(SREGS.ldt),
      gdt: table(SREGS.gdt), idt: table(SREGS.idt),
      cr0: u64(SREGS.cr0), cr2: u64(SREGS.cr2), cr3: u64(SREGS.cr3), cr4: u64(SREGS.cr4), cr8: u64(SREGS.cr8),
      efer: u64(SREGS.efer), apicBase: u64(SREGS.apic_base),
      interruptBitmap: [u64(bitmap), u64(bitmap + 8), u64(bitmap + 16), u64(bitmap + 24)],
    };
  }

  /** `KVM_SET_SREGS`. */
  setSregs(sregs: Sregs): void {
    const v = new DataView(this.#sregs.buffer);
    for (const name of SEGMENT_NAMES) {
      const at = SREGS[name];
      const s = sregs[name];
      v.setBigUint64(at + SEGMENT.base, s.base, true);
      v.setUint32(at + SEGMENT.limit, s.limit >>> 0, true);
      v.setUint16(at + SEGMENT.selector, s.selector & 0xffff, true);
      for (const b of SEGMENT_BYTES) v.setUint8(at + SEGMENT[b], s[b] & 0xff);
    }
    for (const name of ['gdt', 'idt'] as const) {
      v.setBigUint64(SREGS[name] + DTABLE.base, sregs[name].base, true);
      v.setUint16(SREGS[name] + DTABLE.limit, sregs[name].limit & 0xffff, true);
    }
    v.setBigUint64(SREGS.cr0, sregs.cr0, true);
    v.setBigUint64(SREGS.cr2, sregs.cr2, true);
    v.setBigUint64(SREGS.cr3, sregs.cr3, true);
    v.setBigUint64(SREGS.cr4, sregs.cr4, true);
    v.setBigUint64(SREGS.cr8, sregs.cr8, true);
    v.setBigUint64(SREGS.efer, sregs.efer, true);
    v.setBigUint64(SREGS.apic_base, sregs.apicBase, true);
    sregs.interruptBitmap.forEach((w, i) => v.setBigUint64(SREGS.interrupt_bitmap + i * 8, w, true));
    // The kernel reads the struct during the call.
    if (libc().ioctl(this.fd, KVM_SET_SREGS, this.#sregs) < 0) throw nativeError('kvm.setSregs', lastErrno(), `vCPU ${this.index}`);
  }

  /** `KVM_GET_MP_STATE` (`KVM_MP_STATE_*`). */
  getMpState(): number {
    // The kernel writes the u32 during the call.
    if (libc().ioctl(this.fd, KVM_GET_MP_STATE, this.#mpState) < 0) throw nativeError('kvm.getMpState', lastErrno(), `vCPU ${this.index}`);
    return new DataView(this.#mpState.buffer).getUint32(MP_STATE.mp_state, true);
  }

  /** `KVM_SET_MP_STATE`. */
  setMpState(state: number): void {
    checkInt(state, 0, 10, 'kvm.setMpState', 'mp_state');
    new DataView(this.#mpState.buffer).setUint32(MP_STATE.mp_state, state, true);
    // The kernel reads the u32 during the call.
    if (libc().ioctl(this.fd, KVM_SET_MP_STATE, this.#mpState) < 0) throw nativeError('kvm.setMpState', lastErrno(), `vCPU ${this.index}`);
  }

  /** Unmaps kvm_run and closes the fd. No borrower may be running (the backend joins them first). */
  close(): void {
    if (this.fdValue < 0) return;
    const c = libc();
    // Unmaps kvm_run (views over it die here), then drops our reference to the vCPU.
    c.munmap(this.#runAddress, this.#runSize);
    c.close(this.fdValue);
    this.fdValue = -1;
    this.#onClose();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
