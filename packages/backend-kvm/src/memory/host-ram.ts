/**
 * Guest RAM as the host sees it: each RAM region with the host address its bytes live at,
 * validated once (page aligned, sorted, no overlap), and the zero-copy windows over it.
 *
 * Standalone: one memfd, the regions at consecutive offsets in guest-address order, each run
 * of guest-adjacent regions mapped host-adjacent between `PROT_NONE` guard pages, so a host
 * access past the end of guest RAM faults instead of touching other memory (see
 * `guarded-ram.ts`). Adopt: the embedding VMM's mappings, each checked to be mapped (`msync`
 * probe) before it is trusted.
 */
import { InvalidError, RangeSet, guestAddress, hex, type GuestAddress, type RamRegion } from '@vmed/core';
import { MS_ASYNC, hostView, lastErrno, libc } from '../abi/libc.js';
import { nativeError } from '../errors.js';
import { HOST_PAGE_SIZE } from '../host/memfd.js';

/** A RAM region and where its bytes are in this process. */
export interface HostRamRegion extends RamRegion {
  readonly hostAddress: bigint;
  /** The KVM memory slot the embedding VMM registered it as (adopt mode), if told. */
  readonly vmmSlot?: number;
}

/** A region as configured, before validation. */
export interface RamRegionSpec {
  readonly base: bigint;
  readonly length: bigint;
  readonly hostAddress: bigint;
  readonly name?: string;
  readonly vmmSlot?: number;
}

/** Bytes per cached window: views are made per chunk, each well under Node 20's 4 GiB limit. */
const CHUNK_BYTES = 1 << 30;
const PAGE = BigInt(HOST_PAGE_SIZE);

export class HostRam {
  readonly ram: RangeSet<HostRamRegion>;
  readonly #chunks = new Map<HostRamRegion, Map<number, Uint8Array>>();

  constructor(specs: readonly RamRegionSpec[], operation: string, probeMapped: boolean) {
    const regions = specs.map((s, i): HostRamRegion => {
      const base: GuestAddress = guestAddress(s.base, operation);
      if (s.length <= 0n || (base | s.length | s.hostAddress) % PAGE !== 0n) {
        throw new InvalidError(operation, `RAM region ${i} (${hex(base)}+${hex(s.length)} at host ${hex(s.hostAddress)}) is not page aligned`);
      }
      if (probeMapped) {
        // Asks the kernel whether the host range is mapped; it reads no buffer.
        if (libc().msync(s.hostAddress, s.length, MS_ASYNC) < 0) {
          throw nativeError(operation, lastErrno(), `host range ${hex(s.hostAddress)}+${hex(s.length)} of RAM region ${i} is not mapped`, { ENOMEM: 'Invalid' });
        }
      }
      return { base, length: s.length, hostAddress: s.hostAddress, name: s.name ?? `ram${i}`, ...(s.vmmSlot === undefined ? {} : { vmmSlot: s.vmmSlot }) };
    });
    this.ram = new RangeSet(regions, operation);
  }

  /** Host address of guest `address`, which must be inside `region`. */
  hostAddressOf(region: HostRamRegion, address: bigint): bigint {
    return region.hostAddress + (address - region.base);
  }

  /**
   * Calls `fn` with zero-copy windows covering `[offset, offset+length)` of `region`, in order,
   * with the position of each window in the whole range.
   */
  forEachWindow(region: HostRamRegion, offset: bigint, length: number, fn: (window: Uint8Array, done: number) => void): void {
    let done = 0;
    let at = offset;
    while (done < length) {
      const chunkIndex = Number(at / BigInt(CHUNK_BYTES));
      const chunk = this.#chunk(region, chunkIndex);
      const within = Number(at - BigInt(chunkIndex) * BigInt(CHUNK_BYTES));
      const n = Math.min(length - done, chunk.length - within);
      fn(chunk.subarray(within, within + n), done);
      done += n;
      at += BigInt(n);
    }
  }

  /**
   * A zero-copy window on `[offset, offset+length)` of `region` cut from the cached chunk, or
   * `undefined` when the range crosses a chunk boundary. Views are made this way because each
   * `koffi.view` is a new external ArrayBuffer: V8 counts it as external memory, and making
   * one per DMA view drove full garbage collections (the `dma.*` benchmarks).
   */
  windowAt(region: HostRamRegion, offset: bigint, length: number): Uint8Array | undefined {
    const chunkIndex = Number(offset / BigInt(CHUNK_BYTES));
    const within = Number(offset - BigInt(chunkIndex) * BigInt(CHUNK_BYTES));
    const chunk = this.#chunk(region, chunkIndex);
    return within + length <= chunk.length ? chunk.subarray(within, within + length) : undefined;
  }

  /** Drops the cached windows (before the memory is unmapped). */
  forget(): void {
    this.#chunks.clear();
  }

  #chunk(region: HostRamRegion, index: number): Uint8Array {
    let chunks = this.#chunks.get(region);
    if (chunks === undefined) {
      chunks = new Map();
      this.#chunks.set(region, chunks);
    }
    let chunk = chunks.get(index);
    if (chunk === undefined) {
      const start = BigInt(index) * BigInt(CHUNK_BYTES);
      const size = Number(region.length - start < BigInt(CHUNK_BYTES) ? region.length - start : BigInt(CHUNK_BYTES));
      chunk = new Uint8Array(hostView(region.hostAddress + start, size));
      chunks.set(index, chunk);
    }
    return chunk;
  }
}
