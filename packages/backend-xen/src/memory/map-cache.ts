/**
 * A cache of foreign mappings of guest RAM, in the manner of QEMU's Xen mapcache.
 *
 * Mapping guest frames is a hypercall and an `mmap`, so RAM is mapped in aligned buckets
 * (1 MiB by default) that stay mapped while used and, idle, until evicted (least recently used
 * first) or until Xen sends `IOREQ_TYPE_INVALIDATE` — after the guest gave frames back (a
 * balloon), a cached mapping may hold a frame the guest no longer owns. A lease that fits in
 * one bucket shares the bucket's mapping; a larger one gets its own mapping, contiguous in this
 * process, released with the lease. A lease held across an invalidation keeps its mapping (the
 * holder is using it) and it is unmapped when released.
 *
 * The cache knows the RAM map but not Xen: frames come from a {@link FrameMapper}, which the
 * backend implements with `xenforeignmemory_map` and the tests with a buffer.
 */
import { IoError, hex, isVmedError, type RamRegion, type RangeSet } from '@vmed/core';

/** Frames mapped contiguously into this process. */
export interface MappedFrames {
  readonly bytes: Uint8Array;
  release(): void;
}

/** Maps `pages` consecutive guest frames from `firstPfn`, read-write. */
export type FrameMapper = (firstPfn: bigint, pages: number) => MappedFrames;

/** Bytes of guest RAM lent out by the cache; `release` once done. */
export interface Lease {
  readonly address: bigint;
  readonly bytes: Uint8Array;
  release(): void;
}

interface Bucket {
  /** The aligned window and the RAM region it was clipped to: a window two regions share is two buckets. */
  readonly key: string;
  readonly base: bigint;
  readonly end: bigint;
  readonly frames: MappedFrames;
  refs: number;
  stale: boolean;
}

const PAGE = 4096n;

/** Options of a {@link MapCache}. */
export interface MapCacheOptions {
  /** log2 of the bucket size; 20 (1 MiB) by default, at least 12. */
  readonly bucketShift?: number;
  /** Idle buckets kept mapped; 64 by default. */
  readonly maxIdleBuckets?: number;
}

/** See the module doc. */
export class MapCache {
  readonly #map: FrameMapper;
  readonly #ram: RangeSet<RamRegion>;
  readonly #shift: bigint;
  readonly #maxIdle: number;
  /** Live, non-stale buckets by key, in least-recently-used order. */
  readonly #buckets = new Map<string, Bucket>();
  #idle = 0;
  /** Host mappings alive: buckets (stale ones still leased included) and dedicated leases. */
  #mappings = 0;

  constructor(map: FrameMapper, ram: RangeSet<RamRegion>, options: MapCacheOptions = {}) {
    this.#map = map;
    this.#ram = ram;
    this.#shift = BigInt(Math.max(12, options.bucketShift ?? 20));
    this.#maxIdle = Math.max(0, options.maxIdleBuckets ?? 64);
  }

  /** Size of a bucket: accesses that stay inside one aligned bucket share its mapping. */
  get bucketBytes(): bigint {
    return 1n << this.#shift;
  }

  /** Host mappings this cache holds right now, idle cached buckets included. */
  get mappings(): number {
    return this.#mappings;
  }

  /** Host mappings held for a lease (a view, a pin): what is not merely cached. */
  get heldMappings(): number {
    return this.#mappings - this.#idle;
  }

