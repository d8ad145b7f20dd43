import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressRange } from '../../src/address.js';
import type { IoTarget } from '../../src/dispatch/dispatcher.js';
import { IoDispatcher } from '../../src/dispatch/dispatcher.js';
import { isVmedError } from '../../src/errors.js';

/** A region backed by bytes that records every access it sees. */
function byteRegion(size: number) {
  const bytes = new Uint8Array(size);
  const log: Array<{ op: 'r' | 'w'; offset: number; size: number; value?: number }> = [];
  const target: IoTarget = {
    read(offset, n) {
      log.push({ op: 'r', offset, size: n });
      let v = 0;
      for (let i = 0; i < n; i++) v |= (bytes[offset + i] as number) << (8 * i);
      return v >>> 0;
    },
    write(offset, n, value) {
      log.push({ op: 'w', offset, size: n, value });
      for (let i = 0; i < n; i++) bytes[offset + i] = (value >>> (8 * i)) & 0xff;
    },
  };
  return { bytes, log, target };
}

describe('IoDispatcher', () => {
  it('refuses zero-length and overlapping claims with typed errors', () => {
    const d = new IoDispatcher();
    const r = byteRegion(16);
    d.add('mmio', addressRange(0x1000, 0x10), r.target, 'a');
    expect(() => d.add('mmio', { base: addressRange(0x2000, 1).base, length: 0n }, r.target, 'z')).toThrowError(/zero-length/);
    try {
      d.add('mmio', addressRange(0x100f, 2), r.target, 'b');
      expect.unreachable();
    } catch (e) {
      expect(isVmedError(e, 'Exists')).toBe(true);
      expect((e as Error).message).toMatch(/overlaps a at \[0x1000, 0x1010\)/);
    }
    // Adjacent is fine, and the same range in another space is independent.
    d.add('mmio', addressRange(0x1010, 0x10), r.target, 'c');
    d.add('pio', addressRange(0x1000, 0x10), r.target, 'p');
    expect(() => d.add('pio', addressRange(0xfff0, 0x20), r.target, 'x')).toThrowError(/outside the space/);
  });

  it('reads all-ones from unclaimed space and drops unclaimed writes', () => {
    const d = new IoDispatcher();
    expect(d.read('mmio', 0xdead0000n, 4)).toBe(0xffffffffn);
    expect(d.read('pio', 0x80n, 1)).toBe(0xffn);
    expect(d.read('mmio', 0x0n, 8)).toBe(0xffffffffffffffffn);
    d.write('mmio', 0x1234n, 4, 1n);
    expect(d.stats.unclaimed).toBeGreaterThan(0);
  });

  it('splits 8-byte accesses into two 4-byte ones, low half first', () => {
    const d = new IoDispatcher();
    const r = byteRegion(16);
    d.add('mmio', addressRange(0x1000, 16), r.target, 'r');
    d.write('mmio', 0x1008n, 8, 0x1122334455667788n);
    expect(r.log).toEqual([
      { op: 'w', offset: 8, size: 4, value: 0x55667788 },
      { op: 'w', offset: 12, size: 4, value: 0x11223344 },
    ]);
    expect(d.read('mmio', 0x1008n, 8)).toBe(0x1122334455667788n);
  });

  it('splits a straddling access at the region boundary; the unclaimed part reads all-ones', () => {
    const d = new IoDispatcher();
    const r = byteRegion(4);
    d.add('pio', addressRange(0x100, 4), r.target, 'r');
    r.bytes.set([1, 2, 3, 4]);
    // 4 bytes at 0x102: bytes 0x102,0x103 claimed, 0x104,0x105 not.
    expect(d.read('pio', 0x102n, 4)).toBe(0xffff0403n);
    d.write('pio', 0x102n, 4, 0xaabbccddn);
    expect([...r.bytes]).toEqual([1, 2, 0xdd, 0xcc]);
  });

  it('contains a throwing handler: all-ones, write dropped, owner told', () => {
    const d = new IoDispatcher();
    const faults: unknown[] = [];
    const target: IoTarget = {
      read() {
        throw new Error('model bug');
      },
      write() {
        throw new Error('model bug');
      },
    };
    d.add('mmio', addressRange(0x2000, 0x100), target, 'bad', (e) => faults.push(e));
    expect(d.read('mmio', 0x2000n, 2)).toBe(0xffffn);
    expect(() => d.write('mmio', 0x2004n, 4, 7n)).not.toThrow();
    expect(faults).toHaveLength(2);
    expect(d.stats.faults).toBe(2);
  });

  it('removes a claim on dispose, after which the range is unclaimed and reusable', () => {
    const d = new IoDispatcher();
    const r = byteRegion(4);
    const reg = d.add('mmio', addressRange(0x3000, 4), r.target, 'r');
    r.bytes.set([9, 9, 9, 9]);
    expect(d.read('mmio', 0x3000n, 1)).toBe(9n);
    reg.dispose();
    expect(d.read('mmio', 0x3000n, 1)).toBe(0xffn);
    d.add('mmio', addressRange(0x3000, 4), r.target, 'again');
    expect(d.owner('mmio', 0x3002n)).toBe('again');
  });

  it('property: any access over adjacent regions equals a byte-by-byte model, handlers only see aligned 1/2/4', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: 70 }), size: fc.constantFrom(1, 2, 4, 8), write: fc.boolean(), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }), {
          maxLength: 60,
        }),
        (ops) => {
          const d = new IoDispatcher();
          // Two adjacent regions [16,32) and [32,48) and one apart [56,60); the rest unclaimed.
          const regions = [
            { base: 16, r: byteRegion(16) },
            { base: 32, r: byteRegion(16) },
            { base: 56, r: byteRegion(4) },
          ];
          for (const { base, r } of regions) d.add('mmio', addressRange(base, r.bytes.length), r.target, `r${base}`);
          const model = new Map<number, number>();
          const owned = (a: number) => regions.find(({ base, r }) => a >= base && a < base + r.bytes.length);
          for (const op of ops) {
            if (op.write) {
              d.write('mmio', BigInt(op.at), op.size as 1 | 2 | 4 | 8, BigInt.asUintN(op.size * 8, op.value));
              for (let i = 0; i < op.size; i++) if (owned(op.at + i)) model.set(op.at + i, Number((op.value >> BigInt(8 * i)) & 0xffn));
            } else {
              const got = d.read('mmio', BigInt(op.at), op.size as 1 | 2 | 4 | 8);
              let want = 0n;
              for (let i = 0; i < op.size; i++) want |= BigInt(owned(op.at + i) ? (model.get(op.at + i) ?? 0) : 0xff) << BigInt(8 * i);
              expect(got).toBe(want);
            }
          }
          for (const { r } of regions) for (const a of r.log) expect(a.offset % a.size).toBe(0);
        },
      ),
    );
  });
});
