/**
 * Where a standalone guest starts: the segment, control and general registers for a flat
 * 32-bit protected-mode entry (no paging, CS/DS/ES/FS/GS/SS based at 0 with 4 GiB limits) or
 * a real-mode entry, set with `KVM_SET_SREGS`/`KVM_SET_REGS` on a vCPU that is not running.
 */
import { InvalidError } from '@vmed/core';
import type { KvmVcpu, Regs, Segment, Sregs } from '../ioctls/vcpu.js';
import { checkInt } from '../errors.js';
import { KVM_MP_STATE_RUNNABLE } from '../abi/kvm.js';

/** A descriptor table register value. */
export interface TableSpec {
  readonly base: number;
  readonly limit: number;
}

/**
 * A vCPU's entry state. `ip` is a guest-physical address (below 1 MiB in real mode). `esi`
 * holds the vCPU index unless `regs` says otherwise.
 *
 * - `protected32`: CR0.PE set, paging off, CS selector 0x08 and data selector 0x10 with flat
 *   32-bit descriptors loaded in the hidden parts. A guest that takes interrupts, reloads a
 *   segment register or far-jumps also needs a GDT with those two descriptors (its own
 *   `lgdt`, or `gdt` here) and an IDT (`lidt`, or `idt` here).
 * - `real`: CS = 0 and IP = ip below 64 KiB (so label offsets are linear addresses), else
 *   CS = the 64 KiB block of `ip`; the other segments are 0.
 */
export type GuestEntry =
  | {
      readonly mode: 'protected32';
      readonly ip: number;
      readonly stack?: number;
      readonly gdt?: TableSpec;
      readonly idt?: TableSpec;
      readonly regs?: Partial<Regs>;
    }
  | { readonly mode: 'real'; readonly ip: number; readonly stack?: number; readonly regs?: Partial<Regs> };

/** Flat 4 GiB segment: code (type 0xb, execute/read, accessed) or data (type 0x3, read/write, accessed). */
function flat(selector: number, type: number): Segment {
  return { base: 0n, limit: 0xffff_ffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
}

function realSegment(selector: number, type: number): Segment {
  return { base: BigInt(selector) << 4n, limit: 0xffff, selector, type, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0 };
}

/** Applies `entry` to `vcpu` (which must not be running). */
export function applyEntry(vcpu: KvmVcpu, entry: GuestEntry): void {
  const op = 'kvm.guest.setEntry';
  const sregs: Sregs = vcpu.getSregs();
  let ip: bigint;
  if (entry.mode === 'protected32') {
    checkInt(entry.ip, 0, 0xffff_ffff, op, 'entry ip');
    const code = flat(0x08, 0xb);
    const data = flat(0x10, 0x3);
    Object.assign(sregs, { cs: code, ds: data, es: data, fs: data, gs: data, ss: data });
    sregs.cr0 = (sregs.cr0 | 1n) & ~(1n << 31n); // PE on, PG off
    sregs.cr4 = 0n;
    sregs.efer = 0n;
    if (entry.gdt !== undefined) sregs.gdt = table(entry.gdt, op);
    if (entry.idt !== undefined) sregs.idt = table(entry.idt, op);
    ip = BigInt(entry.ip);
  } else if (entry.mode === 'real') {
    checkInt(entry.ip, 0, 0xf_ffff, op, 'entry ip');
    const segment = (entry.ip >>> 4) & 0xf000;
    const cs = realSegment(segment, 0xb);
    const data = realSegment(0, 0x3);
    Object.assign(sregs, { cs, ds: data, es: data, fs: data, gs: data, ss: data });
    sregs.cr0 &= ~1n;
    ip = BigInt(entry.ip - segment * 16);
  } else {
    throw new InvalidError(op, `entry mode ${String((entry as { mode: unknown }).mode)} is not protected32 or real`);
  }
  vcpu.setSregs(sregs);
  const regs: Regs = {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: BigInt(vcpu.index), rdi: 0n, rsp: BigInt(entry.stack ?? 0), rbp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: ip, rflags: 2n,
  };
  if (entry.stack !== undefined) checkInt(entry.stack, 0, 0xffff_ffff, op, 'stack');
  vcpu.setRegs({ ...regs, ...entry.regs });
  // With an in-kernel LAPIC every vCPU but the first waits for INIT/SIPI; an explicit entry
  // means "start here", so it is made runnable.
  vcpu.setMpState(KVM_MP_STATE_RUNNABLE);
}

function table(spec: TableSpec, op: string): { base: bigint; limit: number } {
  checkInt(spec.base, 0, 0xffff_ffff, op, 'table base');
  checkInt(spec.limit, 0, 0xffff, op, 'table limit');
  return { base: BigInt(spec.base), limit: spec.limit };
}
