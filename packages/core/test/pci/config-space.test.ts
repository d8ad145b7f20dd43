import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PciFunctionDefinition } from '../../src/index.js';
import { ConfigSpace, PCI_STATUS_ERROR_BITS, PCI_STATUS_REC_MASTER_ABORT, PCI_STATUS_DETECTED_PARITY } from '../../src/pci/index.js';
import { FULL, MSI_CAP, MSIX_CAP, PLAIN, PM_CAP, EXP_CAP, capabilities, readAll } from './definitions.js';
import { harness } from './fakes.js';

/**
 * What the specifications say the guest may write in each byte of `definition`'s config
 * space, written out independently of the implementation's masks.
 */
function specWritable(definition: PciFunctionDefinition, caps: Map<number, number>): Uint8Array {
  const w = new Uint8Array(256);
  const set = (register: number, width: number, mask: number) => {
    for (let i = 0; i < width; i++) w[register + i] = (w[register + i] ?? 0) | ((mask >>> (8 * i)) & 0xff);
  };
  set(0x04, 2, 0x0547); // I/O, memory, bus master, parity, SERR, interrupt disable
  set(0x06, 2, 0xf900); // RW1C error bits
  set(0x0c, 1, 0xff);
  if (definition.pcie !== true) set(0x0d, 1, 0xff);
  set(0x3c, 1, 0xff);
  (definition.bars ?? []).forEach((bar, i) => {
    if (bar === undefined) return;
    const register = 0x10 + 4 * i;
    if (bar.kind === 'io') set(register, 4, ~(bar.size - 1) & 0xfffc);
    else if (bar.kind === 'memory32') set(register, 4, ~(bar.size - 1) & ~0xf);
    else {
      const mask = ((1n << 64n) - BigInt(bar.size)) & ~0xfn;
      set(register, 4, Number(mask & 0xffffffffn));
      set(register + 4, 4, Number(mask >> 32n));
    }
  });
  const pm = caps.get(PM_CAP);
  if (pm !== undefined) set(pm + 4, 2, 0x0003);
  const msi = caps.get(MSI_CAP);
  if (msi !== undefined && definition.msi !== undefined) {
    const a64 = definition.msi.address64;
    set(msi + 2, 2, 0x0071);
    set(msi + 4, 4, 0xfffffffc);
    if (a64) set(msi + 8, 4, 0xffffffff);
    set(msi + (a64 ? 12 : 8), 2, 0xffff);
    if (definition.msi.perVectorMask) set(msi + (a64 ? 16 : 12), 4, definition.msi.vectors === 32 ? ~0 : (1 << definition.msi.vectors) - 1);
  }
  const msix = caps.get(MSIX_CAP);
  if (msix !== undefined) set(msix + 2, 2, 0xc000);
  const exp = caps.get(EXP_CAP);
  if (exp !== undefined) {
    set(exp + 8, 2, 0x78ff);
    set(exp + 10, 2, 0x000f);
    set(exp + 16, 2, 0x00c8);
    set(exp + 48, 2, 0x000f);
  }
  return w;
}

