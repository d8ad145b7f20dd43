/**
 * Host memory backed by a memfd and mapped shared: guest RAM in standalone mode and the
 * shared memory of direct regions. The memfd keeps the pages addressable by fd (a memory slot
 * can be made over any offset of the mapping); the mapping gives the host zero-copy views.
 */
import { BadHandleError, InvalidError } from '@vmed/core';
import {
  MAP_FAILED,
  MAP_NORESERVE,
  MAP_SHARED,
  MFD_CLOEXEC,
  PROT_READ,
  PROT_WRITE,
  hostView,
  lastErrno,
  libc,
} from '../abi/libc.js';
import { nativeError } from '../errors.js';

/** Host page size on x86-64. */
export const HOST_PAGE_SIZE = 4096;

/** Largest single zero-copy view: Node 20 cannot make an ArrayBuffer of 4 GiB or more. */
export const MAX_VIEW_BYTES = 2 ** 32 - HOST_PAGE_SIZE;

export class MemfdMapping implements Disposable {
  readonly size: number;
  #fd: number;
  #address: bigint;

  private constructor(fd: number, address: bigint, size: number) {
    this.#fd = fd;
    this.#address = address;
    this.size = size;
  }

  /**
   * `memfd_create` + `ftruncate` + `mmap(MAP_SHARED)` of `size` bytes (a positive multiple
   * of the page size). Pages are allocated on first touch. Failure leaves nothing open.
   */
  static create(name: string, size: number, operation: string): MemfdMapping {
    if (!Number.isSafeInteger(size) || size <= 0 || size % HOST_PAGE_SIZE !== 0) {
      throw new InvalidError(operation, `size ${size} is not a positive multiple of ${HOST_PAGE_SIZE}`);
    }
    const c = libc();
    // The kernel copies the name (a NUL-terminated string koffi builds for the call).
    const fd = c.memfdCreate(name, MFD_CLOEXEC);
    if (fd < 0) throw nativeError(operation, lastErrno(), 'memfd_create() failed');
    // Sets the file size; no buffer crosses.
    if (c.ftruncate(fd, size) < 0) {
      const errno = lastErrno();
      c.close(fd);
      throw nativeError(operation, errno, `ftruncate(${size}) failed`);
    }
    // The kernel creates a shared mapping of the whole file; it lives until munmap in close().
    const address = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (address === MAP_FAILED) {
      const errno = lastErrno();
      c.close(fd);
      throw nativeError(operation, errno, `mmap of ${size} bytes failed`);
    }
    return new MemfdMapping(fd, address, size);
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  get fd(): number {
    if (this.#fd < 0) throw new BadHandleError('memfd.fd');
    return this.#fd;
  }

  /** Host address of the first byte. */
  get address(): bigint {
    if (this.#fd < 0) throw new BadHandleError('memfd.address');
    return this.#address;
  }

  /**
   * A zero-copy ArrayBuffer over `[offset, offset+length)`. It aliases the mapping and must not
   * be touched after {@link close}: an external ArrayBuffer cannot be detached.
   */
  view(offset: number, length: number): ArrayBuffer {
    if (this.#fd < 0) throw new BadHandleError('memfd.view');
    if (offset < 0 || length <= 0 || offset + length > this.size || length > MAX_VIEW_BYTES) {
      throw new InvalidError('memfd.view', `view [${offset}, +${length}) is outside the ${this.size}-byte mapping`);
    }
    return hostView(this.#address + BigInt(offset), length);
  }

  close(): void {
    if (this.#fd < 0) return;
    const c = libc();
    // Removes the mapping; every view over it is dead from here on.
    c.munmap(this.#address, this.size);
    c.close(this.#fd);
    this.#fd = -1;
    this.#address = 0n;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
