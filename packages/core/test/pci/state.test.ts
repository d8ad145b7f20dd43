import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StateReader, StateWriter, isVmedError, type PciFunctionDefinition } from '../../src/index.js';
import { FULL, MSI_CAP, MSIX70, MSIX_CAP, PM_CAP, cap, readAll } from './definitions.js';
import { harness, type Harness } from './fakes.js';

/** FULL driven into a busy state: BARs placed, MSI-X on with a pending masked entry, INTx requested. */
function busy(): Harness {
  const h = harness(FULL);
  const { fn } = h;
  fn.configWrite(0x10, 4, 0xfebf0000);
  fn.configWrite(0x14, 4, 0xc000);
  fn.configWrite(0x18, 4, 0x0);
  fn.configWrite(0x1c, 4, 0x2);
  fn.configWrite(0x20, 4, 0xfd000000);
  fn.configWrite(0x04, 2, 0x0007);
  fn.configWrite(0x0c, 1, 0x10);
  fn.signalStatus(0x2000);
  fn.interrupts.raise(); // INTx requested before MSI-X takes over
  const msi = cap(fn, MSI_CAP);
  fn.configWrite(msi + 4, 4, 0xfee01000);
  fn.configWrite(msi + 12, 2, 0x4050);
  fn.msixWrite(0, 0x800, 4, 0xfee00000);
  fn.msixWrite(0, 0x808, 4, 0x41);
  fn.msixWrite(0, 0x80c, 4, 0);
  fn.msixWrite(0, 0x830, 4, 0xfee02000);
  fn.msixWrite(0, 0x838, 4, 0x43);
  fn.configWrite(cap(fn, MSIX_CAP) + 2, 2, 0x8000);
  fn.interrupts.raise(3); // entry 3 is masked: pending
  return h;
}

function save(h: Harness): Uint8Array {
  const w = new StateWriter();
  h.fn.saveState(w);
  return w.finish();
}

function msixTable(h: Harness): number[] {
  const out: number[] = [];
  for (let r = 0x800; r < 0x880; r += 4) out.push(h.fn.msixRead(0, r, 4));
  return out;
}

/** Everything a guest or the core can observe of a function. */
function observe(h: Harness) {
  return {
    config: readAll(h.fn, 4096),
    table: msixTable(h),
    pba: h.fn.msixRead(0, 0xc00, 4),
    bars: [0, 1, 2, 3, 4, 5].map((i) => h.fn.barLocation(i)),
    mode: h.fn.interrupts.mode,
  };
}

