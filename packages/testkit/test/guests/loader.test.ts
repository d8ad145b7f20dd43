// The prebuilt images load as the entry contract says, the PVH ELF carries its Xen note (checked
// with binutils' readelf as well as our own parser), and malformed files are refused.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { SERIAL_PCI_FUNCTION } from '@vmed/devices';
import {
  GUEST_FOOTPRINT_END,
  GUEST_LOAD_ADDR,
  GUEST_PROGRAMS,
  HDR_PARAMS_OFFSET,
  flatEntryRegisters,
  guestPrebuiltDirectory,
  loadGuest,
  loadGuestSync,
  parseElf32,
  pvhEntryPoint,
  withGuestParams,
} from '../../src/guests/index.js';

const hasReadelf = spawnSync('readelf', ['--version']).status === 0;
const scratch = mkdtempSync(join(tmpdir(), 'vmed-guest-loader-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe.each(GUEST_PROGRAMS)('%s', (program) => {
  it('loads flat at the load address with the entry on its first byte', async () => {
    const image = await loadGuest(program, 'flat');
    expect(image.loadAddress).toBe(GUEST_LOAD_ADDR);
    expect(image.entry).toBe(GUEST_LOAD_ADDR);
    expect(image.footprintEnd).toBe(GUEST_FOOTPRINT_END);
    // The flat entry's first instruction is the 5-byte jmp over the header.
    expect(image.bytes[0]).toBe(0xe9);
    expect(image.bytes.byteLength).toBeLessThan(GUEST_FOOTPRINT_END - GUEST_LOAD_ADDR);
  });

  it('loads as PVH with the entry from the PHYS32_ENTRY note, on the pvh_entry symbol', async () => {
    const image = await loadGuest(program, 'pvh');
    const elf = parseElf32(image.bytes);
    expect(image.entry).toBe(elf.symbols.get('pvh_entry'));
    expect(image.entry).not.toBe(GUEST_LOAD_ADDR);
    expect(image.loadAddress).toBe(GUEST_LOAD_ADDR);
    expect(image.footprintEnd).toBe(GUEST_FOOTPRINT_END);
  });

  it.skipIf(!hasReadelf)('carries the Xen note readelf sees (skipped without binutils readelf)', async () => {
    const image = await loadGuest(program, 'pvh');
    const notes = execFileSync('readelf', ['-n', '-W', image.path], { encoding: 'utf8' });
    // readelf 2.40 does not decode Xen notes: "Xen 0x00000004 Unknown note type: (0x00000012)"
    // followed by the descriptor bytes, little-endian.
    const m = /Xen\s+0x00000004\s+Unknown note type: \(0x00000012\)\s+description data: ((?:[0-9a-f]{2} ){4})/.exec(notes);
    expect(m, notes).not.toBeNull();
    const bytes = (m?.[1] ?? '').trim().split(' ').map((b) => Number.parseInt(b, 16));
    const entry = (bytes[0] ?? 0) | ((bytes[1] ?? 0) << 8) | ((bytes[2] ?? 0) << 16) | ((bytes[3] ?? 0) << 24);
    expect(entry >>> 0).toBe(image.entry);

    const headers = execFileSync('readelf', ['-l', '-W', image.path], { encoding: 'utf8' });
    expect(headers).toMatch(/LOAD\s+0x[0-9a-f]+ 0x00010000 0x00010000 0x[0-9a-f]+ 0x30000 RWE/);
    expect(headers).toMatch(/NOTE\s/);
  });

  it('is the same code in both formats', async () => {
    const flat = await loadGuest(program, 'flat');
    const pvh = await loadGuest(program, 'pvh');
    const elf = parseElf32(pvh.bytes);
    const load = elf.segments.find((s) => s.type === 1);
    expect(load).toBeDefined();
    const offset = load?.offset ?? 0;
    expect(pvh.bytes.subarray(offset, offset + flat.bytes.byteLength)).toEqual(flat.bytes);
  });
});

