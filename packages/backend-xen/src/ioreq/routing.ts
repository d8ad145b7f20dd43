/**
 * What the IOREQ server asks Xen to send it: port and MMIO ranges (claims, and doorbells that
 * no claim covers) and PCI functions. Ranges go through a {@link Coverage} so Xen only ever
 * sees non-overlapping additions and contained removals; a failed map undoes the pieces that
 * were mapped before it.
 */
import {
  ExistsError,
  InvalidError,
  formatPciAddress,
  formatRange,
  pciConfigAddress,
  rangesOverlap,
  addressRange,
  type AddressRange,
  type IoClaim,
  type PciAddress,
} from '@vmed/core';
import { Coverage, type Piece } from './coverage.js';

/** The server calls routing makes (implemented by `IoreqServer`). */
export interface RangeMapper {
  mapRange(space: 'mmio' | 'pio', first: bigint, last: bigint): void;
  unmapRange(space: 'mmio' | 'pio', first: bigint, last: bigint): void;
  mapPci(segment: number, bus: number, device: number, fn: number): void;
  unmapPci(segment: number, bus: number, device: number, fn: number): void;
}

const PORT_SPACE_END = 0x10000n;

class XenIoClaim implements IoClaim {
  readonly space: 'mmio' | 'pio' | 'pci';
  readonly range: AddressRange;
  #disposed = false;
  readonly #release: () => void;

  constructor(space: 'mmio' | 'pio' | 'pci', range: AddressRange, release: () => void) {
    this.space = space;
    this.range = range;
    this.#release = release;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** See the module doc. */
export class IoRouting {
  readonly #mapper: RangeMapper;
  readonly #coverage = { mmio: new Coverage(), pio: new Coverage() };
  readonly #claims = { mmio: new Set<XenIoClaim>(), pio: new Set<XenIoClaim>() };
  readonly #pci = new Map<string, XenIoClaim>();

  constructor(mapper: RangeMapper) {
    this.#mapper = mapper;
  }

  /** Claims handed out and not disposed. */
  get claims(): number {
    return this.#claims.mmio.size + this.#claims.pio.size + this.#pci.size;
  }

  /** Every live claim (for close). */
  all(): IoClaim[] {
    return [...this.#claims.mmio, ...this.#claims.pio, ...this.#pci.values()];
  }

  /** Whether a claim (not a doorbell) covers `[address, address+size)`. */
  claimed(space: 'mmio' | 'pio', address: bigint, size: number): boolean {
    for (const c of this.#claims[space]) if (address >= c.range.base && address + BigInt(size) <= c.range.base + c.range.length) return true;
    return false;
  }

  /** Claims a port or MMIO range for the device; overlapping another claim is `Exists`. */
  claim(space: 'mmio' | 'pio', range: AddressRange): IoClaim {
    const op = 'xen.claimIo';
    if (space !== 'mmio' && space !== 'pio') throw new InvalidError(op, `unknown space ${String(space)}`);
    if (typeof range?.length !== 'bigint' || range.length <= 0n) throw new InvalidError(op, 'zero-length range');
    const checked = addressRange(range.base, range.length, op);
    if (space === 'pio' && checked.base + checked.length > PORT_SPACE_END) {
      throw new InvalidError(op, `ports ${formatRange(checked)} leave the 64 KiB port space`);
    }
    for (const c of this.#claims[space]) {
      if (rangesOverlap(c.range, checked)) throw new ExistsError(op, `${space} ${formatRange(checked)} overlaps claim ${formatRange(c.range)}`);
    }
    this.acquire(space, checked.base, checked.base + checked.length);
    const claim = new XenIoClaim(space, checked, () => {
      this.#claims[space].delete(claim);
      this.release(space, checked.base, checked.base + checked.length);
    });
    this.#claims[space].add(claim);
    return claim;
  }

  /** Claims a PCI function's config space (`map_pcidev_to_ioreq_server`). */
  claimPci(device: PciAddress): IoClaim {
    const op = 'xen.claimPciFunction';
    const segment = device.segment ?? 0;
    const ok = (v: number, max: number) => Number.isInteger(v) && v >= 0 && v <= max;
    if (!ok(segment, 0xffff) || !ok(device.bus, 0xff) || !ok(device.device, 0x1f) || !ok(device.function, 7)) {
      throw new InvalidError(op, `bad PCI address ${JSON.stringify(device)}`);
    }
    const key = formatPciAddress(device);
    if (this.#pci.has(key)) throw new ExistsError(op, `PCI function ${key} is already claimed`);
    this.#mapper.mapPci(segment, device.bus, device.device, device.function);
    const range = addressRange(pciConfigAddress(device, 0), 4096n, op);
    const claim = new XenIoClaim('pci', range, () => {
      this.#pci.delete(key);
      this.#mapper.unmapPci(segment, device.bus, device.device, device.function);
    });
    this.#pci.set(key, claim);
    return claim;
  }

  /** Adds a reference to `[start, end)` and maps what was not yet mapped. */
  acquire(space: 'mmio' | 'pio', start: bigint, end: bigint): void {
    const fresh = this.#coverage[space].add(start, end);
    const done: Piece[] = [];
    try {
      for (const p of fresh) {
        this.#mapper.mapRange(space, p.start, p.end - 1n);
        done.push(p);
      }
    } catch (error) {
      for (const p of done) {
        try {
          this.#mapper.unmapRange(space, p.start, p.end - 1n);
        } catch {
          // Best effort: the original error is the one to report.
        }
      }
      this.#coverage[space].remove(start, end);
      throw error;
    }
  }

  /** Drops a reference to `[start, end)` and unmaps what nothing covers any more. */
  release(space: 'mmio' | 'pio', start: bigint, end: bigint): void {
    const gone = this.#coverage[space].remove(start, end);
    let first: unknown;
    for (const p of gone) {
      try {
        this.#mapper.unmapRange(space, p.start, p.end - 1n);
      } catch (error) {
        first ??= error;
      }
    }
    if (first !== undefined) throw first;
  }
}
