/**
 * The fuzz guest: a vCPU that issues one access at a time, synchronously, the way KVM turns an
 * exit into a call on the sink. Where the access lands is decided as on KVM: guest RAM and
 * direct mappings are served from memory without an exit, a write matching a doorbell rings
 * it, and everything else — claimed or not — goes to the core's sink, which must answer
 * anything (unclaimed reads all-ones, writes dropped) and never throw.
 */
import type { AccessSize, IoSpace } from '@vmed/core';
import type { InstrumentedBackend } from './backend.js';
import type { InvariantName } from './types.js';
import { onesOf } from './words.js';

/** Where the guest reports what it saw go wrong. */
export type GuestReporter = (invariant: InvariantName, message: string) => void;

const PIO_END = 0x1_0000n;
const SPACE_END = 1n << 64n;
/** Segment 0 of the `pci` space (ECAM offsets). */
const PCI_END = 1n << 28n;

export class FuzzGuest {
  /** Guest accesses issued (program accesses only; checks use {@link peek}). */
  accesses = 0;
  private readonly scratch = new Uint8Array(8);
  private readonly sized: Record<AccessSize, Uint8Array>;
  private readonly view = new DataView(this.scratch.buffer);

  constructor(
    private readonly backend: InstrumentedBackend,
    private readonly report: GuestReporter,
  ) {
    this.sized = { 1: this.scratch.subarray(0, 1), 2: this.scratch.subarray(0, 2), 4: this.scratch.subarray(0, 4), 8: this.scratch };
  }

  /** A counted guest read. */
  read(space: IoSpace, address: bigint, size: AccessSize): bigint {
    this.accesses++;
    return this.peek(space, address, size);
  }

  /** A counted guest write. */
  write(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    this.accesses++;
    this.poke(space, address, size, value);
  }

  /** A read issued by a check: same path, not counted. */
  peek(space: IoSpace, address: bigint, size: AccessSize): bigint {
    const a = normalise(space, address, size);
    if (space === 'mmio') {
      if (this.isRam(a, size)) {
        const buf = this.sized[size];
        this.backend.inner.memory.read(a, buf);
        return this.littleEndian(size);
      }
      const direct = this.direct(a, size);
      if (direct !== undefined) {
        let v = 0n;
        for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(direct.bytes[direct.offset + i] as number);
        return v;
      }
    }
    const sink = this.backend.sink;
    if (sink === undefined) return onesOf(size);
    let value: bigint;
    try {
      value = sink.read(space, a, size);
    } catch (e) {
      this.report('sink-throws', `${space} read of ${size} at 0x${a.toString(16)} threw ${describe(e)}`);
      return onesOf(size);
    }
    if (typeof value !== 'bigint' || value < 0n || value > onesOf(size)) {
      this.report('read-width', `${space} read of ${size} at 0x${a.toString(16)} returned ${String(value)}`);
      return onesOf(size);
    }
    return value;
  }

  /** A write issued by a check: same path, not counted. */
  poke(space: IoSpace, address: bigint, size: AccessSize, value: bigint): void {
    const a = normalise(space, address, size);
    const v = BigInt.asUintN(size * 8, value);
    if (space !== 'pci') {
      for (const bell of this.backend.doorbells.values()) {
        const s = bell.spec;
        if (s.space === space && s.address === a && (s.length === 0 || s.length === size) && (s.datamatch === undefined || s.datamatch === v)) {
          try {
            bell.handler(1);
          } catch (e) {
            this.report('sink-throws', `doorbell handler at ${space} 0x${a.toString(16)} threw ${describe(e)}`);
          }
          return;
        }
      }
    }
    if (space === 'mmio') {
      if (this.isRam(a, size)) {
        this.view.setBigUint64(0, v, true);
        this.backend.inner.memory.write(a, this.sized[size]);
        return;
      }
      const direct = this.direct(a, size);
      if (direct !== undefined) {
        for (let i = 0; i < size; i++) direct.bytes[direct.offset + i] = Number((v >> BigInt(8 * i)) & 0xffn);
        return;
      }
    }
    const sink = this.backend.sink;
    if (sink === undefined) return;
    try {
      sink.write(space, a, size, v);
    } catch (e) {
      this.report('sink-throws', `${space} write of ${size} at 0x${a.toString(16)} (0x${v.toString(16)}) threw ${describe(e)}`);
    }
  }

  /** Guest RAM bytes, read directly (not an access): for checks that follow DMA. */
  ramBytes(address: bigint, length: number): Uint8Array | undefined {
    if (length <= 0 || !this.isRam(address, length)) return undefined;
    const out = new Uint8Array(length);
    this.backend.inner.memory.read(address, out);
    return out;
  }

  /** True when every byte of `[address, address+length)` is RAM (regions may be adjacent). */
  isRam(address: bigint, length: number): boolean {
    const ram = this.backend.memory.ram;
    const end = address + BigInt(length);
    let cursor = address;
    while (cursor < end) {
      const region = ram.find(cursor);
      if (region === undefined) return false;
      cursor = region.base + region.length;
    }
    return true;
  }

  private direct(address: bigint, size: number): { bytes: Uint8Array; offset: number } | undefined {
    for (const w of this.backend.directs.values()) {
      const end = w.range.base + w.range.length;
      if (address >= w.range.base && address + BigInt(size) <= end) return { bytes: w.bytes, offset: Number(address - w.range.base) };
    }
    return undefined;
  }

  private littleEndian(size: AccessSize): bigint {
    switch (size) {
      case 1:
        return BigInt(this.view.getUint8(0));
      case 2:
        return BigInt(this.view.getUint16(0, true));
      case 4:
        return BigInt(this.view.getUint32(0, true));
      case 8:
        return this.view.getBigUint64(0, true);
    }
  }
}

/** Keeps an address inside its space, as hardware would never produce one outside. */
function normalise(space: IoSpace, address: bigint, size: number): bigint {
  const end = space === 'pio' ? PIO_END : space === 'pci' ? PCI_END : SPACE_END;
  if (address >= 0n && address + BigInt(size) <= end) return address;
  let a = ((address % end) + end) % end;
  if (a + BigInt(size) > end) a = end - BigInt(size);
  return a;
}

/** A short description of a thrown value. */
export function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}
