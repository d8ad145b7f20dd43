/**
 * The foreign-mapping cache and guest memory on top of it, with a mapper backed by a buffer
 * standing in for `xenforeignmemory_map` (the real one is exercised in the lab). What is tested
 * is ours: bounds checks before any mapping, bucket sharing, eviction, INVALIDATE, views, pins,
 * leak-free disposal and partial-transfer errors.
 */
import { BadHandleError, IoError, RangeSet, guestAddress, type RamRegion } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import { XenGuestMemory } from '../src/memory/guest-memory.js';
import { MapCache, type MappedFrames } from '../src/memory/map-cache.js';

const MiB = 1 << 20;

/** 4 MiB of "guest RAM" at 0 plus 1 MiB at 4 GiB; frames listed in `bad` refuse to map. */
function guest(options: { bad?: Set<bigint>; maxIdleBuckets?: number } = {}) {
  const low = new Uint8Array(4 * MiB);
  const high = new Uint8Array(MiB);
  const ram = new RangeSet<RamRegion>([
    { base: guestAddress(0), length: BigInt(low.length), name: 'low' },
    { base: guestAddress(1n << 32n), length: BigInt(high.length), name: 'high' },
  ]);
  const calls: Array<{ pfn: bigint; pages: number }> = [];
  let live = 0;
  const mapper = (pfn: bigint, pages: number): MappedFrames => {
    calls.push({ pfn, pages });
    for (let i = 0n; i < BigInt(pages); i++) {
      if (options.bad?.has(pfn + i)) throw new IoError('xen.foreignMap', `frame ${pfn + i} cannot be mapped`, { errno: 'EFAULT' });
    }
    const addr = pfn << 12n;
    const backing = addr >= 1n << 32n ? high : low;
    const off = Number(addr >= 1n << 32n ? addr - (1n << 32n) : addr);
    if (off + pages * 4096 > backing.length) throw new IoError('xen.foreignMap', 'not RAM', { errno: 'EFAULT' });
    live++;
    let released = false;
    return {
      bytes: backing.subarray(off, off + pages * 4096),
      release: () => {
        if (!released) live--;
        released = true;
      },
    };
  };
  const cache = new MapCache(mapper, ram, { maxIdleBuckets: options.maxIdleBuckets ?? 4 });
  const memory = new XenGuestMemory(ram, cache);
  return { low, high, memory, cache, calls, live: () => live };
}

