/**
 * I/O claims on KVM are bookkeeping: every guest access to an address that is neither RAM nor
 * a direct region exits to userspace anyway, and the core's dispatcher decides who serves it.
 * The bookkeeping still refuses what cannot work: a zero-length or out-of-space range
 * (`Invalid`), a range overlapping another claim, guest RAM or a direct region (`Exists`;
 * accesses there never exit, so the claim would never see them).
 */
import {
  ExistsError,
  InvalidError,
  addressRange,
  formatRange,
  rangesOverlap,
  type AddressRange,
  type IoClaim,
} from '@vmed/core';

class KvmIoClaim implements IoClaim {
  readonly space: 'mmio' | 'pio';
  readonly range: AddressRange;
  #disposed = false;
  readonly #onDispose: (claim: KvmIoClaim) => void;

  constructor(space: 'mmio' | 'pio', range: AddressRange, onDispose: (claim: KvmIoClaim) => void) {
    this.space = space;
    this.range = range;
    this.#onDispose = onDispose;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export class IoClaims {
  readonly #claims = new Set<KvmIoClaim>();

  get count(): number {
    return this.#claims.size;
  }

  /** `occupied(range)` names what else covers `range` in MMIO space (RAM, a direct region), if anything. */
  claim(space: 'mmio' | 'pio', range: AddressRange, occupied: (range: AddressRange) => string | undefined): IoClaim {
    const op = 'kvm.claimIo';
    if (space !== 'mmio' && space !== 'pio') throw new InvalidError(op, `space ${String(space)} is not mmio or pio`);
    const checked = addressRange(range.base, range.length, op);
    if (space === 'pio' && checked.base + checked.length > 0x10000n) {
      throw new InvalidError(op, `port range ${formatRange(checked)} runs past 0xffff`);
    }
    for (const c of this.#claims) {
      if (c.space === space && rangesOverlap(c.range, checked)) {
        throw new ExistsError(op, `${space} ${formatRange(checked)} overlaps the claim ${formatRange(c.range)}`);
      }
    }
    if (space === 'mmio') {
      const what = occupied(checked);
      if (what !== undefined) throw new ExistsError(op, `mmio ${formatRange(checked)} overlaps ${what}; guest accesses there do not exit`);
    }
    const claim = new KvmIoClaim(space, checked, (c) => this.#claims.delete(c));
    this.#claims.add(claim);
    return claim;
  }

  /** Whether a claimed MMIO range overlaps `range`. */
  overlapsMmio(range: AddressRange): boolean {
    for (const c of this.#claims) if (c.space === 'mmio' && rangesOverlap(c.range, range)) return true;
    return false;
  }

  releaseAll(): void {
    for (const c of [...this.#claims]) c.dispose();
  }
}
