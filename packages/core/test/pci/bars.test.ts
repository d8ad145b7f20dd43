import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BarDefinition, PciFunctionDefinition } from '../../src/index.js';
import { PciFunction } from '../../src/pci/index.js';
import { FULL } from './definitions.js';
import { harness } from './fakes.js';

const withBars = (bars: Array<BarDefinition | undefined>): PciFunctionDefinition => ({
  vendorId: 0x1234,
  deviceId: 0x5678,
  classCode: 0x00ff00,
  bars,
});

/** Lowest set bit: how Linux's pci_size() turns a sizing read-back into a size. */
function lowestSetBit(mask: bigint): bigint {
  return mask & -mask;
}

describe('BAR sizing', () => {
  const barArb = fc.oneof(
    fc.record({ kind: fc.constant('io' as const), size: fc.integer({ min: 2, max: 8 }).map((n) => 2 ** n) }),
    fc.record({
      kind: fc.constant('memory32' as const),
      size: fc.integer({ min: 4, max: 31 }).map((n) => 2 ** n),
      prefetchable: fc.boolean(),
    }),
    fc.record({
      kind: fc.constant('memory64' as const),
      size: fc.integer({ min: 4, max: 52 }).map((n) => 2 ** n),
      prefetchable: fc.boolean(),
    }),
  );

  it('reads back the size mask and flags after the all-ones probe, for every kind and size', () => {
    fc.assert(
      fc.property(barArb, fc.integer({ min: 0, max: 4 }), (bar, index) => {
        const bars: Array<BarDefinition | undefined> = [];
        bars[index] = bar;
        const { fn } = harness(withBars(bars));
        const register = 0x10 + 4 * index;
        const flagsBefore = fn.configRead(register, 4);
        fn.configWrite(register, 4, 0xffffffff);
        const low = fn.configRead(register, 4);
        if (bar.kind === 'io') {
          expect(flagsBefore).toBe(0x1);
          expect(low & 0x3).toBe(0x1);
          // 16-bit I/O decode: upper half hardwired 0.
          expect(low >>> 16).toBe(0);
          expect(lowestSetBit(BigInt(low & 0xfffc))).toBe(BigInt(bar.size));
          return;
        }
        const flags = (bar.kind === 'memory64' ? 0x4 : 0) | (bar.prefetchable === true ? 0x8 : 0);
        expect(flagsBefore).toBe(flags);
        expect(low & 0xf).toBe(flags);
        let mask = BigInt((low & ~0xf) >>> 0);
        if (bar.kind === 'memory64') {
          // Upper half: 0 until probed, then the high bits of the size mask.
          expect(fn.configRead(register + 4, 4)).toBe(0);
          fn.configWrite(register + 4, 4, 0xffffffff);
          const high = fn.configRead(register + 4, 4);
          mask |= BigInt(high) << 32n;
          expect(mask).toBe(((1n << 64n) - BigInt(bar.size)) & ~0xfn);
        } else {
          expect(mask).toBe(BigInt(~(bar.size - 1) & ~0xf) & 0xffffffffn);
        }
        expect(lowestSetBit(mask)).toBe(BigInt(bar.size));
      }),
      { numRuns: 300 },
    );
  });

  it('sizes a 64-bit BAR of 4 GiB or more through the upper half only', () => {
    const { fn } = harness(withBars([{ kind: 'memory64', size: 2 ** 34 }]));
    fn.configWrite(0x10, 4, 0xffffffff);
    fn.configWrite(0x14, 4, 0xffffffff);
    expect(fn.configRead(0x10, 4)).toBe(0x4); // no writable address bits below 16 GiB
    expect(fn.configRead(0x14, 4)).toBe(0xfffffffc);
  });

  it('reads 0 from unused BARs and the expansion ROM BAR, and ignores writes to them', () => {
    const { fn } = harness(withBars([{ kind: 'memory64', size: 0x1000 }, undefined, undefined, { kind: 'io', size: 4 }]));
    for (const register of [0x18, 0x20, 0x24, 0x30]) {
      fn.configWrite(register, 4, 0xffffffff);
      expect(fn.configRead(register, 4)).toBe(0);
    }
  });

  it('refuses impossible BAR definitions', () => {
    const bad: Array<Array<BarDefinition | undefined>> = [
      [{ kind: 'io', size: 2 }],
      [{ kind: 'io', size: 512 }],
      [{ kind: 'io', size: 12 }],
      [{ kind: 'memory32', size: 8 }],
      [{ kind: 'memory32', size: 0x3000 }],
      [{ kind: 'memory32', size: 2 ** 32 }],
      [undefined, undefined, undefined, undefined, undefined, { kind: 'memory64', size: 0x1000 }],
      [{ kind: 'memory64', size: 0x1000 }, { kind: 'io', size: 4 }],
      [undefined, undefined, undefined, undefined, undefined, undefined, { kind: 'io', size: 4 }],
    ];
    for (const bars of bad) {
      expect(() => harness(withBars(bars)), JSON.stringify(bars)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    }
  });
});

describe('BAR decoded location', () => {
  it('decodes only with the matching command bit and a non-zero address', () => {
    const { fn } = harness(FULL);
    fn.configWrite(0x10, 4, 0xfebf0000);
    fn.configWrite(0x14, 4, 0xc000);
    expect(fn.barLocation(0)).toBeUndefined();
    expect(fn.barLocation(1)).toBeUndefined();
    fn.configWrite(0x04, 2, 0x0002); // memory only
    expect(fn.barLocation(0)).toEqual({ space: 'mmio', base: 0xfebf0000n, size: 0x1000 });
    expect(fn.barLocation(1)).toBeUndefined();
    fn.configWrite(0x04, 2, 0x0001); // I/O only
    expect(fn.barLocation(0)).toBeUndefined();
    expect(fn.barLocation(1)).toEqual({ space: 'pio', base: 0xc000n, size: 8 });
    expect(fn.barLocation(2)).toBeUndefined(); // memory BAR at 0 with memory decode off
    fn.configWrite(0x04, 2, 0x0003);
    expect(fn.barLocation(2)).toBeUndefined(); // address 0
  });

  it('places a 64-bit BAR above 4 GiB from both halves', () => {
    const { fn } = harness(FULL);
    fn.configWrite(0x18, 4, 0x00100000 | 0xc); // flags written are ignored
    fn.configWrite(0x1c, 4, 0x8);
    fn.configWrite(0x04, 2, 0x0002);
    expect(fn.barLocation(2)).toEqual({ space: 'mmio', base: 0x8_0010_0000n, size: 0x100000 });
    expect(fn.configRead(0x18, 4)).toBe(0x0010000c);
  });

  it('does not decode while a BAR holds the sizing probe, in either half', () => {
    const { fn } = harness(FULL);
    fn.configWrite(0x04, 2, 0x0003);
    fn.configWrite(0x10, 4, 0xfebf0000);
    fn.configWrite(0x18, 4, 0x40000000);
    fn.configWrite(0x1c, 4, 0x1);
    expect(fn.barLocation(0)).toBeDefined();
    fn.configWrite(0x10, 4, 0xffffffff);
    expect(fn.barLocation(0)).toBeUndefined();
    fn.configWrite(0x10, 4, 0xfebf0000);
    expect(fn.barLocation(0)?.base).toBe(0xfebf0000n);
    fn.configWrite(0x1c, 4, 0xffffffff);
    expect(fn.barLocation(2)).toBeUndefined();
    fn.configWrite(0x1c, 4, 0x1);
    fn.configWrite(0x18, 4, 0xffffffff);
    expect(fn.barLocation(2)).toBeUndefined();
    fn.configWrite(0x18, 4, 0x40000000);
    expect(fn.barLocation(2)?.base).toBe(0x1_4000_0000n);
    fn.configWrite(0x14, 4, 0xffffffff);
    expect(fn.barLocation(1)).toBeUndefined();
  });

  it('tells the hook every change, old to new, removals first', () => {
    const h = harness(FULL);
    const { fn } = h;
    fn.configWrite(0x10, 4, 0xfebf0000);
    fn.configWrite(0x14, 4, 0xc000);
    expect(h.barChanges).toEqual([]); // decode off: nothing decodes yet
    fn.configWrite(0x04, 2, 0x0003);
    expect(h.barChanges).toEqual([
      { index: 0, before: undefined, after: { space: 'mmio', base: 0xfebf0000n, size: 0x1000 } },
      { index: 1, before: undefined, after: { space: 'pio', base: 0xc000n, size: 8 } },
    ]);
    h.barChanges.length = 0;
    fn.configWrite(0x10, 4, 0xfebf1000);
    expect(h.barChanges).toEqual([
      {
        index: 0,
        before: { space: 'mmio', base: 0xfebf0000n, size: 0x1000 },
        after: { space: 'mmio', base: 0xfebf1000n, size: 0x1000 },
      },
    ]);
    h.barChanges.length = 0;
    fn.configWrite(0x10, 4, 0xfebf1000); // same value: no change
    fn.configWrite(0x04, 2, 0x0003);
    expect(h.barChanges).toEqual([]);
    fn.configWrite(0x04, 2, 0x0002); // I/O decode off
    expect(h.barChanges).toEqual([{ index: 1, before: { space: 'pio', base: 0xc000n, size: 8 }, after: undefined }]);
  });

  it('reports a hook that throws to onError and keeps going', () => {
    const errors: unknown[] = [];
    let calls = 0;
    const fn = new PciFunction(FULL, {
      address: { bus: 0, device: 4, function: 0 },
      intxLine: 10,
      createMsiRoute: () => {
        throw new Error('unused');
      },
      createLineIrq: () => {
        throw new Error('unused');
      },
      onBarChange: () => {
        calls++;
        throw new Error('overlap');
      },
      onError: (e) => errors.push(e),
    });
    fn.configWrite(0x10, 4, 0xfebf0000);
    fn.configWrite(0x14, 4, 0xc000);
    expect(() => fn.configWrite(0x04, 2, 0x0003)).not.toThrow();
    expect(calls).toBe(2);
    expect(errors).toHaveLength(2);
    expect(fn.barLocation(0)?.base).toBe(0xfebf0000n);
  });

  it('stops decoding in D3hot and resumes in D0', () => {
    const h = harness(FULL);
    const { fn } = h;
    const pm = fn.configRead(0x34, 1); // PM is the first capability
    expect(fn.configRead(pm, 1)).toBe(0x01);
    fn.configWrite(0x10, 4, 0xfebf0000);
    fn.configWrite(0x04, 2, 0x0002);
    fn.configWrite(pm + 4, 2, 0x0003);
    expect(fn.powerState).toBe(3);
    expect(fn.barLocation(0)).toBeUndefined();
    fn.configWrite(pm + 4, 2, 0x0000);
    expect(fn.barLocation(0)?.base).toBe(0xfebf0000n);
    expect(h.barChanges.map((c) => c.after?.base)).toEqual([0xfebf0000n, undefined, 0xfebf0000n]);
  });
});
