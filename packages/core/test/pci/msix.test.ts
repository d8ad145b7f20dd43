import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FULL, MSI_CAP, MSIX70, MSIX_CAP, cap } from './definitions.js';
import { harness, type Harness } from './fakes.js';

/** MSI-X of FULL: table at BAR 0 + 0x800, PBA at BAR 0 + 0xc00, 8 vectors. */
function msixOf(h: Harness, bar = 0, table = 0x800, pba = 0xc00) {
  const control = cap(h.fn, MSIX_CAP) + 2;
  return {
    control,
    entry(v: number, address: number, data: number, masked: boolean) {
      h.fn.msixWrite(bar, table + 16 * v, 4, address);
      h.fn.msixWrite(bar, table + 16 * v + 4, 4, 0);
      h.fn.msixWrite(bar, table + 16 * v + 8, 4, data);
      h.fn.msixWrite(bar, table + 16 * v + 12, 4, masked ? 1 : 0);
    },
    maskEntry(v: number, masked: boolean) {
      h.fn.msixWrite(bar, table + 16 * v + 12, 4, masked ? 1 : 0);
    },
    setData(v: number, data: number) {
      h.fn.msixWrite(bar, table + 16 * v + 8, 4, data);
    },
    enable(functionMask = false) {
      h.fn.configWrite(control, 2, 0x8000 | (functionMask ? 0x4000 : 0));
    },
    pba(dword = 0): number {
      return h.fn.msixRead(bar, pba + 4 * dword, 4);
    },
  };
}