describe('XenGuestMemory over the map cache (buffer-backed mapper)', () => {
  it('two adjacent regions inside one 1 MiB window get separate buckets (a spanning copy lands in both)', () => {
    const bytes = new Uint8Array(4 * MiB);
    const ram = new RangeSet<RamRegion>([
      { base: guestAddress(0), length: 0x18_0000n, name: 'a' },
      { base: guestAddress(0x18_0000), length: BigInt(4 * MiB - 0x18_0000), name: 'b' },
    ]);
    const memory = new XenGuestMemory(
      ram,
      new MapCache((pfn, pages) => ({ bytes: bytes.subarray(Number(pfn) * 4096, (Number(pfn) + pages) * 4096), release: () => {} }), ram),
    );
    // Touch region a's part of the window first, so a wrong cache would hand it to region b.
    memory.read(0x17_0000n, new Uint8Array(4));
    const data = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    memory.write(0x17_fff0n, data);
    expect([...bytes.subarray(0x17_fff0, 0x18_0010)]).toEqual([...data]);
    const back = new Uint8Array(32);
    memory.read(0x17_fff0n, back);
    expect(back).toEqual(data);
    const view = memory.view(0x18_0000n, 16, 'read');
    expect([...view.bytes]).toEqual([...data.subarray(16)]);
  });

  it('read and write copy through cached 1 MiB buckets, across buckets and regions', () => {
    const g = guest();
    const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    g.memory.write(BigInt(MiB - 100), data); // straddles buckets 0 and 1
    expect([...g.low.subarray(MiB - 100, MiB + 200)]).toEqual([...data]);
    const back = new Uint8Array(300);
    g.memory.read(BigInt(MiB - 100), back);
    expect(back).toEqual(data);
    expect(g.calls).toEqual([
      { pfn: 0n, pages: 256 },
      { pfn: 256n, pages: 256 },
    ]); // the read reused both buckets
    g.memory.write(1n << 32n, Uint8Array.of(9, 8, 7));
    expect([...g.high.subarray(0, 3)]).toEqual([9, 8, 7]);
  });

  it('refuses a range leaving RAM before mapping anything, with bytesDone 0', () => {
    const g = guest();
    const err = (() => {
      try {
        g.memory.read(BigInt(4 * MiB - 2), new Uint8Array(4));
      } catch (e) {
        return e;
      }
      return undefined;
    })() as { code?: string; bytesDone?: number } | undefined;
    expect(err?.code).toBe('Invalid');
    expect(err?.bytesDone).toBe(0);
    expect(g.calls).toEqual([]);
    expect(() => g.memory.view(0x1_0000_0000n - 4096n, 4096, 'read')).toThrow(/not in guest RAM/);
  });

  it('a frame Xen refuses fails the copy with Io and how far it got; neighbours still work', () => {
    const g = guest({ bad: new Set([300n]) });
    let caught: { code?: string; bytesDone?: number; errno?: string } | undefined;
    try {
      g.memory.read(BigInt(MiB - 10), new Uint8Array(300 * 4096 - MiB + 20 + 4096));
    } catch (e) {
      caught = e as typeof caught;
    }
    expect(caught?.code).toBe('Io');
    expect(caught?.bytesDone).toBe(10); // bucket 0 was fine; bucket 1 holds the bad frame 300
    expect(caught?.errno).toBe('EFAULT');
    // Frame 299 is in the same bucket as the bad one: served by an exact mapping instead.
    g.memory.write(299n * 4096n, Uint8Array.of(1));
    expect(g.low[299 * 4096]).toBe(1);
  });

  it('views alias guest memory, share a bucket, and are refused after dispose', () => {
    const g = guest();
    const a = g.memory.view(0x2000n, 16, 'readwrite');
    const b = g.memory.view(0x3000n, 16, 'read');
    expect(g.cache.mappings).toBe(1);
    a.bytes[0] = 0x5a;
    expect(g.low[0x2000]).toBe(0x5a);
    a.data.setUint32(4, 0xdeadbeef, true);
    expect(g.low[0x2004]).toBe(0xef);
    a.dispose();
    expect(a.disposed).toBe(true);
    expect(() => a.bytes).toThrow(BadHandleError);
    expect(() => a.data).toThrow(BadHandleError);
    b.dispose();
    expect(g.memory.views).toBe(0);
  });

  it('a view spanning two buckets gets its own contiguous mapping, released with the view', () => {
    const g = guest();
    const v = g.memory.view(BigInt(MiB - 8), 16, 'readwrite');
    expect(v.bytes.length).toBe(16);
    v.bytes.fill(0xee);
    expect([...g.low.subarray(MiB - 8, MiB + 8)].every((x) => x === 0xee)).toBe(true);
    expect(g.cache.mappings).toBe(1);
    v.dispose();
    expect(g.cache.mappings).toBe(0);
    expect(g.live()).toBe(0);
  });

  it('pins hold their mapping; views of a pin die with it; overlapping pins are independent', () => {
    const g = guest();
    const p1 = g.memory.pin(0x10000n, 8192);
    const p2 = g.memory.pin(0x11000n, 4096);
    const v = p1.view('readwrite');
    v.bytes[4096] = 3;
    expect(g.low[0x11000]).toBe(3);
    expect(g.memory.pins).toBe(2);
    p1.dispose();
    expect(v.disposed).toBe(true);
    expect(() => p1.view('read')).toThrow(BadHandleError);
    expect(g.memory.pins).toBe(1);
    expect(p2.view('read').bytes[0]).toBe(3);
    p2.dispose();
    expect(g.memory.pins).toBe(0);
  });

  it('idle buckets beyond the limit are evicted, least recently used first', () => {
    const g = guest({ maxIdleBuckets: 2 });
    for (const mb of [0, 1, 2]) g.memory.read(BigInt(mb * MiB), new Uint8Array(1));
    expect(g.cache.mappings).toBe(2);
    g.calls.length = 0;
    g.memory.read(BigInt(2 * MiB), new Uint8Array(1)); // still cached
    g.memory.read(0n, new Uint8Array(1)); // evicted: mapped again
    expect(g.calls).toEqual([{ pfn: 0n, pages: 256 }]);
  });

  it('INVALIDATE unmaps idle buckets at once and leased ones when released', () => {
    const g = guest();
    g.memory.read(0n, new Uint8Array(1));
    const view = g.memory.view(BigInt(MiB), 8, 'read');
    expect(g.live()).toBe(2);
    g.memory.invalidate();
    expect(g.live()).toBe(1); // the view keeps its bucket
    g.calls.length = 0;
    g.memory.read(BigInt(MiB), new Uint8Array(1)); // the retired bucket is not reused
    expect(g.calls).toEqual([{ pfn: 256n, pages: 256 }]);
    view.dispose();
    expect(g.cache.mappings).toBe(1);
  });

  it('close disposes views and pins and unmaps everything; then every call is BadHandle', () => {
    const g = guest();
    const v = g.memory.view(0n, 8, 'read');
    const p = g.memory.pin(BigInt(3 * MiB - 8), 16);
    g.memory.read(BigInt(2 * MiB), new Uint8Array(4));
    g.memory.close();
    expect(v.disposed && p.disposed).toBe(true);
    expect(g.live()).toBe(0);
    expect(g.cache.mappings).toBe(0);
    expect(() => g.memory.read(0n, new Uint8Array(1))).toThrow(BadHandleError);
    expect(() => g.memory.pin(0n, 1)).toThrow(BadHandleError);
  });

  it('reports device-model writes to the observer (dirty push), not reads', () => {
    const g = guest();
    const seen: Array<[bigint, number]> = [];
    g.memory.onWrite = (a, l) => seen.push([a, l]);
    g.memory.write(0x5000n, new Uint8Array(10));
    g.memory.read(0x5000n, new Uint8Array(10));
    expect(seen).toEqual([[0x5000n, 10]]);
  });

  it('refuses zero, negative and oversized view lengths', () => {
    const g = guest();
    for (const len of [0, -1, 1.5, (1 << 30) + 1]) expect(() => g.memory.view(0n, len, 'read')).toThrow(/length/);
  });
});