describe('state save and load', () => {
  it('round-trips config space, MSI-X table, pending bits and the INTx request', () => {
    const source = busy();
    const stream = save(source);
    const target = harness(FULL);
    target.fn.loadState(new StateReader(stream));
    expect(observe(target)).toEqual(observe(source));
    expect(save(target)).toEqual(stream);
    expect(target.fn.msixRead(0, 0xc00, 4)).toBe(1 << 3);
    expect(target.barChanges.map((c) => c.after?.base)).toEqual([0xfebf0000n, 0xc000n, 0x2_0000_0000n, 0xfd000000n]);
    // The pending entry is held by a new masked route and delivered once on unmask.
    expect(target.deliveries).toHaveLength(0);
    target.fn.msixWrite(0, 0x83c, 4, 0);
    expect(target.deliveries.map((d) => d.message)).toEqual([{ address: 0xfee02000n, data: 0x43 }]);
    target.fn.msixWrite(0, 0x83c, 4, 1);
    target.fn.msixWrite(0, 0x83c, 4, 0);
    expect(target.deliveries).toHaveLength(1);
    // The device's INTx request survives: with MSI-X off, the line comes back.
    target.fn.configWrite(cap(target.fn, MSIX_CAP) + 2, 2, 0);
    expect(target.lines[0]?.asserted).toBe(true);
  });

  it('round-trips MSI pending bits', () => {
    const source = harness(FULL);
    const msi = cap(source.fn, MSI_CAP);
    source.fn.configWrite(msi + 16, 4, 0x4);
    source.fn.configWrite(msi + 4, 4, 0xfee00000);
    source.fn.configWrite(msi + 12, 2, 0x60);
    source.fn.configWrite(msi + 2, 2, 0x0021);
    source.fn.interrupts.raise(2);
    expect(source.fn.configRead(msi + 20, 4)).toBe(0x4);
    const target = harness(FULL);
    target.fn.loadState(new StateReader(save(source)));
    expect(target.fn.configRead(msi + 20, 4)).toBe(0x4);
    target.fn.configWrite(msi + 16, 4, 0);
    expect(target.deliveries.map((d) => d.message.data)).toEqual([0x62]);
  });

  const refusals: Array<[string, (bytes: Uint8Array, view: DataView) => Uint8Array]> = [
    ['a wrong magic', (b, v) => (v.setUint32(0, 0x12345678, true), b)],
    ['a newer version', (b, v) => (v.setUint8(4, 2), b)],
    ['a read-only vendor byte flipped', (b) => (b[9] = (b[9] ?? 0) ^ 0x01, b)],
    ['a read-only BAR flag flipped', (b) => (b[9 + 0x10] = (b[9 + 0x10] ?? 0) | 0x08, b)],
    ['a truncated stream', (b) => b.subarray(0, b.length - 1)],
    ['a stream cut in the config space', (b) => b.subarray(0, 200)],
    ['Interrupt Status without an INTx request', (b) => (b[b.length - 1] = 0, b)],
    ['a non-boolean INTx flag', (b) => (b[b.length - 1] = 7, b)],
  ];
  for (const [name, corrupt] of refusals) {
    it(`refuses ${name} and leaves the function unchanged`, () => {
      const stream = save(busy());
      const target = busy();
      const before = observe(target);
      const routesBefore = target.routes.length;
      const changesBefore = target.barChanges.length;
      const copy = stream.slice();
      const bad = corrupt(copy, new DataView(copy.buffer));
      expect(() => target.fn.loadState(new StateReader(bad))).toThrow(expect.objectContaining({ code: 'Invalid' }));
      expect(observe(target)).toEqual(before);
      expect(target.routes.length).toBe(routesBefore);
      expect(target.liveRoutes().length).toBe(routesBefore);
      expect(target.barChanges.length).toBe(changesBefore);
    });
  }

  it('refuses states the capabilities cannot be in', () => {
    const layouts: Array<[RegExp, PciFunctionDefinition, (h: Harness, image: Uint8Array) => void]> = [
      [/power state D1/, FULL, (h, image) => (image[cap(h.fn, PM_CAP) + 4] = 0x09)],
      // 64-bit and Multiple Message Capable kept; Multiple Message Enable 7 > Capable 2.
      [/Multiple Message Enable/, FULL, (h, image) => (image[cap(h.fn, MSI_CAP) + 2] = 0x84 | 0x70 | 1)],
    ];
    for (const [message, definition, corrupt] of layouts) {
      const h = harness(definition);
      const stream = save(h);
      corrupt(h, stream.subarray(9, 9 + 4096));
      expect(() => h.fn.loadState(new StateReader(stream))).toThrow(message);
      expect(h.fn.powerState).toBe(0);
      expect(h.fn.interrupts.mode).toBe('intx');
    }
  });

  it('refuses MSI-X tables and pending bits the guest could not have produced', () => {
    const h = harness(MSIX70);
    const stream = save(h);
    const tableAt = 9 + 256 + 4; // magic+version, config (length + bytes), table length
    const reserved = stream.slice();
    reserved[tableAt + 12 + 1] = 0x80; // vector control bit 15 of entry 0
    expect(() => h.fn.loadState(new StateReader(reserved))).toThrow(/reserved vector control/);
    const pbaAt = tableAt + 70 * 16 + 4 + 4; // table, MSI pending, PBA length
    const absent = stream.slice();
    absent[pbaAt + 8] = 0x80; // bit 71 of 70 vectors
    expect(() => h.fn.loadState(new StateReader(absent))).toThrow(/absent vector/);
    const fine = stream.slice();
    fine[pbaAt + 8] = 0x20; // bit 69: a real vector
    h.fn.loadState(new StateReader(fine));
    expect(h.fn.msixRead(2, 0x2008, 4)).toBe(0x20);
  });

  it('refuses any corruption with Invalid or loads a consistent state — never anything else', () => {
    const stream = save(busy());
    fc.assert(
      fc.property(fc.integer({ min: 0, max: stream.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const h = busy();
        const before = observe(h);
        const copy = stream.slice();
        copy[at] = (copy[at] ?? 0) ^ flip;
        try {
          h.fn.loadState(new StateReader(copy));
        } catch (e) {
          expect(isVmedError(e, 'Invalid')).toBe(true);
          expect(observe(h)).toEqual(before);
          return;
        }
        // Accepted: the config space and MSI-X table are the ones in the stream, except bits the
        // function computes itself (MSI pending register, multi-function bit). Pending bits
        // may differ: a pending, unmasked vector is delivered on load.
        const again = save(h);
        const pendingRegister = cap(h.fn, MSI_CAP) + 20;
        for (let i = 9; i < 9 + 4096 + 4 + 128; i++) {
          const register = i - 9;
          if (register >= pendingRegister && register < pendingRegister + 4) continue;
          const mask = register === 0x0e ? 0x7f : 0xff;
          expect((again[i] ?? 0) & mask, `stream byte ${i}`).toBe((copy[i] ?? 0) & mask);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('reset and dispose', () => {
  it('reset returns config to power-on, drops routes and pending bits, deasserts INTx, unmaps BARs', () => {
    const pristine = observe(harness(FULL));
    const h = busy();
    h.fn.configWrite(cap(h.fn, MSIX_CAP) + 2, 2, 0); // back to INTx: the line is asserted
    expect(h.lines[0]?.asserted).toBe(true);
    h.fn.reset();
    expect(observe(h)).toEqual(pristine);
    expect(h.liveRoutes()).toHaveLength(0);
    expect(h.lines[0]?.asserted).toBe(false);
    expect(h.barChanges.filter((c) => c.after === undefined).map((c) => c.index).sort()).toEqual([0, 1, 2, 4]);
    expect(h.fn.msixRead(0, 0xc00, 4)).toBe(0);
  });

  it('dispose releases routes and the line, then refuses every call', () => {
    const h = busy();
    h.fn.configWrite(cap(h.fn, MSIX_CAP) + 2, 2, 0);
    h.fn.dispose();
    expect(h.liveRoutes()).toHaveLength(0);
    expect(h.lines[0]?.asserted).toBe(false);
    expect(h.lines[0]?.disposed).toBe(true);
    expect(() => h.fn.configRead(0, 4)).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => h.fn.configWrite(0x04, 2, 0)).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => h.fn.interrupts.raise()).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => h.fn.msixRead(0, 0x800, 4)).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => h.fn.reset()).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => h.fn.saveState(new StateWriter())).toThrow(expect.objectContaining({ code: 'BadHandle' }));
    expect(() => h.fn.dispose()).not.toThrow();
  });

  it('works with `using`', () => {
    const h = busy();
    {
      using fn = h.fn;
      expect(fn.disposed).toBe(false);
    }
    expect(h.fn.disposed).toBe(true);
  });
});