describe('MSI-X table and PBA', () => {
  it('starts with every entry cleared and masked', () => {
    const h = harness(FULL);
    for (let v = 0; v < 8; v++) {
      expect(h.fn.msixRead(0, 0x800 + 16 * v, 4)).toBe(0);
      expect(h.fn.msixRead(0, 0x800 + 16 * v + 8, 4)).toBe(0);
      expect(h.fn.msixRead(0, 0x800 + 16 * v + 12, 4)).toBe(1);
    }
  });

  it('tells the core which BAR offsets are the table and PBA', () => {
    const { fn } = harness(FULL);
    expect(fn.isMsixTableAccess(0, 0x800)).toBe(true);
    expect(fn.isMsixTableAccess(0, 0x87c)).toBe(true);
    expect(fn.isMsixTableAccess(0, 0x880)).toBe(false);
    expect(fn.isMsixTableAccess(0, 0x7fc)).toBe(false);
    expect(fn.isMsixTableAccess(0, 0xc00)).toBe(true);
    expect(fn.isMsixTableAccess(0, 0xc04)).toBe(true);
    expect(fn.isMsixTableAccess(0, 0xc08)).toBe(false);
    expect(fn.isMsixTableAccess(1, 0x800)).toBe(false);
    expect(harness(MSIX70).fn.isMsixTableAccess(2, 0x2008)).toBe(true);
  });

  it('keeps reserved vector control bits 0 and the PBA read-only', () => {
    const h = harness(FULL);
    h.fn.msixWrite(0, 0x80c, 4, 0xffffffff);
    expect(h.fn.msixRead(0, 0x80c, 4)).toBe(1);
    h.fn.msixWrite(0, 0x80c, 1, 0x00);
    h.fn.msixWrite(0, 0x80e, 2, 0xffff);
    expect(h.fn.msixRead(0, 0x80c, 4)).toBe(0);
    h.fn.msixWrite(0, 0x800, 2, 0x1234);
    h.fn.msixWrite(0, 0x802, 1, 0xe0);
    expect(h.fn.msixRead(0, 0x800, 4)).toBe(0x00e01234);
    h.fn.msixWrite(0, 0xc00, 4, 0xffffffff);
    expect(h.fn.msixRead(0, 0xc00, 4)).toBe(0);
  });

  it('reads all-ones for accesses it does not serve, without throwing', () => {
    const h = harness(FULL);
    expect(h.fn.msixRead(0, 0x801, 4)).toBe(0xffffffff); // misaligned
    expect(h.fn.msixRead(0, 0x800, 8 as 4)).toBe(0xffffffff);
    expect(h.fn.msixRead(0, 0x900, 4)).toBe(0xffffffff); // past the table
    expect(h.fn.msixRead(2, 0x800, 2)).toBe(0xffff); // another BAR
    expect(h.fn.msixRead(0, Number.NaN, 1)).toBe(0xff);
    h.fn.msixWrite(0, 0x801, 4, 0xffffffff);
    h.fn.msixWrite(0, 0x800, 4, Number.NaN);
    expect(h.fn.msixRead(0, 0x800, 4)).toBe(0);
    expect(harness({ ...FULL, msix: undefined }).fn.msixRead(0, 0x800, 4)).toBe(0xffffffff);
  });

  it('selects MSI-X over MSI and INTx, and refuses vectors outside the table', () => {
    const h = harness(FULL);
    const msix = msixOf(h);
    h.fn.configWrite(cap(h.fn, MSI_CAP) + 2, 2, 0x0001);
    expect(h.fn.interrupts.mode).toBe('msi');
    msix.enable();
    expect(h.fn.interrupts.mode).toBe('msix');
    expect(() => h.fn.interrupts.raise(8)).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });

  it('creates routes only for vectors that become deliverable or are raised', () => {
    const h = harness(MSIX70);
    const msix = msixOf(h, 2, 0, 0x2000);
    msix.enable();
    expect(h.routes).toHaveLength(0);
    msix.entry(5, 0xfee00000, 0x45, false);
    expect(h.routes).toHaveLength(1);
    expect(h.routes[0]?.message).toEqual({ address: 0xfee00000n, data: 0x45 });
    h.fn.interrupts.raise(69); // masked entry: a route is made to hold it pending
    expect(h.routes).toHaveLength(2);
    expect(h.routes[1]?.pending).toBe(true);
  });

  it('entry mask → raise → PBA bit → unmask delivers exactly once', () => {
    const h = harness(MSIX70);
    const msix = msixOf(h, 2, 0, 0x2000);
    msix.enable();
    msix.entry(69, 0xfee00000, 0x69, true);
    h.fn.interrupts.raise(69);
    h.fn.interrupts.raise(69);
    expect(h.deliveries).toHaveLength(0);
    expect(msix.pba(0)).toBe(0);
    expect(msix.pba(2)).toBe(1 << 5); // vector 69 = QWORD 1, bit 5
    expect(h.fn.msixRead(2, 0x2008, 1)).toBe(1 << 5);
    msix.maskEntry(69, false);
    expect(h.deliveries.map((d) => d.message.data)).toEqual([0x69]);
    expect(msix.pba(2)).toBe(0);
    msix.maskEntry(69, true);
    msix.maskEntry(69, false);
    expect(h.deliveries).toHaveLength(1);
  });

  it('function mask holds every vector pending and clearing it delivers each once', () => {
    const h = harness(FULL);
    const msix = msixOf(h);
    msix.entry(0, 0xfee00000, 0x30, false);
    msix.entry(3, 0xfee00000, 0x33, false);
    msix.enable(true);
    h.fn.interrupts.raise(0);
    h.fn.interrupts.raise(3);
    expect(h.deliveries).toHaveLength(0);
    expect(msix.pba()).toBe(0b1001);
    h.fn.configWrite(msix.control, 2, 0x8000);
    expect(h.deliveries.map((d) => d.message.data).sort()).toEqual([0x30, 0x33]);
    expect(msix.pba()).toBe(0);
    h.fn.configWrite(msix.control, 2, 0xc000);
    h.fn.configWrite(msix.control, 2, 0x8000);
    expect(h.deliveries).toHaveLength(2);
  });

  it('delivers the new message when the guest reprograms a pending entry', () => {
    const h = harness(FULL);
    const msix = msixOf(h);
    msix.enable();
    msix.entry(2, 0xfee00000, 0x20, true);
    h.fn.interrupts.raise(2);
    msix.entry(2, 0xfee03000, 0x21, true);
    msix.maskEntry(2, false);
    expect(h.deliveries.map((d) => d.message)).toEqual([{ address: 0xfee03000n, data: 0x21 }]);
  });

  it('masks routes when MSI-X is disabled and keeps their pending bits', () => {
    const h = harness(FULL);
    const msix = msixOf(h);
    msix.enable();
    msix.entry(1, 0xfee00000, 0x11, false);
    const route = h.routes[0];
    h.fn.configWrite(msix.control, 2, 0);
    expect(route?.masked).toBe(true);
    expect(h.fn.interrupts.mode).toBe('intx');
    msix.enable();
    expect(route?.masked).toBe(false);
    expect(h.routes).toHaveLength(1);
  });

  it('survives route exhaustion and retries after disable/enable', () => {
    const h = harness(FULL);
    const msix = msixOf(h);
    h.routeLimit = 1;
    msix.enable();
    msix.entry(0, 0xfee00000, 0x30, false);
    msix.entry(1, 0xfee00000, 0x31, false);
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]).toMatchObject({ code: 'NoSpace' });
    h.fn.interrupts.raise(1);
    h.fn.interrupts.raise(0);
    expect(h.deliveries.map((d) => d.message.data)).toEqual([0x30]);
    expect(h.errors).toHaveLength(1);
    h.routeLimit = 2;
    h.fn.configWrite(msix.control, 2, 0);
    msix.enable();
    h.fn.interrupts.raise(1);
    expect(h.deliveries.map((d) => d.message.data)).toEqual([0x30, 0x31]);
  });

  it('matches a reference model under random mask, function-mask, reprogram and raise sequences', () => {
    type Op =
      | { op: 'raise'; v: number }
      | { op: 'mask'; v: number; on: boolean }
      | { op: 'fmask'; on: boolean }
      | { op: 'data'; v: number; value: number };
    const v = fc.integer({ min: 0, max: 1 });
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      v.map((x) => ({ op: 'raise' as const, v: x })),
      fc.record({ op: fc.constant('mask' as const), v, on: fc.boolean() }),
      fc.record({ op: fc.constant('fmask' as const), on: fc.boolean() }),
      fc.record({ op: fc.constant('data' as const), v, value: fc.integer({ min: 0, max: 0xffffffff }) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const h = harness(FULL);
        const msix = msixOf(h);
        msix.enable();
        const model = [0, 1].map((i) => ({ masked: true, pending: false, data: 0x40 + i }));
        let fmask = false;
        for (const [i, e] of model.entries()) msix.entry(i, 0xfee00000, e.data, true);
        const expected: number[] = [];
        const flush = () => {
          for (const e of model) {
            if (!fmask && !e.masked && e.pending) {
              expected.push(e.data);
              e.pending = false;
            }
          }
        };
        for (const o of ops) {
          if (o.op === 'raise') {
            h.fn.interrupts.raise(o.v);
            const e = model[o.v]!;
            if (fmask || e.masked) e.pending = true;
            else expected.push(e.data);
          } else if (o.op === 'mask') {
            msix.maskEntry(o.v, o.on);
            model[o.v]!.masked = o.on;
            flush();
          } else if (o.op === 'fmask') {
            h.fn.configWrite(msix.control, 2, 0x8000 | (o.on ? 0x4000 : 0));
            fmask = o.on;
            flush();
          } else {
            msix.setData(o.v, o.value);
            model[o.v]!.data = o.value;
          }
          const pba = model.reduce((bits, e, i) => bits | (e.pending ? 1 << i : 0), 0);
          expect(msix.pba()).toBe(pba);
        }
        // A function unmask delivers pending vectors in index order, as the model does.
        expect(h.deliveries.map((d) => d.message.data)).toEqual(expected);
      }),
    );
  });
});
