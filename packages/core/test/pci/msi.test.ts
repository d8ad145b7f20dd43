import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FULL, MSI32, MSI_CAP, cap } from './definitions.js';
import { harness, type Harness } from './fakes.js';

/** MSI registers of FULL (64-bit, per-vector masking). */
function msi64(h: Harness) {
  const at = cap(h.fn, MSI_CAP);
  return {
    control: at + 2,
    addressLow: at + 4,
    addressHigh: at + 8,
    data: at + 12,
    mask: at + 16,
    pending: at + 20,
    program(address: number, data: number, log2Vectors = 0) {
      h.fn.configWrite(at + 4, 4, address);
      h.fn.configWrite(at + 8, 4, 0);
      h.fn.configWrite(at + 12, 2, data);
      h.fn.configWrite(at + 2, 2, 0x0001 | (log2Vectors << 4));
    },
  };
}

describe('MSI', () => {
  it('creates no route until the guest enables MSI, then delivers the programmed message', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    h.fn.configWrite(msi.addressLow, 4, 0xfee01000);
    h.fn.configWrite(msi.data, 2, 0x4041);
    expect(h.routes).toHaveLength(0);
    expect(h.fn.interrupts.mode).toBe('intx');
    h.fn.configWrite(msi.control, 2, 0x0001);
    expect(h.fn.interrupts.mode).toBe('msi');
    expect(h.routes).toHaveLength(1);
    expect(h.routes[0]?.message).toEqual({ address: 0xfee01000n, data: 0x4041 });
    expect(h.routes[0]?.masked).toBe(false);
    h.fn.interrupts.raise();
    expect(h.deliveries).toEqual([{ route: 0, message: { address: 0xfee01000n, data: 0x4041 } }]);
  });

  it('carries the vector in the low data bits with multiple messages', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    msi.program(0xfee00000, 0x4120, 2); // four vectors
    h.fn.interrupts.raise(3);
    h.fn.interrupts.raise(1);
    expect(h.deliveries.map((d) => d.message.data)).toEqual([0x4123, 0x4121]);
    expect(new Set(h.deliveries.map((d) => d.route)).size).toBe(2);
    expect(h.liveRoutes()).toHaveLength(4);
  });

  it('sends every vector on vector 0 when the guest allocated fewer than asked, and refuses absent vectors', () => {
    const h = harness(FULL);
    msi64(h).program(0xfee00000, 0x30, 0);
    h.fn.interrupts.raise(2);
    expect(h.deliveries.map((d) => d.message.data)).toEqual([0x30]);
    expect(() => h.fn.interrupts.raise(4)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => h.fn.interrupts.raise(-1)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => h.fn.interrupts.raise(0.5)).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });

  it('mask → raise → pending bit visible → unmask delivers exactly once', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    h.fn.configWrite(msi.mask, 4, 0x1);
    msi.program(0xfee00000, 0x51);
    h.fn.interrupts.raise(0);
    h.fn.interrupts.raise(0); // coalesces while pending
    expect(h.deliveries).toHaveLength(0);
    expect(h.fn.configRead(msi.pending, 4)).toBe(0x1);
    expect(h.fn.configRead(msi.pending, 1)).toBe(0x1);
    h.fn.configWrite(msi.mask, 4, 0x0);
    expect(h.deliveries).toHaveLength(1);
    expect(h.fn.configRead(msi.pending, 4)).toBe(0);
    h.fn.configWrite(msi.mask, 4, 0x1);
    h.fn.configWrite(msi.mask, 4, 0x0);
    expect(h.deliveries).toHaveLength(1);
    h.fn.interrupts.raise(0);
    expect(h.deliveries).toHaveLength(2);
  });

  it('delivers the new message when the guest reprograms a pending vector', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    h.fn.configWrite(msi.mask, 4, 0x1);
    msi.program(0xfee00000, 0x51);
    h.fn.interrupts.raise(0);
    h.fn.configWrite(msi.addressLow, 4, 0xfee02000);
    h.fn.configWrite(msi.data, 2, 0x62);
    expect(h.deliveries).toHaveLength(0);
    h.fn.configWrite(msi.mask, 4, 0x0);
    expect(h.deliveries).toEqual([{ route: 0, message: { address: 0xfee02000n, data: 0x62 } }]);
  });

  it('masks a route before reprogramming it and unmasks only after', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    msi.program(0xfee00000, 0x51);
    const route = h.routes[0];
    expect(route?.calls).toEqual(['setMsi', 'unmask']);
    route?.calls.splice(0);
    h.fn.configWrite(msi.mask, 4, 0x1);
    h.fn.configWrite(msi.data, 2, 0x52);
    h.fn.configWrite(msi.mask, 4, 0x0);
    expect(route?.calls).toEqual(['mask', 'setMsi', 'unmask']);
  });

  it('masks every vector when MSI is disabled and falls back to INTx', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    msi.program(0xfee00000, 0x51);
    h.fn.configWrite(msi.control, 2, 0);
    expect(h.fn.interrupts.mode).toBe('intx');
    expect(h.routes[0]?.masked).toBe(true);
    h.fn.interrupts.raise();
    expect(h.deliveries).toHaveLength(0);
    expect(h.lines[0]?.asserted).toBe(true);
  });

  it('without per-vector masking has no mask or pending registers', () => {
    const h = harness(MSI32);
    const at = cap(h.fn, MSI_CAP);
    h.fn.configWrite(at + 4, 4, 0xfee00000);
    h.fn.configWrite(at + 8, 2, 0x0071); // data of a 32-bit capability
    h.fn.configWrite(at + 12, 4, 0xffffffff); // past the capability: nothing there
    expect(h.fn.configRead(at + 12, 4)).toBe(0);
    h.fn.configWrite(at + 2, 2, 0x0031); // eight vectors
    h.fn.interrupts.raise(7);
    expect(h.deliveries.map((d) => d.message)).toEqual([{ address: 0xfee00000n, data: 0x77 }]);
  });

  it('survives route exhaustion: the vector is undeliverable, onError hears, disable/enable retries', () => {
    const h = harness(FULL);
    const msi = msi64(h);
    h.routeLimit = 0;
    expect(() => msi.program(0xfee00000, 0x51)).not.toThrow();
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]).toMatchObject({ code: 'NoSpace' });
    h.fn.interrupts.raise(0);
    expect(h.deliveries).toHaveLength(0);
    expect(h.errors).toHaveLength(1); // no retry (and no new error) on every raise
    h.fn.configWrite(msi.data, 2, 0x52); // other writes do not retry either
    expect(h.errors).toHaveLength(1);
    h.routeLimit = Number.POSITIVE_INFINITY;
    h.fn.configWrite(msi.control, 2, 0x0000);
    h.fn.configWrite(msi.control, 2, 0x0001);
    h.fn.interrupts.raise(0);
    expect(h.deliveries.map((d) => d.message.data)).toEqual([0x52]);
  });

  it('matches a reference model of masking and pending under random sequences', () => {
    type Op = { op: 'raise' } | { op: 'mask' } | { op: 'unmask' } | { op: 'data'; value: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.constant({ op: 'raise' as const }),
      fc.constant({ op: 'mask' as const }),
      fc.constant({ op: 'unmask' as const }),
      fc.integer({ min: 0, max: 0xffff }).map((value) => ({ op: 'data' as const, value })),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 50 }), (ops) => {
        const h = harness(FULL);
        const msi = msi64(h);
        msi.program(0xfee00000, 0);
        let masked = false;
        let pending = false;
        let data = 0;
        const expected: number[] = [];
        for (const o of ops) {
          if (o.op === 'raise') {
            h.fn.interrupts.raise(0);
            if (masked) pending = true;
            else expected.push(data);
          } else if (o.op === 'mask') {
            h.fn.configWrite(msi.mask, 4, 1);
            masked = true;
          } else if (o.op === 'unmask') {
            h.fn.configWrite(msi.mask, 4, 0);
            if (masked && pending) expected.push(data);
            masked = false;
            pending = false;
          } else {
            h.fn.configWrite(msi.data, 2, o.value);
            data = o.value;
          }
          expect((h.fn.configRead(msi.pending, 4) & 1) === 1).toBe(pending);
        }
        expect(h.deliveries.map((d) => d.message.data)).toEqual(expected);
      }),
    );
  });
});
