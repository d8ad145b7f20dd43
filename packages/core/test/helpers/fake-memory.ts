/** A minimal GuestMemory over an ArrayBuffer for core unit tests (the real ones live in the backends and sim). */
import { RangeSet, addressRange } from '../../src/address.js';
import type { GuestMemory, MemoryAccess, MemoryView, PinnedRange, RamRegion } from '../../src/backend/memory.js';
import { InvalidError, UnsupportedError } from '../../src/errors.js';

export function fakeMemory(regions: Array<[base: number, length: number]>): GuestMemory & { bytesAt(a: bigint, n: number): Uint8Array } {
  const ram = new RangeSet<RamRegion>(regions.map(([b, l]) => addressRange(b, l)));
  const store = new Map<bigint, Uint8Array>(ram.ranges.map((r) => [r.base, new Uint8Array(Number(r.length))]));
  const each = (address: bigint, length: number, f: (buf: Uint8Array, off: number, n: number, done: number) => void) => {
    let done = 0;
    for (const p of ram.split(address, BigInt(length), 'fake.access')) {
      f(store.get(p.range.base) as Uint8Array, Number(p.offset), Number(p.length), done);
      done += Number(p.length);
    }
  };
  return {
    ram,
    read(address, dst) {
      each(address, dst.length, (buf, off, n, done) => dst.set(buf.subarray(off, off + n), done));
    },
    write(address, src) {
      each(address, src.length, (buf, off, n, done) => buf.set(src.subarray(done, done + n), off));
    },
    view(address, length, access: MemoryAccess): MemoryView {
      const pieces = ram.split(address, BigInt(length), 'fake.view');
      if (pieces.length !== 1) throw new InvalidError('fake.view', 'not contiguous');
      const p = pieces[0]!;
      const bytes = (store.get(p.range.base) as Uint8Array).subarray(Number(p.offset), Number(p.offset) + length);
      let disposed = false;
      return {
        address, length, access, bytes, data: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        get disposed() { return disposed; },
        dispose() { disposed = true; },
        [Symbol.dispose]() { disposed = true; },
      };
    },
    pin(): PinnedRange {
      throw new UnsupportedError('fake.pin', 'no pins in the fake');
    },
    bytesAt(a, n) {
      const out = new Uint8Array(n);
      this.read(a, out);
      return out;
    },
  };
}