describe('type-0 header', () => {
  it('carries the definition identity and class', () => {
    const { fn } = harness(FULL);
    expect(fn.configRead(0x00, 2)).toBe(0x1234);
    expect(fn.configRead(0x02, 2)).toBe(0x11e8);
    expect(fn.configRead(0x00, 4)).toBe(0x11e81234);
    expect(fn.configRead(0x08, 1)).toBe(0x10);
    expect(fn.configRead(0x08, 4)).toBe(0x00ff0010);
    expect(fn.configRead(0x0e, 1)).toBe(0x00);
    expect(fn.configRead(0x2c, 2)).toBe(0x1af4);
    expect(fn.configRead(0x2e, 2)).toBe(0x1100);
    expect(fn.configRead(0x3d, 1)).toBe(1);
    expect(fn.configRead(0x3c, 1)).toBe(11); // the routed line, preloaded
  });

  it('keeps identity registers read-only', () => {
    const { fn } = harness(FULL);
    fn.configWrite(0x00, 4, 0xffffffff);
    fn.configWrite(0x08, 4, 0xffffffff);
    fn.configWrite(0x2c, 4, 0);
    fn.configWrite(0x3d, 1, 4);
    expect(fn.configRead(0x00, 4)).toBe(0x11e81234);
    expect(fn.configRead(0x08, 4)).toBe(0x00ff0010);
    expect(fn.configRead(0x2c, 4)).toBe(0x11001af4);
    expect(fn.configRead(0x3d, 1)).toBe(1);
  });

  it('implements only the command bits of a modern function', () => {
    const { fn } = harness(FULL);
    fn.configWrite(0x04, 2, 0xffff);
    expect(fn.configRead(0x04, 2)).toBe(0x0547);
    expect([fn.ioDecode, fn.memoryDecode, fn.busMaster, fn.intxDisabled]).toEqual([true, true, true, true]);
    fn.configWrite(0x04, 2, 0);
    expect([fn.ioDecode, fn.memoryDecode, fn.busMaster, fn.intxDisabled]).toEqual([false, false, false, false]);
  });

  it('sets Capabilities List only when there are capabilities', () => {
    expect(harness(FULL).fn.configRead(0x06, 2) & 0x10).toBe(0x10);
    expect(harness(PLAIN).fn.configRead(0x06, 2) & 0x10).toBe(0);
    expect(harness(PLAIN).fn.configRead(0x34, 1)).toBe(0);
  });

  it('clears status error bits only where 1 is written', () => {
    const { fn } = harness(FULL);
    fn.signalStatus(PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_DETECTED_PARITY);
    expect(fn.configRead(0x06, 2) & 0xff00).toBe(0xa000);
    fn.configWrite(0x06, 2, 0); // writing 0 clears nothing
    expect(fn.configRead(0x06, 2) & 0xff00).toBe(0xa000);
    fn.configWrite(0x06, 2, PCI_STATUS_REC_MASTER_ABORT);
    expect(fn.configRead(0x06, 2) & 0xff00).toBe(0x8000);
    fn.configWrite(0x04, 4, 0x80000000); // through the command dword, byte lanes of status
    expect(fn.configRead(0x06, 2) & 0xff00).toBe(0);
    expect(fn.configRead(0x06, 2) & 0x10).toBe(0x10); // Capabilities List untouched
  });

  it('refuses to set non-error status bits on the device side', () => {
    const { fn } = harness(FULL);
    expect(() => fn.signalStatus(0x0010)).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });

  it('keeps cache line size and interrupt line RW; latency timer RO 0 on PCIe, RW on PCI', () => {
    const pcie = harness(FULL).fn;
    const pci = harness(PLAIN).fn;
    for (const fn of [pcie, pci]) {
      fn.configWrite(0x0c, 2, 0x4010);
      fn.configWrite(0x3c, 1, 0x05);
      expect(fn.configRead(0x0c, 1)).toBe(0x10);
      expect(fn.configRead(0x3c, 1)).toBe(0x05);
    }
    expect(pcie.configRead(0x0d, 1)).toBe(0);
    expect(pci.configRead(0x0d, 1)).toBe(0x40);
  });

  it('reads 0 from unimplemented registers', () => {
    const { fn } = harness(FULL);
    for (const register of [0x0f, 0x28, 0x30, 0x3e, 0x3f, 0xfc]) {
      fn.configWrite(register, 1, 0xff);
      expect(fn.configRead(register, 1)).toBe(0);
    }
  });

  it('reads all-ones beyond the space of a conventional function, 0 in PCIe extended space', () => {
    const pci = harness(PLAIN).fn;
    expect(pci.configRead(0x100, 4)).toBe(0xffffffff);
    expect(pci.configRead(0x100, 1)).toBe(0xff);
    expect(pci.configRead(0xffc, 2)).toBe(0xffff);
    const pcie = harness(FULL).fn;
    expect(pcie.configRead(0x100, 4)).toBe(0); // empty extended capability header
    expect(pcie.configRead(0xffc, 4)).toBe(0);
    expect(pcie.configRead(0x1000, 4)).toBe(0xffffffff);
  });

  it('serves accesses inside one dword and refuses those that cross one', () => {
    const { fn } = harness(PLAIN);
    expect(fn.configRead(0x3d, 2)).toBe(0x0001); // pin, min_gnt
    expect(fn.configRead(0x01, 2)).toBe(0x021b); // vendor 0x1b36 high byte, device 0x0002 low byte
    fn.configWrite(0x0d, 2, 0xff40); // latency timer (RW) and header type (RO)
    expect(fn.configRead(0x0c, 4)).toBe(0x00004000);
    expect(fn.configRead(0x03, 2)).toBe(0xffff);
    expect(fn.configRead(0x02, 4)).toBe(0xffffffff);
    fn.configWrite(0x02, 4, 0xffffffff); // would reach the command register
    expect(fn.configRead(0x04, 2)).toBe(0);
  });

  it('turns hostile arguments into all-ones reads and dropped writes', () => {
    const { fn } = harness(FULL);
    const before = readAll(fn, 4096);
    const sizes = [0, 3, 8, -1, 1.5, Number.NaN] as unknown as Array<1 | 2 | 4>;
    for (const size of sizes) {
      expect(fn.configRead(0x04, size)).toBe(0xffffffff);
      fn.configWrite(0x04, size, 0xffff);
    }
    for (const register of [-4, 0.5, Number.NaN, 2 ** 40, Number.POSITIVE_INFINITY]) {
      expect(fn.configRead(register, 4)).toBe(0xffffffff);
      fn.configWrite(register, 4, 0xffffffff);
    }
    fn.configWrite(0x04, 2, Number.NaN);
    fn.configWrite(0x3c, 1, 'x' as unknown as number);
    expect(readAll(fn, 4096)).toEqual(before);
  });
});

