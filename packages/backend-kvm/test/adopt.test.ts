/**
 * Adopt mode: an embedding VMM (here a minimal VMM written directly against libc in this test,
 * sharing no code with the backend) creates the VM, its memory, the irqchip and a vCPU, runs
 * KVM_RUN itself and forwards its MMIO/port exits to vmed. vmed only adds doorbells, routes,
 * lines and dirty logging — and leaves the VM fd open on close.
 *
 * Memory: slot 0 = guest [0, 64 KiB), slot 1 = guest [64 KiB, 128 KiB), mapped apart in the
 * host (a hole between them). Guest (real mode, CS=0 at 0x1000):
 *   - programs the master PIC (vectors 0x20..; only IRQ 5 unmasked), IRQ 5 handler reports on
 *     port 0x561 and EOIs;
 *   - writes 7 to 0xa0000 (a vmed doorbell: no exit);
 *   - reads 0xa0004 (MMIO exit, forwarded; the sink answers 0x1234abcd) and stores the value at
 *     0x5000 and across the slot boundary at 0xfffe;
 *   - writes port 0x560 ("arm"), then `sti; hlt` until IRQ 5, then writes port 0x1234 (done).
 */
import { readdirSync } from 'node:fs';
import koffi from 'koffi';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { createBackend, type KvmBackend } from '../src/index.js';
import { assemble } from './helpers/assemble.js';
import { KVM_SKIP, RecordingSink, until } from './helpers/kvm.js';

const GUEST = `
.code16
  cli
  xor %ax, %ax
  mov %ax, %ds
  mov %ax, %ss
  mov $0x8000, %sp
  mov $0x11, %al
  out %al, $0x20
  mov $0x20, %al
  out %al, $0x21
  mov $0x04, %al
  out %al, $0x21
  mov $0x01, %al
  out %al, $0x21
  mov $0xdf, %al
  out %al, $0x21
  movw $irq5, 0x94
  movw $0, 0x96
  mov $0xa000, %ax
  mov %ax, %es
  movl $7, %es:0
  movl %es:4, %eax
  movl %eax, 0x5000
  mov $0xf00, %bx
  mov %bx, %es
  movl %eax, %es:0xffe
  mov $0x560, %dx
  out %al, %dx
  sti
  hlt
  mov $0x1234, %dx
  out %al, %dx
  hlt
irq5:
  mov $0x561, %dx
  out %al, %dx
  mov $0x20, %al
  out %al, $0x20
  iret
`;

/** The embedding VMM: raw libc calls, ioctl numbers from linux/kvm.h spelled out. */
class MiniVmm {
  static readonly KVM_CREATE_VM = 0xae01; // _IO(KVMIO, 0x01)
  static readonly KVM_GET_VCPU_MMAP_SIZE = 0xae04; // _IO(KVMIO, 0x04)
  static readonly KVM_CREATE_VCPU = 0xae41; // _IO(KVMIO, 0x41)
  static readonly KVM_SET_USER_MEMORY_REGION = 0x4020ae46; // _IOW(KVMIO, 0x46, 32 bytes)
  static readonly KVM_CREATE_IRQCHIP = 0xae60; // _IO(KVMIO, 0x60)
  static readonly KVM_RUN = 0xae80; // _IO(KVMIO, 0x80)
  static readonly KVM_GET_REGS = 0x8090ae81; // _IOR(KVMIO, 0x81, 144 bytes)
  static readonly KVM_SET_REGS = 0x4090ae82; // _IOW(KVMIO, 0x82, 144 bytes)
  static readonly KVM_GET_SREGS = 0x8138ae83; // _IOR(KVMIO, 0x83, 312 bytes)
  static readonly KVM_SET_SREGS = 0x4138ae84; // _IOW(KVMIO, 0x84, 312 bytes)

  readonly lib = koffi.load('libc.so.6');
  readonly open = this.lib.func('int open(const char *path, int flags, int mode)');
  readonly close = this.lib.func('int close(int fd)');
  readonly ioctlInt = this.lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']);
  readonly ioctlPtr = this.lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']);
  readonly mmap = this.lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
  readonly munmap = this.lib.func('int munmap(void *addr, size_t len)');

  readonly kvmFd: number;
  readonly vmFd: number;
  readonly vcpuFd: number;
  readonly reservation: bigint;
  readonly ramA: bigint;
  readonly ramB: bigint;
  readonly run: DataView;
  readonly runBytes: Uint8Array;
  readonly runAddress: bigint;
  readonly runSize: number;

