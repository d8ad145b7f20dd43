/**
 * Reference-counted pinning of guest RAM pages with `mlock`/`munlock`: a page is locked when
 * its first pin arrives and unlocked when its last pin goes, so overlapping pins are fine.
 * A pin that cannot lock all its pages locks none: the pages it newly locked are unlocked
 * again before the error is thrown.
 */
import { hex } from '@vmed/core';
import { lastErrno, libc } from '../abi/libc.js';
import { nativeError } from '../errors.js';
import { HOST_PAGE_SIZE } from '../host/memfd.js';
import type { HostRam } from './host-ram.js';

const PAGE = BigInt(HOST_PAGE_SIZE);

/** A run of guest pages contiguous in the host. */
interface HostRun {
  readonly host: bigint;
  readonly bytes: bigint;
}

export class PinTable {
  readonly #ram: HostRam;
  /** Pin count per guest page number. */
  readonly #counts = new Map<bigint, number>();

  constructor(ram: HostRam) {
    this.#ram = ram;
  }

  /** Pages pinned at least once. */
  get pinnedPages(): number {
    return this.#counts.size;
  }

  /**
   * Pins the pages of `[address, address+length)` (already checked to be RAM).
   * @throws `NoSpace` when `mlock` refuses (RLIMIT_MEMLOCK: EAGAIN/ENOMEM/EPERM).
   */
  pin(address: bigint, length: number): void {
    const pages = this.#pages(address, length);
    const fresh = pages.filter((p) => !this.#counts.has(p));
    const locked: HostRun[] = [];
    for (const run of this.#runs(fresh)) {
      // The kernel faults in and locks the host pages of the run; no buffer crosses.
      if (libc().mlock(run.host, run.bytes) < 0) {
        const errno = lastErrno();
        // Undo: this pin locks nothing if it cannot lock everything.
        for (const done of locked) libc().munlock(done.host, done.bytes);
        throw nativeError('memory.pin', errno, `cannot lock ${hex(run.bytes)} bytes at guest ${hex(address)}+${hex(length)}`, {
          EAGAIN: 'NoSpace',
          ENOMEM: 'NoSpace',
          EPERM: 'NoSpace',
        });
      }
      locked.push(run);
    }
    for (const p of pages) this.#counts.set(p, (this.#counts.get(p) ?? 0) + 1);
  }

  /** Drops one pin of each page of the range; unlocks pages whose count reaches 0. */
  unpin(address: bigint, length: number): void {
    const released: bigint[] = [];
    for (const p of this.#pages(address, length)) {
      const n = this.#counts.get(p) ?? 0;
      if (n <= 1) {
        this.#counts.delete(p);
        if (n === 1) released.push(p);
      } else {
        this.#counts.set(p, n - 1);
      }
    }
    // Unlocks the host pages of each run; failure would only leave them locked, not unsafe.
    for (const run of this.#runs(released)) libc().munlock(run.host, run.bytes);
  }

  /** Unlocks every pinned page (backend close). */
  releaseAll(): void {
    for (const run of this.#runs([...this.#counts.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))) {
      // Unlocks the run's host pages; no buffer crosses.
      libc().munlock(run.host, run.bytes);
    }
    this.#counts.clear();
  }

  #pages(address: bigint, length: number): bigint[] {
    if (length === 0) return [];
    const first = address / PAGE;
    const last = (address + BigInt(length) - 1n) / PAGE;
    const out: bigint[] = [];
    for (let p = first; p <= last; p++) out.push(p);
    return out;
  }

  /** Groups sorted guest page numbers into host-contiguous runs. */
  #runs(pages: readonly bigint[]): HostRun[] {
    const runs: Array<{ host: bigint; bytes: bigint }> = [];
    let lastPage = -2n;
    for (const p of pages) {
      const gpa = p * PAGE;
      const region = this.#ram.ram.find(gpa);
      if (region === undefined) continue;
      const host = this.#ram.hostAddressOf(region, gpa);
      const prev = runs[runs.length - 1];
      if (prev !== undefined && p === lastPage + 1n && prev.host + prev.bytes === host) {
        prev.bytes += PAGE;
      } else {
        runs.push({ host, bytes: PAGE });
      }
      lastPage = p;
    }
    return runs;
  }
}
