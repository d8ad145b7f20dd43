import { describe, expect, it } from 'vitest';
import type { PciFunctionDefinition } from '../../src/index.js';
import { CapabilityListBuilder, ConfigSpace, walkCapabilities } from '../../src/pci/index.js';
import { EXP_CAP, FULL, MSI32, MSI_CAP, MSIX70, MSIX_CAP, PM_CAP, cap, capabilities } from './definitions.js';
import { harness } from './fakes.js';

describe('capability list', () => {
  it('places capabilities from 0x40, dword-aligned, linked in order and ending in 0', () => {
    const { fn } = harness(FULL);
    expect(fn.configRead(0x34, 1)).toBe(0x40);
    const list = [...capabilities(fn).entries()];
    expect(list.map(([id]) => id)).toEqual([PM_CAP, MSI_CAP, MSIX_CAP, EXP_CAP]);
    const lengths = new Map([
      [PM_CAP, 8],
      [MSI_CAP, 0x18],
      [MSIX_CAP, 12],
      [EXP_CAP, 0x3c],
    ]);
    let end = 0x40;
    for (const [id, offset] of list) {
      expect(offset % 4).toBe(0);
      expect(offset).toBeGreaterThanOrEqual(end);
      end = offset + (lengths.get(id) ?? 0);
    }
    expect(end).toBeLessThanOrEqual(0x100);
    const last = list[list.length - 1]?.[1] ?? 0;
    expect(fn.configRead(last + 1, 1)).toBe(0);
  });

  it('refuses a capability that does not fit below 0x100', () => {
    const space = new ConfigSpace(0x100);
    const builder = new CapabilityListBuilder(space);
    builder.add(0x09, 0x80);
    builder.add(0x09, 0x3c);
    expect(() => builder.add(0x09, 8)).toThrow(expect.objectContaining({ code: 'NoSpace' }));
    expect(walkCapabilities(space).map((c) => c.offset)).toEqual([0x40, 0xc0]);
  });

  it('walkCapabilities stops at a loop', () => {
    const space = new ConfigSpace(0x100);
    const builder = new CapabilityListBuilder(space);
    builder.add(0x09, 8);
    space.set8(0x41, 0x40); // next points at itself
    expect(walkCapabilities(space)).toEqual([{ id: 0x09, offset: 0x40 }]);
  });
});

describe('MSI capability layout', () => {
  it('describes 64-bit, per-vector masking and Multiple Message Capable', () => {
    const { fn } = harness(FULL);
    const msi = cap(fn, MSI_CAP);
    expect(fn.configRead(msi + 2, 2)).toBe(0x0180 | (2 << 1));
    const msi32 = harness(MSI32).fn;
    expect(msi32.configRead(cap(msi32, MSI_CAP) + 2, 2)).toBe(3 << 1);
  });

  it('clamps Multiple Message Enable to Multiple Message Capable', () => {
    const { fn } = harness(FULL);
    const msi = cap(fn, MSI_CAP);
    fn.configWrite(msi + 2, 2, 0x0070);
    expect((fn.configRead(msi + 2, 2) >>> 4) & 7).toBe(2);
    fn.configWrite(msi + 2, 2, 0x0010);
    expect((fn.configRead(msi + 2, 2) >>> 4) & 7).toBe(1);
  });

  it('hardwires address bits 1:0 and unimplemented mask bits to 0', () => {
    const { fn } = harness(FULL);
    const msi = cap(fn, MSI_CAP);
    fn.configWrite(msi + 4, 4, 0xfee00003);
    expect(fn.configRead(msi + 4, 4)).toBe(0xfee00000);
    fn.configWrite(msi + 16, 4, 0xffffffff);
    expect(fn.configRead(msi + 16, 4)).toBe(0xf);
    fn.configWrite(msi + 20, 4, 0xffffffff); // pending: read-only
    expect(fn.configRead(msi + 20, 4)).toBe(0);
  });

  it('refuses an MSI vector count that is not a power of two up to 32', () => {
    const msi = { vectors: 3, address64: false, perVectorMask: false } as unknown as PciFunctionDefinition['msi'];
    expect(() => harness({ ...MSI32, msi })).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });
});

