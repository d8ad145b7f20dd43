/**
 * This process's mappings as `/proc/self/maps` lists them, and counts of what it holds from
 * the OS (fds, mapping lines, threads, RSS, locked memory) for leak and teardown checks.
 */
import { readFileSync, readdirSync } from 'node:fs';

export interface MapLine {
  readonly start: bigint;
  readonly end: bigint;
  readonly perms: string;
  readonly path: string;
}

/** The lines of `/proc/<pid>/maps`, in address order. */
export function mapLines(pid: number | 'self' = 'self'): MapLine[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [range = '', perms = '', , , , ...rest] = line.split(/\s+/);
      const [start = '0', end = '0'] = range.split('-');
      return { start: BigInt(`0x${start}`), end: BigInt(`0x${end}`), perms, path: rest.join(' ') };
    });
}

/** The named mappings (perms and pathname), sorted: what must be identical before and after. */
export function namedMappings(pid: number | 'self' = 'self'): string[] {
  return mapLines(pid)
    .filter((l) => l.path !== '' && l.path !== '[heap]')
    .map((l) => `${l.perms} ${l.path}`)
    .sort();
}

/** The mapping line containing host address `address`, with its neighbours. */
export function mappingAround(address: bigint, lines = mapLines()): { before: MapLine | undefined; line: MapLine; after: MapLine | undefined } {
  const i = lines.findIndex((l) => l.start <= address && address < l.end);
  const line = lines[i];
  if (line === undefined) throw new Error(`0x${address.toString(16)} is not mapped`);
  return { before: lines[i - 1], line, after: lines[i + 1] };
}

export interface ProcessCounts {
  fds: number;
  /** Lines of /proc/<pid>/maps. */
  mappings: number;
  /**
   * Lines with a pathname (files, memfds such as `memfd:vmed-ram`, anon inodes such as
   * `anon_inode:kvm-vcpu`, stacks), `[heap]` aside: every mapping vmed makes has one.
   */
  namedMappings: number;
  /**
   * Anonymous lines: V8's heap pages (256 KiB each, mapped and unmapped as the JS heap
   * breathes), malloc arenas, thread stacks — and guard-page reservations.
   */
  anonymousMappings: number;
  threads: number;
  rssKiB: number;
  lockedKiB: number;
}

function statusField(status: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
  return Number(match?.[1] ?? NaN);
}

/** What process `pid` holds now. */
export function processCounts(pid: number | 'self' = 'self'): ProcessCounts {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const lines = mapLines(pid);
  const named = lines.filter((l) => l.path !== '' && l.path !== '[heap]').length;
  return {
    fds: readdirSync(`/proc/${pid}/fd`).length,
    mappings: lines.length,
    namedMappings: named,
    anonymousMappings: lines.filter((l) => l.path === '').length,
    threads: readdirSync(`/proc/${pid}/task`).length,
    rssKiB: statusField(status, 'VmRSS'),
    lockedKiB: statusField(status, 'VmLck'),
  };
}
