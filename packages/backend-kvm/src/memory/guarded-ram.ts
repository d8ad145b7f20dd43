/**
 * Standalone guest RAM in the host: one memfd, mapped inside a `PROT_NONE` reservation so that
 * every run of RAM has guard pages on both sides.
 *
 * ```
 * reservation:  [ guard ][ run 0: regions a, b ][ guard ][ run 1: region c ][ guard ]
 * memfd:                 [ 0 .............. a+b )         [ a+b ...... a+b+c )
 * ```
 *
 * Why: every guest-supplied address is bounds-checked against the RAM map before a byte
 * moves (`guest-memory.ts`), and the guards are the second line behind that check. A host
 * read or write that runs past the end of a run — a bug in a bounds check, a view made one
 * page too long, an off-by-one in a copy loop — faults on the guard page (SIGSEGV) instead of
 * reading or corrupting whatever the allocator put next to guest RAM. A sequential overrun
 * hits the guard with its first stray byte; {@link GUARD_BYTES} is several pages so that a
 * small strided overrun does too.
 *
 * A run is a maximal set of regions adjacent in guest-physical space: they stay adjacent in
 * the host, so a view or a pin may span them (the contract lets a view span regions that are
 * host-contiguous). Regions with a hole between them get a guard between them, so an access
 * running off the end of one region never lands in the next.
 *
 * How: `mmap(NULL, total, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)` reserves the
 * address space (no memory, no commit charge), then each run of the memfd is mapped over its
 * place with `MAP_FIXED|MAP_SHARED`. The kernel splits the reservation's VMA, so
 * `/proc/self/maps` shows `---p` on both sides of every `rw-s … memfd:vmed-ram` line. One
 * `munmap` of the reservation releases all of it.
 *
 * Adopt mode has no guards of vmed's: the embedding VMM owns that mapping.
 */
import { InvalidError, hex } from '@vmed/core';
import {
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_CLOEXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  lastErrno,
  libc,
} from '../abi/libc.js';
import { nativeError } from '../errors.js';
import { HOST_PAGE_SIZE } from '../host/memfd.js';
import type { RamRegionSpec } from './host-ram.js';

/** asm-generic/mman-common.h: MAP_FIXED — place the mapping exactly at `addr`, replacing what is there. */
const MAP_FIXED = 0x10;

/** Bytes of `PROT_NONE` before and after each run of RAM (16 pages). */
export const GUARD_BYTES = 16 * HOST_PAGE_SIZE;

const PAGE = BigInt(HOST_PAGE_SIZE);
const GUARD = BigInt(GUARD_BYTES);

/** A RAM region to place, in guest-physical terms. */
export interface GuestRamRegion {
  readonly base: bigint;
  readonly length: bigint;
  readonly name?: string;
}

/** One host-contiguous run of RAM inside the reservation. */
export interface GuardedRun {
  readonly hostAddress: bigint;
  readonly length: bigint;
  /** Where the run starts in the memfd. */
  readonly fileOffset: bigint;
}

export class GuardedRam implements Disposable {
  /** The regions with their host addresses, in guest-address order. */
  readonly regions: readonly RamRegionSpec[];
  readonly runs: readonly GuardedRun[];
  /** Bytes of RAM (the memfd's size). */
  readonly size: bigint;
  readonly #reservation: { readonly address: bigint; readonly length: bigint };
  #fd: number;

  private constructor(fd: number, reservation: { address: bigint; length: bigint }, size: bigint, runs: GuardedRun[], regions: RamRegionSpec[]) {
    this.#fd = fd;
    this.#reservation = reservation;
    this.size = size;
    this.runs = runs;
    this.regions = regions;
  }

