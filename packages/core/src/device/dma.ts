/**
 * DMA on behalf of a device model: the only way a model touches guest memory.
 *
 * Every transfer is checked before a byte moves: Bus Master Enable must be set in the
 * function's command register, the length must be a sane integer, the range must not wrap
 * past 2^64, and the backend's memory checks it against the guest's RAM map (so a guest that
 * points a descriptor at MMIO, at a hole or past the end gets an error status from its device,
 * never host memory). Writes are marked dirty for migration.
 */
import { rangeEnd, guestAddress } from '../address.js';
import type { GuestMemory, MemoryAccess, MemoryView } from '../backend/memory.js';
import type { DirtyTracker } from '../dirty/dirty-tracker.js';
import { VmedError, hex, isVmedError } from '../errors.js';
import type { DeviceDma } from './model.js';

/** Largest single transfer a model may ask for (guards against a hostile 4 GiB length). */
export const MAX_DMA_TRANSFER = 256 * 1024 * 1024;

/** A refused DMA. `code` is `State` (bus mastering off) or `Invalid` (bad range). */
export class DmaError extends VmedError {
  override readonly name = 'DmaError';
}

/** Counters of what a device moved. */
export interface DmaStats {
  bytesRead: number;
  bytesWritten: number;
  refused: number;
}

export class DeviceDmaEngine implements DeviceDma {
  readonly stats: DmaStats = { bytesRead: 0, bytesWritten: 0, refused: 0 };

  constructor(
    private readonly memory: GuestMemory,
    private readonly dirty: DirtyTracker,
    private readonly busMasterEnabled: () => boolean,
  ) {}

  read(address: bigint, length: number): Uint8Array {
    this.check('dma.read', address, length);
    const out = new Uint8Array(length);
    this.guard('dma.read', () => this.memory.read(address, out));
    this.stats.bytesRead += length;
    return out;
  }

  readInto(address: bigint, dst: Uint8Array): void {
    this.check('dma.read', address, dst.length);
    this.guard('dma.read', () => this.memory.read(address, dst));
    this.stats.bytesRead += dst.length;
  }

  write(address: bigint, src: Uint8Array): void {
    this.check('dma.write', address, src.length);
    this.guard('dma.write', () => this.memory.write(address, src));
    this.dirty.markDeviceWrite(address, src.length);
    this.stats.bytesWritten += src.length;
  }

  view(address: bigint, length: number, access: MemoryAccess): MemoryView {
    this.check('dma.view', address, length);
    const view = this.guard('dma.view', () => this.memory.view(address, length, access));
    if (access === 'read') {
      this.stats.bytesRead += length;
      return view;
    }
    // The model writes through the view behind our back: mark the range when it is released.
    return new DirtyOnDisposeView(view, () => {
      this.dirty.markDeviceWrite(address, length);
      this.stats.bytesWritten += length;
    });
  }

  private check(operation: string, address: bigint, length: number): void {
    if (!this.busMasterEnabled()) {
      this.stats.refused++;
      throw new DmaError('State', operation, 'bus mastering is disabled in the command register');
    }
    if (!Number.isSafeInteger(length) || length < 0 || length > MAX_DMA_TRANSFER) {
      this.stats.refused++;
      throw new DmaError('Invalid', operation, `length ${length} is not in [0, ${MAX_DMA_TRANSFER}]`);
    }
    try {
      rangeEnd(guestAddress(address, operation), length, operation);
    } catch (e) {
      this.stats.refused++;
      throw new DmaError('Invalid', operation, `range ${hex(address)}+${hex(length)} wraps past 2^64`, { cause: e });
    }
  }

  private guard<T>(operation: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      this.stats.refused++;
      if (isVmedError(e)) throw new DmaError(e.code, operation, e.message, { cause: e, bytesDone: e.bytesDone ?? 0 });
      throw e;
    }
  }
}

/** A writable view that reports its range dirty once, when disposed. */
class DirtyOnDisposeView implements MemoryView {
  constructor(
    private readonly inner: MemoryView,
    private readonly onRelease: () => void,
  ) {}

  get address(): bigint {
    return this.inner.address;
  }
  get length(): number {
    return this.inner.length;
  }
  get access(): MemoryAccess {
    return this.inner.access;
  }
  get bytes(): Uint8Array {
    return this.inner.bytes;
  }
  get data(): DataView {
    return this.inner.data;
  }
  get disposed(): boolean {
    return this.inner.disposed;
  }

  dispose(): void {
    if (this.inner.disposed) return;
    this.onRelease();
    this.inner.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