  /**
   * Lends `[address, address+length)`, which the caller has checked lies in RAM (one region or
   * adjacent ones). Throws `Io` when Xen refuses a frame.
   */
  lease(address: bigint, length: number): Lease {
    const end = address + BigInt(length);
    const region = this.#ram.find(address);
    if (region !== undefined) {
      const window = address >> this.#shift;
      const bucketBase = window << this.#shift;
      const bucketEnd = bucketBase + (1n << this.#shift);
      const regionEnd = region.base + region.length;
      const base = floorPage(bucketBase > region.base ? bucketBase : region.base);
      const limit = ceilPage(bucketEnd < regionEnd ? bucketEnd : regionEnd);
      if (end <= limit) {
        const bucket = this.#bucket(`${window}@${region.base}`, base, limit);
        if (bucket !== undefined) return this.#bucketLease(bucket, address, length);
      }
    }
    return this.#dedicated(address, length);
  }

  /** Drops every idle mapping and retires the leased ones (unmapped when released). */
  invalidate(): void {
    for (const bucket of this.#buckets.values()) {
      if (bucket.refs === 0) {
        this.#unmap(bucket);
      } else {
        bucket.stale = true;
      }
    }
    this.#buckets.clear();
    this.#idle = 0;
  }

  #bucket(key: string, base: bigint, end: bigint): Bucket | undefined {
    const cached = this.#buckets.get(key);
    if (cached !== undefined) {
      // Map order is the LRU order: move to the back.
      this.#buckets.delete(key);
      this.#buckets.set(key, cached);
      return cached;
    }
    let frames: MappedFrames;
    try {
      frames = this.#map(base >> 12n, Number((end - base) / PAGE));
    } catch (error) {
      // One unmappable frame (ballooned out) must not fail accesses to its neighbours: the
      // caller falls back to mapping exactly what it asked for.
      if (isVmedError(error, 'Io')) return undefined;
      throw error;
    }
    this.#mappings++;
    const bucket: Bucket = { key, base, end, frames, refs: 0, stale: false };
    this.#buckets.set(key, bucket);
    this.#idle++;
    this.#evict();
    return bucket;
  }

  #bucketLease(bucket: Bucket, address: bigint, length: number): Lease {
    if (address < bucket.base || address + BigInt(length) > bucket.end) {
      // A subarray past the mapping would silently be short: never hand one out.
      throw new IoError('xen.mapGuest', `internal: ${hex(address)}+${hex(length)} is outside its bucket ${hex(bucket.base)}..${hex(bucket.end)}`);
    }
    if (bucket.refs === 0) this.#idle--;
    bucket.refs++;
    const offset = Number(address - bucket.base);
    let released = false;
    return {
      address,
      bytes: bucket.frames.bytes.subarray(offset, offset + length),
      release: () => {
        if (released) return;
        released = true;
        bucket.refs--;
        if (bucket.refs > 0) return;
        if (bucket.stale) {
          this.#unmap(bucket);
        } else {
          this.#idle++;
          this.#evict();
        }
      },
    };
  }

  #dedicated(address: bigint, length: number): Lease {
    const base = floorPage(address);
    const end = ceilPage(address + BigInt(length));
    let frames: MappedFrames;
    try {
      frames = this.#map(base >> 12n, Number((end - base) / PAGE));
    } catch (error) {
      if (isVmedError(error)) throw error;
      throw new IoError('xen.mapGuest', `cannot map guest memory ${hex(address)}+${hex(length)}`, { cause: error });
    }
    this.#mappings++;
    const offset = Number(address - base);
    let released = false;
    return {
      address,
      bytes: frames.bytes.subarray(offset, offset + length),
      release: () => {
        if (released) return;
        released = true;
        this.#mappings--;
        frames.release();
      },
    };
  }

  #evict(): void {
    if (this.#idle <= this.#maxIdle) return;
    for (const bucket of this.#buckets.values()) {
      if (this.#idle <= this.#maxIdle) break;
      if (bucket.refs !== 0) continue;
      this.#buckets.delete(bucket.key);
      this.#idle--;
      this.#unmap(bucket);
    }
  }

  #unmap(bucket: Bucket): void {
    this.#mappings--;
    bucket.frames.release();
  }

  /** Unmaps every idle bucket; leased ones go when released (the owner releases leases first). */
  clear(): void {
    this.invalidate();
  }
}

function floorPage(a: bigint): bigint {
  return a & ~(PAGE - 1n);
}

function ceilPage(a: bigint): bigint {
  return (a + PAGE - 1n) & ~(PAGE - 1n);
}
