/**
 * Guest memory: bounds checked before a byte moves, zero-copy views that alias RAM, pins
 * counted per page, ranges that span adjacent regions.
 */
import assert from 'node:assert/strict';
import { PAGE_SIZE, type RamRegion } from '@vmed/core';
import type { ConformanceSession } from '../target.js';
import { expectCode, expectRefusedWhole, expectUnsupported, inScratch, le, pattern, scratchPages } from '../helpers.js';
import { scenario } from '../scenario.js';

const TOP = 1n << 64n;

/** Addresses outside RAM: the first hole (if any), the top of RAM, the top of the address space. */
function outsideRam(session: ConformanceSession): bigint[] {
  const { ram } = session.backend.memory;
  const regions = ram.ranges;
  const out: bigint[] = [];
  for (let i = 1; i < regions.length; i++) {
    const prev = regions[i - 1] as RamRegion;
    const end = prev.base + prev.length;
    if (end < (regions[i] as RamRegion).base) {
      out.push(end);
      break;
    }
  }
  const last = regions[regions.length - 1] as RamRegion;
  out.push(last.base + last.length, last.base + last.length + 0x10_0000n);
  for (const a of [TOP - 0x1000n]) if (ram.find(a) === undefined) out.push(a);
  return out.filter((a) => a + 16n <= TOP && ram.find(a) === undefined);
}

/** RAM region ends followed by a byte that is not RAM, preferring those inside the scratch range. */
function regionEndsBeforeNonRam(session: ConformanceSession): bigint[] {
  const { ram } = session.backend.memory;
  const ends = ram.ranges.map((r) => r.base + r.length).filter((end) => ram.find(end) === undefined);
  return ends.sort((a, b) => Number(inScratch(session.guest, b - 16n, 16)) - Number(inScratch(session.guest, a - 16n, 16)));
}

/** Boundaries between two regions that touch (`a.end === b.base`). */
function adjacentBoundaries(session: ConformanceSession): bigint[] {
  const r = session.backend.memory.ram.ranges;
  const out: bigint[] = [];
  for (let i = 1; i < r.length; i++) {
    const prev = r[i - 1] as RamRegion;
    if (prev.base + prev.length === (r[i] as RamRegion).base) out.push((r[i] as RamRegion).base);
  }
  return out;
}

