/**
 * One libxenforeignmemory handle: mappings of the guest's frames (and of the IOREQ server's
 * resource pages) into this process. Each mapping is returned as a {@link ForeignMapping} the
 * caller must release; the handle counts what is live so `resources().mappings` is exact.
 */
import { BadHandleError, InvalidError, IoError, hex } from '@vmed/core';
import { PROT_READ, PROT_WRITE, viewNative, type ForeignMemoryLib, type Pointer } from '../abi/xen.js';
import { loadForeignMemoryLib } from './load.js';
import { errnoName, errorFromErrno, lastError } from './errno.js';
import { withFdDelta } from './fds.js';

/** A live foreign mapping: `pages` frames at `address` in this process. */
export interface ForeignMapping {
  readonly address: Pointer;
  readonly pages: number;
  /** The mapped bytes, zero-copy. Invalid (and must not be touched) after {@link release}. */
  readonly buffer: ArrayBuffer;
  release(): void;
}

/** Largest single mapping: keeps `koffi.view` well under Node 20's 4 GiB ArrayBuffer limit. */
export const MAX_MAPPING_PAGES = 1 << 18; // 1 GiB

/** A libxenforeignmemory handle (`xenforeignmemory_open`). */
export class ForeignMemoryHandle {
  readonly #lib: ForeignMemoryLib;
  #handle: Pointer | null;
  #live = 0;
  /** Descriptors `xenforeignmemory_open` opened (privcmd). */
  readonly fds: number;

  private constructor(lib: ForeignMemoryLib, handle: Pointer, fds: number) {
    this.#lib = lib;
    this.#handle = handle;
    this.fds = fds;
  }

  /** Opens a handle; see {@link DeviceModelHandle.open} for the errors. */
  static open(): ForeignMemoryHandle {
    const lib = loadForeignMemoryLib();
    // SAFETY: no logger, no flags; the handle is ours until close.
    const { value: handle, fds, errno } = withFdDelta(() => lib.open(null, 0));
    if (handle === null) throw errorFromErrno('xen.foreignmemory.open', 'cannot open libxenforeignmemory (is this dom0 on Xen, with /dev/xen/privcmd?)', errno);
    return new ForeignMemoryHandle(lib, handle, fds);
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  /** Mappings made by this handle and not yet released. */
  get liveMappings(): number {
    return this.#live;
  }

  #h(operation: string): Pointer {
    if (this.#handle === null) throw new BadHandleError(operation, 'foreign-memory handle is closed');
    return this.#handle;
  }

  /**
   * `xenforeignmemory_map`: maps guest frames `pfns` of `domid` contiguously. Throws `Io` naming
   * the first frame Xen refused (not RAM, ballooned out, or a foreign domain's MMIO) — the
   * partial mapping is released first.
   */
  map(domid: number, pfns: BigUint64Array, writable: boolean): ForeignMapping {
    const op = 'xen.foreignMap';
    const pages = pfns.length;
    if (pages === 0 || pages > MAX_MAPPING_PAGES) throw new InvalidError(op, `cannot map ${pages} frames (1..${MAX_MAPPING_PAGES})`);
    const err = new Int32Array(pages);
    const prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    // SAFETY: the library reads `pfns` and writes one status per frame into `err` during the call;
    // the returned range stays mapped until `unmap` below.
    const address = this.#lib.map(this.#h(op), domid, prot, pages, pfns, err);
    if (address === null) throw lastError(op, `cannot map ${pages} frames from pfn ${hex(pfns[0] as bigint)} of domain ${domid}`);
    const bad = err.findIndex((e) => e !== 0);
    if (bad >= 0) {
      this.#lib.unmap(this.#h(op), address, pages);
      // privcmd reports each frame's failure as a negative errno.
      const errno = Math.abs(err[bad] as number);
      throw new IoError(op, `domain ${domid} frame ${hex(pfns[bad] as bigint)} cannot be mapped`, { errno: errnoName(errno) });
    }
    return this.#track(address, pages, () => {
      // SAFETY: unmaps exactly what `map` returned; callers drop every view of it first.
      this.#lib.unmap(this.#h('xen.foreignUnmap'), address, pages);
    });
  }

  /**
   * `xenforeignmemory_map_resource`: maps `nrFrames` frames of a Xen resource (an IOREQ server's
   * pages) read-write. Throws with the errno when the hypervisor or kernel lacks the interface
   * (ENOSYS/EOPNOTSUPP: use the legacy gfn mapping instead).
   */
  mapResource(domid: number, type: number, id: number, frame: number, nrFrames: number): ForeignMapping {
    const op = 'xen.mapResource';
    const paddr = new BigUint64Array(1);
    // SAFETY: `paddr` is in/out: NULL asks the kernel to choose the address, which is written back.
    const fres = this.#lib.mapResource(this.#h(op), domid, type, id, frame, nrFrames, paddr, PROT_READ | PROT_WRITE, 0);
    if (fres === null) throw lastError(op, `cannot map resource type ${type} id ${id} frames ${frame}+${nrFrames} of domain ${domid}`);
    return this.#track(paddr[0] as bigint, nrFrames, () => {
      // SAFETY: releases the resource handle and its mapping; views of it are dropped first.
      this.#lib.unmapResource(this.#h('xen.unmapResource'), fres);
    });
  }

  /** `xenforeignmemory_restrict`: from now on this handle maps only `domid`'s memory. */
  restrict(domid: number): void {
    const op = 'xen.foreignmemory.restrict';
    if (this.#lib.restrict(this.#h(op), domid) !== 0) throw lastError(op, `cannot restrict the foreign-memory handle to domain ${domid}`);
  }

  #track(address: Pointer, pages: number, unmap: () => void): ForeignMapping {
    this.#live++;
    let released = false;
    const buffer = viewNative(address, pages * 4096);
    return {
      address,
      pages,
      buffer,
      release: () => {
        if (released) return;
        released = true;
        this.#live--;
        // After close the library handle is gone; close() is only called once every mapping is
        // released, so this branch is the guard, not the path.
        if (this.#handle !== null) unmap();
      },
    };
  }

  /**
   * `xenforeignmemory_close`. Mappings outlive the descriptor (each holds the file), so the
   * owner releases every mapping first. Idempotent.
   */
  close(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.#live = 0;
    this.#lib.close(h);
  }
}
