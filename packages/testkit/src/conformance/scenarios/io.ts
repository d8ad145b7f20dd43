/**
 * Trapped I/O: claims refuse overlaps and empty ranges; guest accesses to a claim reach the
 * sink exactly once with their address, width and value; unclaimed reads are all-ones.
 */
import assert from 'node:assert/strict';
import { allOnes, pciConfigAddress, type AccessSize } from '@vmed/core';
import { RecordingSink } from '../recording-sink.js';
import { attachRecorder, expectCode, expectUnsupported, rawRange } from '../helpers.js';
import { scenario } from '../scenario.js';

/** A value for a read that depends on address and width, so a wrong request shows. */
function answer(address: bigint, size: AccessSize): bigint {
  return BigInt.asUintN(size * 8, 0x8877_6655_4433_2211n ^ (address * 0x9e37_79b9n));
}

export const ioScenarios = [
  scenario('io.attach-once', 'attach is called once: a second sink is refused with State', async (session) => {
    attachRecorder(session);
    expectCode(() => session.backend.attach(new RecordingSink()), 'State', 'a second attach');
  }),

  scenario('io.overlap-refused', 'a claim overlapping another in the same space is Exists; adjacent claims are fine', async (session) => {
    const { backend } = session;
    attachRecorder(session);
    const w = session.mmioWindow.base;
    const c = backend.claimIo('mmio', rawRange(w + 0x100n, 0x100));
    assert.equal(c.space, 'mmio');
    assert.equal(c.range.base, w + 0x100n);
    assert.equal(c.range.length, 0x100n);
    for (const [base, length, what] of [
      [w + 0x100n, 0x100, 'the same range'],
      [w + 0xf0n, 0x20, 'a range over its start'],
      [w + 0x1f0n, 0x20, 'a range over its end'],
      [w + 0x140n, 0x10, 'a range inside it'],
      [w, 0x1000, 'a range around it'],
    ] as const) {
      expectCode(() => backend.claimIo('mmio', rawRange(base, length)), 'Exists', `claiming ${what}`);
    }
    const below = backend.claimIo('mmio', rawRange(w, 0x100));
    const above = backend.claimIo('mmio', rawRange(w + 0x200n, 0x100));

    const p = BigInt(session.pioWindow.base);
    const pc = backend.claimIo('pio', rawRange(p, 0x10));
    expectCode(() => backend.claimIo('pio', rawRange(p + 8n, 0x10)), 'Exists', 'an overlapping port claim');
    const pcNext = backend.claimIo('pio', rawRange(p + 0x10n, 0x10));

    c.dispose();
    assert.equal(c.disposed, true);
    const again = backend.claimIo('mmio', rawRange(w + 0x100n, 0x100));
    for (const h of [again, below, above, pc, pcNext]) h.dispose();
  }),

  scenario('io.zero-length-refused', 'empty, negative, wrapping and off-the-port-space ranges are Invalid', async (session) => {
    const { backend } = session;
    attachRecorder(session);
    const w = session.mmioWindow.base;
    const p = BigInt(session.pioWindow.base);
    expectCode(() => backend.claimIo('mmio', rawRange(w, 0)), 'Invalid', 'a zero-length MMIO claim');
    expectCode(() => backend.claimIo('pio', rawRange(p, 0)), 'Invalid', 'a zero-length port claim');
    expectCode(() => backend.claimIo('mmio', rawRange(w, -1n)), 'Invalid', 'a negative-length claim');
    expectCode(() => backend.claimIo('mmio', rawRange((1n << 64n) - 0x10n, 0x20)), 'Invalid', 'a claim wrapping past 2^64');
    expectCode(() => backend.claimIo('pio', rawRange(0xffffn, 2)), 'Invalid', 'a port claim past 0xffff');
    expectCode(() => backend.claimIo('mmio', rawRange(-0x10n, 0x20)), 'Invalid', 'a claim at a negative address');
  }),

  scenario('io.straddle', 'an access straddling claims reaches the sink whole, once, or not at all — never split', async (session) => {
    const { backend, guest } = session;
    const sink = attachRecorder(session);
    const w = session.mmioWindow.base + 0x100n;
    const a = backend.claimIo('mmio', rawRange(w, 0x10));
    const b = backend.claimIo('mmio', rawRange(w + 0x10n, 0x10));
    sink.serve('mmio', w, 0x20n, answer);

    const cases = [
      [w + 0xen, 4, 'across two adjacent claims'],
      [w + 0x1en, 4, 'off the end of a claim'],
      [w + 0x1cn, 8, 'an 8-byte access off the end of a claim'],
      [w - 2n, 4, 'into the start of a claim'],
    ] as const;
    for (const [address, size, what] of cases) {
      sink.clear();
      const value = await guest.mmioRead(address, size);
      const seen = sink.within('mmio', w - 8n, 0x30n);
      assert.ok(seen.length <= 1, `a read ${what} reached the sink ${seen.length} times (split?)`);
      const [r] = seen;
      if (r === undefined) assert.equal(value, allOnes(size), `a read ${what} the sink never saw reads all-ones`);
      else {
        assert.deepEqual([r.kind, r.address, r.size], ['read', address, size], `a read ${what} reaches the sink whole`);
        assert.equal(value, r.value, `the guest sees what the sink answered for a read ${what}`);
      }

      sink.clear();
      const written = BigInt.asUintN(size * 8, 0x0123_4567_89ab_cdefn);
      await guest.mmioWrite(address, size, written);
      const writes = sink.within('mmio', w - 8n, 0x30n);
      assert.ok(writes.length <= 1, `a write ${what} reached the sink ${writes.length} times (split?)`);
      const [wr] = writes;
      if (wr !== undefined) assert.deepEqual([wr.kind, wr.address, wr.size, wr.value], ['write', address, size, written], `a write ${what} reaches the sink whole`);
    }
    a.dispose();
    b.dispose();
  }),

  scenario('io.unclaimed-all-ones', 'guest reads of unclaimed MMIO and ports return all-ones; writes are dropped', async (session) => {
    const { guest } = session;
    attachRecorder(session);
    const u = session.mmioWindow.base + 0x8000n;
    for (const size of [1, 2, 4, 8] as const) assert.equal(await guest.mmioRead(u, size), allOnes(size), `unclaimed ${size}-byte MMIO read`);
    await guest.mmioWrite(u, 4, 0x1234_5678n);
    assert.equal(await guest.mmioRead(u, 4), 0xffff_ffffn, 'an unclaimed write is dropped, not stored');
    const p = session.pioWindow.base + 0x80;
    for (const size of [1, 2, 4] as const) assert.equal(await guest.pioRead(p, size), Number(allOnes(size)), `unclaimed ${size}-byte port read`);
    await guest.pioWrite(p, 2, 0x55aa);
    assert.equal(await guest.pioRead(p, 2), 0xffff, 'an unclaimed port write is dropped');
  }),

  scenario('io.guest-access-reaches-sink', 'MMIO and port accesses to a claim reach the sink once with address, width and value', async (session) => {
    const { backend, guest } = session;
    const sink = attachRecorder(session);
    const w = session.mmioWindow.base;
    const mmio = backend.claimIo('mmio', rawRange(w, 0x1000));
    sink.serve('mmio', w, 0x1000n, answer);
    for (const size of [1, 2, 4, 8] as const) {
      const address = w + 0x100n + BigInt(size * 8);
      sink.clear();
      const value = await guest.mmioRead(address, size);
      assert.deepEqual(
        sink.within('mmio', w, 0x1000n).map((r) => [r.kind, r.address, r.size]),
        [['read', address, size]],
        `one ${size}-byte MMIO read request`,
      );
      assert.equal(value, answer(address, size), `the guest sees the sink's answer to a ${size}-byte read`);

      const store = BigInt.asUintN(size * 8, 0xfedc_ba98_7654_3210n);
      sink.clear();
      await guest.mmioWrite(address + 0x400n, size, store);
      assert.deepEqual(
        sink.within('mmio', w, 0x1000n).map((r) => [r.kind, r.address, r.size, r.value]),
        [['write', address + 0x400n, size, store]],
        `one ${size}-byte MMIO write request`,
      );
    }

    const p = session.pioWindow.base;
    const pio = backend.claimIo('pio', rawRange(BigInt(p), 0x10));
    sink.serve('pio', BigInt(p), 0x10n, answer);
    for (const size of [1, 2, 4] as const) {
      const port = p + size;
      sink.clear();
      const value = await guest.pioRead(port, size);
      assert.deepEqual(
        sink.within('pio', BigInt(p), 0x10n).map((r) => [r.kind, r.address, r.size]),
        [['read', BigInt(port), size]],
        `one ${size}-byte port read request`,
      );
      assert.equal(BigInt(value), answer(BigInt(port), size), `the guest sees the sink's answer to a ${size}-byte in`);
      const out = Number(BigInt.asUintN(size * 8, 0xa5c3_e1f0n));
      sink.clear();
      await guest.pioWrite(port + 4, size, out);
      assert.deepEqual(
        sink.within('pio', BigInt(p), 0x10n).map((r) => [r.kind, r.address, r.size, r.value]),
        [['write', BigInt(port + 4), size, BigInt(out)]],
        `one ${size}-byte port write request`,
      );
    }
    mmio.dispose();
    pio.dispose();
  }),

  scenario('io.pci-config', "config cycles reach the sink: as 'pci' requests (hypervisor) or as 0xCF8/0xCFC port I/O (device-model)", async (session) => {
    const { backend, guest } = session;
    const sink = attachRecorder(session);
    const bdf = { bus: 0, device: 0x1e, function: 2 };
    if (backend.capabilities.pciConfig === 'hypervisor') {
      const claim = backend.claimPciFunction(bdf);
      assert.equal(claim.space, 'pci');
      const base = pciConfigAddress(bdf, 0);
      sink.serve('pci', base, 0x1000n, answer);
      assert.equal(BigInt(await guest.configRead(bdf, 0, 4)), answer(base, 4), 'config read of the ID dword');
      assert.ok(sink.log.some((r) => r.kind === 'read' && r.space === 'pci' && r.address === base && r.size === 4), "a 'pci' read request at register 0");
      await guest.configWrite(bdf, 0x10, 4, 0xffff_ffff);
      assert.ok(
        sink.log.some((r) => r.kind === 'write' && r.space === 'pci' && r.address === base + 0x10n && r.value === 0xffff_ffffn),
        "a 'pci' write request at register 0x10",
      );
      claim.dispose();
      return;
    }
    expectUnsupported(() => backend.claimPciFunction(bdf), 'claimPciFunction with pciConfig "device-model"');
    const ports = backend.claimIo('pio', rawRange(0xcf8n, 8));
    sink.serve('pio', 0xcfcn, 4n, answer);
    const cf8 = (0x8000_0000 | (bdf.bus << 16) | (bdf.device << 11) | (bdf.function << 8)) >>> 0;
    const value = await guest.configRead(bdf, 0x0e, 1);
    assert.deepEqual(
      sink.within('pio', 0xcf8n, 8n).map((r) => [r.kind, r.address, r.size, r.kind === 'write' ? r.value : undefined]),
      [
        ['write', 0xcf8n, 4, BigInt((cf8 | 0x0c) >>> 0)],
        ['read', 0xcfen, 1, undefined],
      ],
      'mechanism #1: the address dword to 0xCF8, then a byte read at 0xCFC + 2',
    );
    assert.equal(BigInt(value), answer(0xcfen, 1));
    sink.clear();
    await guest.configWrite(bdf, 0x10, 4, 0x1234_5678);
    assert.deepEqual(
      sink.within('pio', 0xcf8n, 8n).map((r) => [r.kind, r.address, r.size, r.value]),
      [
        ['write', 0xcf8n, 4, BigInt((cf8 | 0x10) >>> 0)],
        ['write', 0xcfcn, 4, 0x1234_5678n],
      ],
      'a config write is the address dword then the data dword',
    );
    ports.dispose();
  }),
];