describe('MSI-X capability layout', () => {
  it('gives table size, BIR and offsets, and only function mask and enable are writable', () => {
    const { fn } = harness(FULL);
    const msix = cap(fn, MSIX_CAP);
    expect(fn.configRead(msix + 2, 2)).toBe(7);
    expect(fn.configRead(msix + 4, 4)).toBe(0x800);
    expect(fn.configRead(msix + 8, 4)).toBe(0xc00);
    fn.configWrite(msix + 2, 2, 0xffff);
    expect(fn.configRead(msix + 2, 2)).toBe(0xc007);
    fn.configWrite(msix + 4, 4, 0);
    expect(fn.configRead(msix + 4, 4)).toBe(0x800);
    const f70 = harness(MSIX70).fn;
    const at = cap(f70, MSIX_CAP);
    expect(f70.configRead(at + 2, 2)).toBe(69);
    expect(f70.configRead(at + 4, 4)).toBe(0x0 | 2);
    expect(f70.configRead(at + 8, 4)).toBe(0x2000 | 2);
  });

  it('refuses tables that do not fit a trapped memory BAR', () => {
    const base = MSIX70;
    const bad: Array<PciFunctionDefinition['msix']> = [
      { vectors: 0, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x2000 },
      { vectors: 2049, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x2000 },
      { vectors: 70, tableBar: 3, tableOffset: 0, pbaBar: 2, pbaOffset: 0x2000 }, // upper half of BAR 2
      { vectors: 70, tableBar: 2, tableOffset: 4, pbaBar: 2, pbaOffset: 0x2000 }, // not QWORD-aligned
      { vectors: 70, tableBar: 2, tableOffset: 0x3c00, pbaBar: 2, pbaOffset: 0x2000 }, // past the BAR
      { vectors: 70, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x400 }, // PBA inside the table
      { vectors: 70, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x3ffc },
    ];
    for (const msix of bad) {
      expect(() => harness({ ...base, msix }), JSON.stringify(msix)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    }
    const direct: PciFunctionDefinition = {
      ...base,
      bars: [undefined, undefined, { kind: 'memory64', size: 0x4000, backing: 'direct' }],
    };
    expect(() => harness(direct)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    const io: PciFunctionDefinition = { ...base, bars: [undefined, undefined, { kind: 'io', size: 256 }] };
    expect(() => harness(io)).toThrow(expect.objectContaining({ code: 'Invalid' }));
  });
});

describe('PCI Express capability', () => {
  it('is a version 2 endpoint with an x1 2.5 GT/s link', () => {
    const { fn } = harness(FULL);
    const exp = cap(fn, EXP_CAP);
    expect(fn.configRead(exp + 2, 2)).toBe(0x0002);
    expect(fn.configRead(exp + 4, 4) & 0x8000).toBe(0x8000); // role-based error reporting
    expect(fn.configRead(exp + 4, 4) & 0x10000000).toBe(0); // no FLR advertised
    expect(fn.configRead(exp + 12, 4) & 0x3ff).toBe(0x011);
    expect(fn.configRead(exp + 18, 2)).toBe(0x0011);
    expect(fn.configRead(exp + 44, 4)).toBe(0x2);
  });

  it('keeps device control to its implemented bits', () => {
    const { fn } = harness(FULL);
    const exp = cap(fn, EXP_CAP);
    expect(fn.configRead(exp + 8, 2)).toBe(0x2810);
    fn.configWrite(exp + 8, 2, 0xffff);
    expect(fn.configRead(exp + 8, 2)).toBe(0x78ff);
    fn.configWrite(exp + 12, 4, 0); // link capabilities: read-only
    expect(fn.configRead(exp + 12, 4) & 0x3ff).toBe(0x011);
  });

  it('exists only with pcie, and brings the 4 KiB space with it', () => {
    expect(capabilities(harness(MSI32).fn).has(EXP_CAP)).toBe(false);
    expect(harness(MSI32).fn.configRead(0x200, 4)).toBe(0xffffffff);
    expect(harness(FULL).fn.configRead(0x200, 4)).toBe(0);
  });
});

describe('power management capability', () => {
  it('is version 3 with No_Soft_Reset, and takes D0 and D3hot only', () => {
    const { fn } = harness(FULL);
    const pm = cap(fn, PM_CAP);
    expect(fn.configRead(pm + 2, 2) & 7).toBe(3);
    expect(fn.configRead(pm + 4, 2)).toBe(0x0008);
    fn.configWrite(pm + 4, 2, 0x0003);
    expect(fn.configRead(pm + 4, 2)).toBe(0x000b);
    fn.configWrite(pm + 4, 2, 0x0001); // D1: unsupported, state unchanged
    expect(fn.powerState).toBe(3);
    fn.configWrite(pm + 4, 1, 0x02); // D2 by byte access
    expect(fn.powerState).toBe(3);
    fn.configWrite(pm + 4, 2, 0xfff0); // PME bits are not implemented
    expect(fn.configRead(pm + 4, 2)).toBe(0x0008);
    expect(fn.powerState).toBe(0);
  });
});
