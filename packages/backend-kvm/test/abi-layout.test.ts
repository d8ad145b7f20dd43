/**
 * The TypeScript ABI (`abi/kvm.ts`, `abi/libc.ts`) against the C headers: a C program compiled
 * with gcc prints `sizeof`/`offsetof` of every struct and member, every offset read from
 * `struct kvm_run`, every ioctl number and constant; each must equal the TypeScript value.
 * Needs gcc and the kernel/libc headers, not /dev/kvm.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as kvm from '../src/abi/kvm.js';
import * as libc from '../src/abi/libc.js';

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const GCC_SKIP = hasGcc() ? undefined : 'gcc is not installed';

/** Each expected value with the C expression that must produce it. */
interface Check {
  readonly name: string;
  readonly c: string;
  readonly ts: number | bigint;
}

function structChecks(): Check[] {
  const checks: Check[] = [];
  for (const [name, type] of Object.entries(kvm.KVM_STRUCTS)) {
    checks.push({ name: `sizeof ${name}`, c: `sizeof(struct ${name})`, ts: type.size });
    for (const member of Object.values(type.members ?? {})) {
      checks.push({ name: `${name}.${member.name}`, c: `offsetof(struct ${name}, ${member.name})`, ts: member.offset });
    }
  }
  return checks;
}

const RUN_MEMBERS: Record<keyof typeof kvm.KVM_RUN_OFFSETS, string> = {
  immediateExit: 'immediate_exit',
  exitReason: 'exit_reason',
  ioDirection: 'io.direction',
  ioSize: 'io.size',
  ioPort: 'io.port',
  ioCount: 'io.count',
  ioDataOffset: 'io.data_offset',
  mmioPhysAddr: 'mmio.phys_addr',
  mmioData: 'mmio.data',
  mmioLen: 'mmio.len',
  mmioIsWrite: 'mmio.is_write',
  internalSuberror: 'internal.suberror',
  internalNdata: 'internal.ndata',
  internalData: 'internal.data',
  failEntryReason: 'fail_entry.hardware_entry_failure_reason',
  failEntryCpu: 'fail_entry.cpu',
  hwExitReason: 'hw.hardware_exit_reason',
};

const ENTRY_MEMBERS: Record<string, string> = {
  irqchipChip: 'u.irqchip.irqchip',
  irqchipPin: 'u.irqchip.pin',
  msiAddressLo: 'u.msi.address_lo',
  msiAddressHi: 'u.msi.address_hi',
  msiData: 'u.msi.data',
};

/** Constants kvm.ts defines that are kernel-internal, not in the uapi headers. */
const NOT_IN_UAPI = new Set(['KVM_MAX_IRQ_ROUTES']);

function constantChecks(): Check[] {
  const checks: Check[] = [];
  for (const [name, value] of Object.entries(kvm)) {
    if (typeof value === 'number' && /^KVM(IO|_)/.test(name) && !NOT_IN_UAPI.has(name)) checks.push({ name, c: name, ts: value });
  }
  for (const [name, value] of Object.entries(kvm.KVM_IOCTLS)) checks.push({ name: `ioctl ${name}`, c: name, ts: value });
  for (const [key, member] of Object.entries(RUN_MEMBERS)) {
    checks.push({ name: `kvm_run.${member}`, c: `offsetof(struct kvm_run, ${member})`, ts: kvm.KVM_RUN_OFFSETS[key as keyof typeof kvm.KVM_RUN_OFFSETS] });
  }
  for (const [key, member] of Object.entries(ENTRY_MEMBERS)) {
    checks.push({ name: `kvm_irq_routing_entry.${member}`, c: `offsetof(struct kvm_irq_routing_entry, ${member})`, ts: (kvm.IRQ_ROUTING_ENTRY as Record<string, number>)[key] as number });
  }
  return checks;
}

