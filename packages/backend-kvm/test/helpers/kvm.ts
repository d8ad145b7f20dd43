/**
 * Shared test setup: whether this machine can run KVM tests, a recording sink, and counters of
 * the process's OS resources for leak checks.
 */
import { accessSync, constants, readFileSync, readdirSync } from 'node:fs';
import type { AccessSize, IoRequestSink, IoSpace } from '@vmed/core';
import { HAS_BINUTILS } from './assemble.js';

function canOpenKvm(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export const HAS_KVM = canOpenKvm();
/** Why a KVM test skips, or undefined when it can run. */
export const KVM_SKIP = !HAS_KVM ? '/dev/kvm is absent or not accessible' : !HAS_BINUTILS ? 'GNU as/ld are not installed' : undefined;

export interface Access {
  readonly space: IoSpace;
  readonly address: bigint;
  readonly size: AccessSize;
  readonly write: boolean;
  readonly value: bigint;
}

/** A sink that records every access and answers reads from `reads` (by `space:address`) or all-ones. */
export class RecordingSink implements IoRequestSink {
  readonly accesses: Access[] = [];
  readonly reads = new Map<string, bigint>();
  /** Called after each recorded access (lets a test react, e.g. deassert a line). */
  onAccess: ((access: Access) => void) | undefined;

  read(space: IoSpace, address: bigint, size: AccessSize): bigint {
    const value = this.reads.get(`${space}:${address.toString(16)}`) ?? (1n << BigInt(size * 8)) - 1n;
    const access = { space, address, size, write: false, value };
    this.accesses.push(access);
    this.onAccess?.(access);
    return value;
  }

  write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    const access = { space, address, size, write: true, value };
    this.accesses.push(access);
    this.onAccess?.(access);
  }

  writes(space: IoSpace, address: bigint): bigint[] {
    return this.accesses.filter((a) => a.write && a.space === space && a.address === address).map((a) => a.value);
  }
}

/**
 * Open fds, mappings and threads of this process. `kvmMappings` counts the mappings a KVM
 * session makes (memfd RAM and shared memory, vCPU kvm_run pages; by inode and name, as mlock
 * splits one mapping into several lines); `mappings` counts all of
 * them, which also moves with malloc arenas, glibc's thread-stack cache and V8 heap pages.
 */
export function osResources(): { fds: number; mappings: number; kvmMappings: number; threads: number } {
  const maps = readFileSync('/proc/self/maps', 'utf8').trim().split('\n');
  return {
    fds: readdirSync('/proc/self/fd').length,
    mappings: maps.length,
    // One mapping may show as several lines (mlock splits it): count distinct inode + name.
    kvmMappings: new Set(
      maps.filter((line) => /\/memfd:vmed-|anon_inode:kvm-vcpu/.test(line)).map((line) => line.split(/\s+/).slice(4).join(' ')),
    ).size,
    threads: readdirSync('/proc/self/task').length,
  };
}

/**
 * {@link osResources} once the process holds still: worker threads of an earlier test exit
 * asynchronously and take their event loop's fds with them, so a snapshot taken while they
 * wind down would drift under a count that is meant to compare exactly.
 */
export async function settledOsResources(): Promise<ReturnType<typeof osResources>> {
  let last = osResources();
  for (let stable = 0; stable < 5; ) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = osResources();
    stable = now.fds === last.fds && now.threads === last.threads ? stable + 1 : 0;
    last = now;
  }
  return last;
}

/** Resolves when `predicate` holds, checking after each turn of the event loop. */
export async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Threads of this process sleeping in KVM's halt (a vCPU blocked in HLT inside KVM_RUN). */
export function haltedVcpuThreads(): number {
  let n = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/wchan`, 'utf8').includes('kvm_vcpu_block')) n++;
    } catch {
      // the thread exited meanwhile
    }
  }
  return n;
}