describe('config space properties', () => {
  const access = fc.record({
    register: fc.integer({ min: 0, max: 0x10f }),
    size: fc.constantFrom<1 | 2 | 4>(1, 2, 4),
    value: fc.integer({ min: 0, max: 0xffffffff }),
  });

  for (const [name, definition] of [
    ['full PCIe function', FULL],
    ['plain PCI function', PLAIN],
  ] as const) {
    it(`random guest writes never change a read-only bit (${name})`, () => {
      fc.assert(
        fc.property(fc.array(access, { maxLength: 40 }), (writes) => {
          const { fn } = harness(definition);
          const initial = readAll(fn);
          const writable = specWritable(definition, capabilities(fn));
          for (const { register, size, value } of writes) {
            fn.configWrite(register, size, value);
            const now = readAll(fn);
            for (let i = 0; i < 256; i++) {
              const changed = ((now[i] ?? 0) ^ (initial[i] ?? 0)) & ~(writable[i] ?? 0);
              if (changed !== 0) throw new Error(`byte 0x${i.toString(16)} changed in read-only bits 0x${changed.toString(16)}`);
            }
          }
        }),
        { numRuns: 150 },
      );
    });
  }

  it('RW1C status bits clear exactly the ones written as 1', () => {
    const errorBits = [0x0100, 0x0800, 0x1000, 0x2000, 0x4000, 0x8000];
    fc.assert(
      fc.property(fc.subarray(errorBits), fc.integer({ min: 0, max: 0xffff }), (set, written) => {
        const { fn } = harness(FULL);
        const bits = set.reduce((a, b) => a | b, 0);
        if (bits !== 0) fn.signalStatus(bits);
        const before = fn.configRead(0x06, 2);
        fn.configWrite(0x06, 2, written);
        const after = fn.configRead(0x06, 2);
        expect(after & PCI_STATUS_ERROR_BITS).toBe(bits & ~written & PCI_STATUS_ERROR_BITS);
        expect(after & ~PCI_STATUS_ERROR_BITS).toBe(before & ~PCI_STATUS_ERROR_BITS);
      }),
    );
  });

  it('ConfigSpace.guestWrite honours arbitrary RW and RW1C masks byte by byte', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (initial, rw, w1c, value) => {
          const space = new ConfigSpace(0x100);
          space.bytes.set(initial, 0x40);
          space.writable.set(rw, 0x40);
          space.clearable.set(w1c, 0x40);
          space.guestWrite(0x40, 4, value);
          for (let i = 0; i < 4; i++) {
            const v = (value >>> (8 * i)) & 0xff;
            const old = initial[i] ?? 0;
            const c = w1c[i] ?? 0; // a bit in both masks behaves as RW1C
            const r = (rw[i] ?? 0) & ~c;
            const got = space.bytes[0x40 + i] ?? 0;
            // RW bits follow the value; RW1C bits clear where 1 is written; the rest stay.
            expect(got & r).toBe(v & r);
            expect(got & c).toBe(old & c & ~v);
            expect(got & ~r & ~c & 0xff).toBe(old & ~r & ~c & 0xff);
          }
        },
      ),
    );
  });
});