describe('loader', () => {
  it('loads synchronously the same bytes', async () => {
    const a = await loadGuest('agent', 'flat');
    const b = loadGuestSync('agent', 'flat');
    expect(b.bytes).toEqual(a.bytes);
    expect(b.entry).toBe(a.entry);
  });

  it('finds the prebuilt directory from the package root', () => {
    expect(guestPrebuiltDirectory()).toMatch(/packages[/\\]testkit[/\\]guests[/\\]prebuilt$/);
  });

  it('refuses an unknown program and a missing directory with typed errors', async () => {
    expect(isVmedError(errorOf(() => loadGuestSync('nope' as 'agent', 'flat')), 'Invalid')).toBe(true);
    expect(isVmedError(errorOf(() => loadGuestSync('agent', 'raw' as 'flat')), 'Invalid')).toBe(true);
    await expect(loadGuest('agent', 'flat', { directory: join(scratch, 'absent') })).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('refuses a flat binary that is not the image of its ELF', async () => {
    const dir = join(scratch, 'mismatch');
    execFileSync('mkdir', ['-p', dir]);
    copyFileSync(join(guestPrebuiltDirectory(), 'agent.elf'), join(dir, 'agent.elf'));
    const demo = loadGuestSync('demo', 'flat');
    writeFileSync(join(dir, 'agent.bin'), demo.bytes);
    await expect(loadGuest('agent', 'flat', { directory: dir })).rejects.toMatchObject({ code: 'Invalid' });
  });

  it('refuses truncated and corrupted ELF files without reading out of bounds', () => {
    const elf = loadGuestSync('agent', 'pvh').bytes;
    for (const length of [0, 4, 51, 52, 100, 200, 0x1000, elf.byteLength - 1]) {
      expect({ length, invalid: isVmedError(errorOf(() => parseElf32(elf.slice(0, length))), 'Invalid') }).toEqual({
        length,
        invalid: true,
      });
    }
    const corrupt = elf.slice();
    new DataView(corrupt.buffer).setUint32(28, 0xffff_fff0, true); // e_phoff past the end
    expect(isVmedError(errorOf(() => parseElf32(corrupt)), 'Invalid')).toBe(true);
    const notElf = elf.slice();
    notElf[0] = 0;
    expect(errorOf(() => parseElf32(notElf))).toMatchObject({ code: 'Invalid', message: /not an ELF/ });
  });

  it('returns no PVH entry for an ELF without the note', () => {
    const parsed = parseElf32(loadGuestSync('agent', 'pvh').bytes);
    expect(pvhEntryPoint({ ...parsed, notes: [] })).toBeUndefined();
  });

  it('writes parameters into the image header of both formats', () => {
    const params = { ebx: 0xfebf0000, ecx: 1000, edx: 0x55, edi: 2 };
    const flat = withGuestParams(loadGuestSync('bench-mmio', 'flat'), params);
    const view = new DataView(flat.bytes.buffer, flat.bytes.byteOffset);
    expect([0, 4, 8, 12].map((o) => view.getUint32(HDR_PARAMS_OFFSET + o, true))).toEqual([0xfebf0000, 1000, 0x55, 2]);

    const original = loadGuestSync('bench-mmio', 'pvh');
    const pvh = withGuestParams(original, params);
    const load = parseElf32(pvh.bytes).segments.find((s) => s.type === 1);
    const at = (load?.offset ?? 0) + HDR_PARAMS_OFFSET;
    const pview = new DataView(pvh.bytes.buffer, pvh.bytes.byteOffset);
    expect(pview.getUint32(at + 4, true)).toBe(1000);
    // The original image is not modified.
    expect(new DataView(original.bytes.buffer, original.bytes.byteOffset).getUint32(at + 4, true)).toBe(0);
    expect(errorOf(() => withGuestParams(original, { ecx: -1 }))).toMatchObject({ code: 'Invalid' });
    expect(errorOf(() => withGuestParams(original, { ecx: 2 ** 32 }))).toMatchObject({ code: 'Invalid' });
  });

  it('gives the flat entry registers of the contract', () => {
    const image = loadGuestSync('bench-irq', 'flat');
    expect(flatEntryRegisters(image, 2, { ebx: 0x3020, ecx: 5, edx: 0x48 })).toEqual({
      eip: GUEST_LOAD_ADDR,
      eflags: 2,
      esi: 2,
      ebx: 0x3020,
      ecx: 5,
      edx: 0x48,
      edi: 0,
    });
    expect(errorOf(() => flatEntryRegisters(image, 4))).toMatchObject({ code: 'Invalid' });
    expect(errorOf(() => flatEntryRegisters(loadGuestSync('agent', 'pvh'), 0))).toMatchObject({ code: 'Invalid' });
  });

  it("looks for the serial model's PCI ids in the demo", () => {
    const symbols = parseElf32(loadGuestSync('demo', 'pvh').bytes).symbols;
    expect(symbols.get('SERIAL_VENDOR_ID')).toBe(SERIAL_PCI_FUNCTION.vendorId);
    expect(symbols.get('SERIAL_DEVICE_ID')).toBe(SERIAL_PCI_FUNCTION.deviceId);
  });
});