function libcChecks(): Check[] {
  const names = [
    'EPERM', 'ENOENT', 'EINTR', 'EBADF', 'EAGAIN', 'ENOMEM', 'EFAULT', 'EBUSY', 'EEXIST', 'ENXIO', 'ENODEV', 'EINVAL',
    'EMFILE', 'ENOTTY', 'ENOSPC', 'ENOSYS', 'EOPNOTSUPP', 'O_RDWR', 'O_CLOEXEC', 'F_GETFD', 'PROT_NONE', 'PROT_READ',
    'PROT_WRITE', 'MAP_SHARED', 'MAP_PRIVATE', 'MAP_ANONYMOUS', 'MAP_NORESERVE', 'MS_ASYNC', 'MFD_CLOEXEC', 'EFD_NONBLOCK',
    'EFD_CLOEXEC', 'EPOLL_CLOEXEC', 'EPOLL_CTL_ADD', 'EPOLL_CTL_DEL', 'EPOLLIN', 'SA_RESTART',
  ] as const;
  const checks: Check[] = names.map((name) => ({ name, c: name, ts: (libc as unknown as Record<string, number>)[name] as number }));
  // EPOLLET is 1u << 31: compare as unsigned.
  checks.push({ name: 'EPOLLET', c: '(unsigned)EPOLLET', ts: libc.EPOLLET >>> 0 });
  checks.push({ name: 'MAP_FAILED', c: '(unsigned long long)(uintptr_t)MAP_FAILED', ts: libc.MAP_FAILED });
  checks.push({ name: 'sizeof epoll_event', c: 'sizeof(struct epoll_event)', ts: libc.EPOLL_EVENT_SIZE });
  checks.push({ name: 'epoll_event.data', c: 'offsetof(struct epoll_event, data)', ts: libc.EPOLL_EVENT_DATA_OFFSET });
  checks.push({ name: 'sizeof sigaction', c: 'sizeof(struct sigaction)', ts: libc.SIGACTION_SIZE });
  checks.push({ name: 'sigaction.sa_handler', c: 'offsetof(struct sigaction, sa_handler)', ts: libc.SIGACTION_HANDLER_OFFSET });
  checks.push({ name: 'sigaction.sa_mask', c: 'offsetof(struct sigaction, sa_mask)', ts: libc.SIGACTION_MASK_OFFSET });
  checks.push({ name: 'sigaction.sa_flags', c: 'offsetof(struct sigaction, sa_flags)', ts: libc.SIGACTION_FLAGS_OFFSET });
  return checks;
}

function runC(checks: readonly Check[]): Map<string, bigint> {
  const dir = mkdtempSync(join(tmpdir(), 'vmed-abi-'));
  try {
    const lines = checks.map((c, i) => `  printf("%d %llu\\n", ${i}, (unsigned long long)(${c.c}));`);
    const source = [
      '#define _GNU_SOURCE',
      '#include <errno.h>',
      '#include <fcntl.h>',
      '#include <signal.h>',
      '#include <stddef.h>',
      '#include <stdint.h>',
      '#include <stdio.h>',
      '#include <sys/epoll.h>',
      '#include <sys/eventfd.h>',
      '#include <sys/mman.h>',
      '#include <linux/kvm.h>',
      'int main(void) {',
      ...lines,
      '  return 0;',
      '}',
    ].join('\n');
    writeFileSync(join(dir, 'abi.c'), source);
    execFileSync('gcc', ['-o', join(dir, 'abi'), join(dir, 'abi.c')], { stdio: 'pipe' });
    const out = execFileSync(join(dir, 'abi'), { encoding: 'utf8' });
    const values = new Map<string, bigint>();
    for (const line of out.trim().split('\n')) {
      const [index, value] = line.split(' ');
      values.set((checks[Number(index)] as Check).name, BigInt(value as string));
    }
    return values;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('ABI layouts against the C headers', () => {
  it('every struct size and member offset of abi/kvm.ts', (ctx) => {
    ctx.skip(GCC_SKIP !== undefined, GCC_SKIP);
    const checks = structChecks();
    expect(checks.length).toBeGreaterThan(80);
    const c = runC(checks);
    expect(Object.fromEntries(checks.map((k) => [k.name, BigInt(k.ts)]))).toEqual(Object.fromEntries(c));
  });

  it('every ioctl number, constant and kvm_run offset of abi/kvm.ts', (ctx) => {
    ctx.skip(GCC_SKIP !== undefined, GCC_SKIP);
    const checks = constantChecks();
    expect(checks.length).toBeGreaterThan(70);
    const c = runC(checks);
    expect(Object.fromEntries(checks.map((k) => [k.name, BigInt(k.ts)]))).toEqual(Object.fromEntries(c));
  });

  it('the libc constants and struct layouts of abi/libc.ts', (ctx) => {
    ctx.skip(GCC_SKIP !== undefined, GCC_SKIP);
    const checks = libcChecks();
    const c = runC(checks);
    expect(Object.fromEntries(checks.map((k) => [k.name, BigInt(k.ts)]))).toEqual(Object.fromEntries(c));
  });

  it('names errnos as libc does', () => {
    expect([libc.errnoName(11), libc.errnoName(16), libc.errnoName(95), libc.errnoName(9999)]).toEqual(['EAGAIN', 'EBUSY', 'EOPNOTSUPP', 'E9999']);
  });
});