  /**
   * Creates the memfd (`name`), reserves the address space and maps each run of `regions`
   * (page aligned, sorted by base, not overlapping) between guards. Failure leaves nothing
   * mapped or open.
   */
  static create(name: string, regions: readonly GuestRamRegion[], operation: string): GuardedRam {
    const groups = groupRuns(regions, operation);
    const size = groups.reduce((sum, g) => sum + g.length, 0n);
    const reserved = size + GUARD * BigInt(groups.length + 1);
    if (reserved > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidError(operation, `RAM size ${hex(size)} is too large`);
    const c = libc();
    // The kernel copies the name (a NUL-terminated string koffi builds for the call).
    const fd = c.memfdCreate(name, MFD_CLOEXEC);
    if (fd < 0) throw nativeError(operation, lastErrno(), 'memfd_create() failed');
    // Sets the file size (pages are allocated on first touch); no buffer crosses.
    if (c.ftruncate(fd, size) < 0) {
      const errno = lastErrno();
      c.close(fd);
      throw nativeError(operation, errno, `ftruncate(${size}) failed`);
    }
    // Reserves address space only: PROT_NONE, no backing, no commit charge. Lives until close().
    const base = c.mmap(null, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base === MAP_FAILED) {
      const errno = lastErrno();
      c.close(fd);
      throw nativeError(operation, errno, `reserving ${hex(reserved)} bytes of address space failed`);
    }
    const runs: GuardedRun[] = [];
    const out: RamRegionSpec[] = [];
    let host = base + GUARD;
    let fileOffset = 0n;
    for (const group of groups) {
      // Maps this run of the memfd over its place in the reservation (MAP_FIXED replaces the
      // PROT_NONE pages there and nothing else); the guards around it stay PROT_NONE.
      const at = c.mmap(host, group.length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd, fileOffset);
      if (at !== host) {
        const errno = lastErrno();
        c.munmap(base, reserved);
        c.close(fd);
        throw nativeError(operation, errno, `mapping ${hex(group.length)} bytes of RAM at ${hex(host)} failed`);
      }
      runs.push({ hostAddress: host, length: group.length, fileOffset });
      let within = 0n;
      for (const r of group.regions) {
        out.push({ base: r.base, length: r.length, hostAddress: host + within, ...(r.name === undefined ? {} : { name: r.name }) });
        within += r.length;
      }
      host += group.length + GUARD;
      fileOffset += group.length;
    }
    return new GuardedRam(fd, { address: base, length: reserved }, size, runs, out);
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** The whole reservation, guards included (for tests and diagnostics). */
  get reservation(): { readonly address: bigint; readonly length: bigint } {
    return this.#reservation;
  }

  /** Unmaps the reservation (RAM and guards) and closes the memfd. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const c = libc();
    // Removes every run and guard in one call; every view over the RAM is dead from here on.
    c.munmap(this.#reservation.address, this.#reservation.length);
    c.close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Sorted, page-aligned regions grouped into runs of guest-adjacent ones. */
function groupRuns(regions: readonly GuestRamRegion[], operation: string): Array<{ length: bigint; regions: GuestRamRegion[] }> {
  if (regions.length === 0) throw new InvalidError(operation, 'guest RAM needs at least one region');
  const groups: Array<{ end: bigint; length: bigint; regions: GuestRamRegion[] }> = [];
  let previousEnd = -1n;
  for (const [i, r] of regions.entries()) {
    if (r.length <= 0n || (r.base | r.length) % PAGE !== 0n) {
      throw new InvalidError(operation, `RAM region ${i} (${hex(r.base)}+${hex(r.length)}) is not page aligned`);
    }
    if (r.base < previousEnd) throw new InvalidError(operation, `RAM region ${i} at ${hex(r.base)} overlaps or precedes the one before it`);
    const last = groups[groups.length - 1];
    if (last !== undefined && last.end === r.base) {
      last.regions.push(r);
      last.length += r.length;
      last.end += r.length;
    } else {
      groups.push({ end: r.base + r.length, length: r.length, regions: [r] });
    }
    previousEnd = r.base + r.length;
  }
  return groups;
}