export const memoryScenarios = [
  scenario('memory.coherent', 'host writes are seen by guest loads and guest stores by host reads', async ({ backend, guest }) => {
    const [p] = scratchPages(guest, 1) as [bigint];
    const data = pattern(64, 1);
    backend.memory.write(p, data);
    for (const [offset, size] of [[0, 8], [8, 4], [12, 2], [14, 1], [16, 8]] as const) {
      assert.equal(await guest.mmioRead(p + BigInt(offset), size), le(data, offset, size), `guest ${size}-byte load at +${offset} sees the host's write`);
    }
    const stores = [
      [0x40, 1, 0x5an],
      [0x42, 2, 0xbeefn],
      [0x44, 4, 0xa1b2c3d4n],
      [0x48, 8, 0x0102030405060708n],
    ] as const;
    for (const [offset, size, value] of stores) await guest.mmioWrite(p + BigInt(offset), size, value);
    const back = new Uint8Array(16);
    backend.memory.read(p + 0x40n, back);
    for (const [offset, size, value] of stores) assert.equal(le(back, offset - 0x40, size), value, `host sees the guest's ${size}-byte store`);
  }),

  scenario('memory.bounds', 'addresses outside RAM are refused whole with Invalid, before any byte moves', async (session) => {
    const { backend, guest } = session;
    const m = backend.memory;
    for (const a of outsideRam(session)) {
      const dst = new Uint8Array(16).fill(0xa5);
      expectRefusedWhole(() => m.read(a, dst), `read at ${a.toString(16)}`);
      assert.ok(dst.every((b) => b === 0xa5), 'a refused read leaves the destination untouched');
      expectRefusedWhole(() => m.write(a, pattern(16, 2)), `write at ${a.toString(16)}`);
      expectCode(() => m.view(a, 16, 'read'), 'Invalid', `view at ${a.toString(16)}`);
      if (backend.capabilities.pinning) expectCode(() => m.pin(a, PAGE_SIZE), 'Invalid', `pin at ${a.toString(16)}`);
    }
    for (const a of [-1n, TOP, TOP + 0x1000n]) {
      expectRefusedWhole(() => m.read(a, new Uint8Array(4)), `read at ${a}`);
      expectRefusedWhole(() => m.write(a, new Uint8Array(4)), `write at ${a}`);
      expectCode(() => m.view(a, 4, 'read'), 'Invalid', `view at ${a}`);
    }
    expectRefusedWhole(() => m.read(TOP - 4n, new Uint8Array(8)), 'a read wrapping past 2^64');
    const [p] = scratchPages(guest, 1) as [bigint];
    for (const length of [-1, 1.5, Number.NaN]) {
      expectCode(() => m.view(p, length, 'read'), 'Invalid', `view of length ${length}`);
      if (backend.capabilities.pinning) expectCode(() => m.pin(p, length), 'Invalid', `pin of length ${length}`);
    }
  }),

  scenario('memory.partial-access', 'a range that starts in RAM and runs out of it moves no byte and says bytesDone 0', async (session) => {
    const { backend, guest } = session;
    const m = backend.memory;
    const ends = regionEndsBeforeNonRam(session);
    assert.ok(ends.length > 0, 'RAM ends somewhere');
    for (const end of ends) {
      const dst = new Uint8Array(32).fill(0x5a);
      expectRefusedWhole(() => m.read(end - 16n, dst), `read across the end of RAM at ${end.toString(16)}`);
      assert.ok(dst.every((b) => b === 0x5a), 'no byte of the in-RAM half was copied');
      const before = new Uint8Array(16);
      m.read(end - 16n, before);
      // Inside scratch the write may differ (a partial write would show); elsewhere it
      // rewrites what is there, so a faulty backend cannot corrupt the guest's own memory.
      const src = new Uint8Array(32);
      src.set(inScratch(guest, end - 16n, 16) ? pattern(16, 3) : before);
      expectRefusedWhole(() => m.write(end - 16n, src), `write across the end of RAM at ${end.toString(16)}`);
      const after = new Uint8Array(16);
      m.read(end - 16n, after);
      assert.deepEqual(after, before, 'no byte of the in-RAM half was written');
      expectCode(() => m.view(end - 16n, 32, 'read'), 'Invalid', 'a view across the end of RAM');
      if (backend.capabilities.pinning) expectCode(() => m.pin(end - BigInt(PAGE_SIZE), 2 * PAGE_SIZE), 'Invalid', 'a pin across the end of RAM');
    }
    for (const r of m.ram.ranges) {
      if (r.base === 0n || m.ram.find(r.base - 1n) !== undefined) continue;
      expectRefusedWhole(() => m.read(r.base - 16n, new Uint8Array(32)), `read from a hole into RAM at ${r.base.toString(16)}`);
    }
  }),

  scenario('memory.views', 'views alias guest RAM without copies, and refuse ranges outside RAM', async (session) => {
    const { backend, guest } = session;
    const m = backend.memory;
    const [p] = scratchPages(guest, 1) as [bigint];
    const mappingsBefore = backend.resources().mappings;

    const v = m.view(p, PAGE_SIZE, 'readwrite');
    assert.equal(v.address, p);
    assert.equal(v.length, PAGE_SIZE);
    assert.equal(v.access, 'readwrite');
    assert.equal(v.disposed, false);
    assert.equal(v.bytes.length, PAGE_SIZE);
    assert.equal(v.data.byteLength, PAGE_SIZE);

    const data = pattern(PAGE_SIZE, 4);
    v.bytes.set(data);
    const copy = new Uint8Array(PAGE_SIZE);
    m.read(p, copy);
    assert.deepEqual(copy, data, 'memory.read sees writes through the view');
    assert.equal(await guest.mmioRead(p + 100n, 4), le(data, 100, 4), 'the guest sees writes through the view');
    m.write(p + 8n, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    assert.deepEqual([...v.bytes.subarray(8, 16)], [1, 2, 3, 4, 5, 6, 7, 8], 'the view sees memory.write at once (zero copy)');
    v.data.setUint32(16, 0xdeadbeef, true);
    assert.equal(await guest.mmioRead(p + 16n, 4), 0xdeadbeefn, 'DataView accessors are little-endian guest memory');
    await guest.mmioWrite(p + 24n, 8, 0x1122334455667788n);
    assert.equal(v.data.getBigUint64(24, true), 0x1122334455667788n, 'the view sees guest stores');

    const r = m.view(p, 16, 'read');
    assert.equal(r.access, 'read');
    assert.deepEqual([...r.bytes.subarray(8, 12)], [1, 2, 3, 4]);
    r.dispose();

    v.dispose();
    assert.equal(v.disposed, true);
    expectCode(() => v.bytes, 'BadHandle', 'bytes of a disposed view');
    expectCode(() => v.data, 'BadHandle', 'data of a disposed view');
    v.dispose();
    assert.equal(backend.resources().mappings, mappingsBefore, 'disposed views hold no mapping');

    for (const end of regionEndsBeforeNonRam(session)) expectCode(() => m.view(end - 8n, 16, 'read'), 'Invalid', 'a view leaving RAM');
    // Across two adjacent regions a view may be refused (mapped apart in the host) but must
    // never show anything other than the guest's bytes.
    for (const boundary of adjacentBoundaries(session)) {
      let span;
      try {
        span = m.view(boundary - 16n, 32, 'read');
      } catch (e) {
        expectCode(() => {
          throw e;
        }, 'Invalid', 'a view across adjacent regions is either served or refused with Invalid');
        continue;
      }
      const expected = new Uint8Array(32);
      m.read(boundary - 16n, expected);
      assert.deepEqual(new Uint8Array(span.bytes), expected, 'a view across adjacent regions shows both regions');
      span.dispose();
    }
  }),

  scenario('memory.pin-unpin', 'pins overlap, count per page, give views, and release views with them', async ({ backend, guest }) => {
    const m = backend.memory;
    const [p0, p1, p2] = scratchPages(guest, 3) as [bigint, bigint, bigint];
    if (!backend.capabilities.pinning) {
      expectUnsupported(() => m.pin(p0, PAGE_SIZE), 'pin without pinning');
      return;
    }
    const pinsBefore = backend.resources().pins;
    const a = m.pin(p0, 2 * PAGE_SIZE);
    const b = m.pin(p1, 2 * PAGE_SIZE);
    assert.equal(a.address, p0);
    assert.equal(a.length, 2 * PAGE_SIZE);
    assert.equal(backend.resources().pins, pinsBefore + 2, 'two pins are held');

    const va = a.view('readwrite');
    assert.equal(va.bytes.length, 2 * PAGE_SIZE);
    va.bytes.fill(0x11, PAGE_SIZE);
    const page = new Uint8Array(PAGE_SIZE);
    m.read(p1, page);
    assert.ok(page.every((x) => x === 0x11), 'writes through a pin view reach RAM');

    a.dispose();
    assert.equal(va.disposed, true, "disposing a pin disposes its views");
    expectCode(() => va.bytes, 'BadHandle', 'bytes of a view of a disposed pin');
    expectCode(() => a.view('read'), 'BadHandle', 'view() of a disposed pin');
    a.dispose();

    const vb = b.view('readwrite');
    assert.equal(vb.bytes[0], 0x11, 'the page shared with the released pin is still held by the other');
    vb.bytes.fill(0x22, PAGE_SIZE);
    m.read(p2, page);
    assert.ok(page.every((x) => x === 0x22));
    assert.equal(backend.resources().pins, pinsBefore + 1);
    vb.dispose();
    b.dispose();
    assert.equal(backend.resources().pins, pinsBefore, 'every pin released');
  }),

  scenario('memory.span-regions', 'reads and writes may span two adjacent RAM regions', async (session) => {
    const { backend, guest } = session;
    const m = backend.memory;
    const boundaries = adjacentBoundaries(session);
    assert.ok(boundaries.length > 0, "the target's RAM map has no two adjacent regions: give it two so spanning can be tested");
    for (const boundary of boundaries) {
      const whole = new Uint8Array(32);
      m.read(boundary - 16n, whole);
      const left = new Uint8Array(16);
      const right = new Uint8Array(16);
      m.read(boundary - 16n, left);
      m.read(boundary, right);
      assert.deepEqual(whole, Uint8Array.from([...left, ...right]), 'a spanning read joins both regions');
    }
    const writable = boundaries.find((b) => inScratch(guest, b - 16n, 32));
    assert.ok(writable !== undefined, "no boundary between adjacent regions lies in the guest's scratch range");
    const data = pattern(32, 6);
    m.write(writable - 16n, data);
    const back = new Uint8Array(32);
    m.read(writable - 16n, back);
    assert.deepEqual(back, data, 'a spanning write lands in both regions');
    assert.equal(await guest.mmioRead(writable - 4n, 4), le(data, 12, 4), 'the guest sees the first region');
    assert.equal(await guest.mmioRead(writable, 4), le(data, 16, 4), 'the guest sees the second region');
  }),
];