  constructor() {
    this.kvmFd = this.open('/dev/kvm', 0o2000002, 0) as number;
    this.vmFd = this.ioctlInt(this.kvmFd, MiniVmm.KVM_CREATE_VM, 0) as number;
    expect(this.ioctlInt(this.vmFd, MiniVmm.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    // 3 x 64 KiB anonymous, shared; the middle third is unmapped so A and B are apart.
    this.reservation = this.mmap(null, 0x30000, 3, 0x21, -1, 0) as bigint;
    this.munmap(this.reservation + 0x10000n, 0x10000);
    this.ramA = this.reservation;
    this.ramB = this.reservation + 0x20000n;
    this.setRegion(0, 0n, this.ramA, 0);
    this.setRegion(1, 0x10000n, this.ramB, 0);
    this.vcpuFd = this.ioctlInt(this.vmFd, MiniVmm.KVM_CREATE_VCPU, 0) as number;
    this.runSize = this.ioctlInt(this.kvmFd, MiniVmm.KVM_GET_VCPU_MMAP_SIZE, 0) as number;
    this.runAddress = this.mmap(null, this.runSize, 3, 0x01, this.vcpuFd, 0) as bigint;
    const buffer = koffi.view(this.runAddress, this.runSize);
    this.run = new DataView(buffer);
    this.runBytes = new Uint8Array(buffer);
  }

  setRegion(slot: number, gpa: bigint, host: bigint, flags: number): void {
    // struct kvm_userspace_memory_region { u32 slot, flags; u64 guest_phys_addr, memory_size, userspace_addr; }
    const r = new DataView(new ArrayBuffer(32));
    r.setUint32(0, slot, true);
    r.setUint32(4, flags, true);
    r.setBigUint64(8, gpa, true);
    r.setBigUint64(16, 0x10000n, true);
    r.setBigUint64(24, host, true);
    expect(this.ioctlPtr(this.vmFd, MiniVmm.KVM_SET_USER_MEMORY_REGION, new Uint8Array(r.buffer))).toBe(0);
  }

  load(gpa: number, image: Uint8Array): void {
    new Uint8Array(koffi.view(this.ramA, 0x10000)).set(image, gpa);
  }

  /** Real mode, CS = 0, IP = ip. */
  reset(ip: number): void {
    const sregs = new Uint8Array(312);
    expect(this.ioctlPtr(this.vcpuFd, MiniVmm.KVM_GET_SREGS, sregs)).toBe(0);
    const s = new DataView(sregs.buffer);
    s.setBigUint64(0, 0n, true); // cs.base (struct kvm_segment at offset 0: u64 base, u32 limit, u16 selector)
    s.setUint16(12, 0, true); // cs.selector
    expect(this.ioctlPtr(this.vcpuFd, MiniVmm.KVM_SET_SREGS, sregs)).toBe(0);
    const regs = new Uint8Array(144);
    const r = new DataView(regs.buffer);
    r.setBigUint64(128, BigInt(ip), true); // rip
    r.setBigUint64(136, 2n, true); // rflags
    expect(this.ioctlPtr(this.vcpuFd, MiniVmm.KVM_SET_REGS, regs)).toBe(0);
  }

  /** KVM_RUN until the guest writes port 0x1234; each exit goes to `onExit`. */
  runUntilDone(backend: KvmBackend, onPort: (port: number) => void): void {
    for (;;) {
      expect(this.ioctlInt(this.vcpuFd, MiniVmm.KVM_RUN, 0)).toBe(0);
      const reason = this.run.getUint32(8, true); // exit_reason
      if (reason === 2) {
        // KVM_EXIT_IO: direction u8 @32, size u8 @33, port u16 @34, count u32 @36, data_offset u64 @40
        const out = this.run.getUint8(32) === 1;
        const size = this.run.getUint8(33) as 1 | 2 | 4;
        const port = this.run.getUint16(34, true);
        const count = this.run.getUint32(36, true);
        const offset = Number(this.run.getBigUint64(40, true));
        if (port === 0x1234) return;
        backend.forwardPio(port, size, this.runBytes.subarray(offset, offset + size * count), out);
        onPort(port);
      } else if (reason === 6) {
        // KVM_EXIT_MMIO: phys_addr u64 @32, data[8] @40, len u32 @48, is_write u8 @52
        const len = this.run.getUint32(48, true);
        backend.forwardMmio(this.run.getBigUint64(32, true), this.runBytes.subarray(40, 40 + len), this.run.getUint8(52) === 1);
      } else {
        throw new Error(`unexpected exit ${reason} (${this.run.getUint32(32, true)}, rip data ${this.run.getBigUint64(48, true).toString(16)})`);
      }
    }
  }

  dispose(): void {
    this.munmap(this.runAddress, this.runSize);
    this.close(this.vcpuFd);
    this.close(this.vmFd);
    this.close(this.kvmFd);
    this.munmap(this.ramA, 0x10000);
    this.munmap(this.ramB, 0x10000);
  }
}

describe('adopt mode', () => {
  let vmm: MiniVmm | undefined;
  let backend: KvmBackend | undefined;
  beforeEach((ctx) => ctx.skip(KVM_SKIP !== undefined, KVM_SKIP));
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    vmm?.dispose();
    vmm = undefined;
  });

  it('adds doorbells, lines, routes and dirty logging to a VM it does not own', async () => {
    vmm = new MiniVmm();
    const v = vmm;
    backend = await createBackend({
      mode: 'adopt',
      vmFd: v.vmFd,
      memory: [
        { guestAddress: 0, size: 0x10000, hostAddress: v.ramA, slot: 0 },
        { guestAddress: 0x10000, size: 0x10000, hostAddress: v.ramB, slot: 1 },
      ],
    });
    const b = backend;
    expect(b.mode).toBe('adopt');
    expect(b.capabilities).toMatchObject({ dirtyTracking: 'pull', pageTracking: false, directRegions: true });
    expect(() => b.guest).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
    // The VM fd is the VMM's: not counted, and no RAM mapping of vmed's. The fds are the
    // poller's epoll set and control eventfd.
    expect(b.resources()).toMatchObject({ fds: 2, mappings: 0, workers: 1 });
    const sink = new RecordingSink();
    sink.reads.set('mmio:a0004', 0x1234abcdn);
    b.attach(sink);
    let rings = 0;
    b.registerIoEvent({ space: 'mmio', address: 0xa0000n, length: 4 }, (n) => {
      rings += n;
    });
    const line = b.createLineIrq({ kind: 'gsi', line: 5 }, 'edge');
    // Programming an MSI route rewrites the whole GSI table: the irqchip's routes must survive
    // it, or the IRQ 5 below never arrives.
    const msi = b.createMsiRoute();
    msi.setMsi({ address: 0xfee00000n, data: 0x41 });
    b.dirty.start();

    v.load(0x1000, assemble(GUEST, 0x1000));
    v.reset(0x1000);
    v.runUntilDone(b, (port) => {
      if (port === 0x560) line.assert();
    });

    expect(sink.accesses.map((a) => [a.space, a.address, a.write])).toEqual([
      ['mmio', 0xa0004n, false],
      ['pio', 0x560n, true],
      ['pio', 0x561n, true],
    ]);
    await until(() => rings === 1);
    const word = new Uint8Array(4);
    b.memory.read(0x5000n, word);
    expect(new DataView(word.buffer).getUint32(0, true)).toBe(0x1234abcd);
    // Copies span the two slots; a view cannot (they are apart in the host).
    b.memory.read(0xfffen, word);
    expect(new DataView(word.buffer).getUint32(0, true)).toBe(0x1234abcd);
    const spanning = (() => {
      try {
        b.memory.view(0xfffen, 4, 'read');
      } catch (error) {
        return error;
      }
    })();
    expect(isVmedError(spanning, 'Invalid')).toBe(true);
    // The guest wrote pages 0x5, 0xf, 0x10 and its stack page 0x7 (the interrupt frame).
    const dirty = b.dirty.pull();
    const pages = dirty.flatMap((bm) => Array.from({ length: bm.pages }, (_, i) => i).filter((i) => ((bm.bits[i >>> 5] as number) >>> (i & 31)) & 1).map((i) => Number(bm.base / 4096n) + i));
    expect(pages).toEqual(expect.arrayContaining([0x5, 0xf, 0x10]));
    expect(pages).not.toContain(0x1);

    await b.close();
    backend = undefined;
    // The VM fd is still open and the VM still runs the guest with its own slots.
    expect(readdirSync('/proc/self/fd')).toContain(String(v.vmFd));
    v.reset(0x1000);
    let ran = false;
    const plain = await createBackend({ mode: 'adopt', vmFd: v.vmFd, memory: [{ guestAddress: 0, size: 0x10000, hostAddress: v.ramA }] });
    expect(plain.capabilities.dirtyTracking).toBe(false);
    expect(() => plain.dirty.start()).toThrowError(expect.objectContaining({ code: 'Unsupported' }) as Error);
    v.runUntilDone(plain, (port) => {
      if (port === 0x560) {
        ran = true;
        // No line object now: raise IRQ 5 through a fresh one on the second backend.
        plain.createLineIrq({ kind: 'gsi', line: 5 }, 'edge').assert();
      }
    });
    expect(ran).toBe(true);
    await plain.close();
  });

  it('refuses a closed fd, a non-VM fd and unmapped memory', async () => {
    const opts = (vmFd: number, hostAddress: bigint) => ({ mode: 'adopt', vmFd, memory: [{ guestAddress: 0, size: 0x1000, hostAddress }] });
    await expect(createBackend(opts(987654, 0x10000n))).rejects.toMatchObject({ code: 'BadHandle' });
    // fd 0 is not a VM.
    await expect(createBackend(opts(0, 0x10000n))).rejects.toMatchObject({ code: 'Invalid' });
    vmm = new MiniVmm();
    // Page 0x1000 of the process is never mapped.
    await expect(createBackend(opts(vmm.vmFd, 0x1000n))).rejects.toMatchObject({ code: 'Invalid' });
  });
});
