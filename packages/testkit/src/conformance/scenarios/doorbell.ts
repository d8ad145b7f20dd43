/**
 * Doorbells: a guest write of the registered address, width and (with datamatch) value runs
 * the handler and never reaches the sink; any other access goes to the sink as usual. On KVM
 * the handler runs on another wake-up (ioeventfd), so scenarios wait for it.
 */
import assert from 'node:assert/strict';
import { isVmedError } from '@vmed/core';
import { attachRecorder, expectCode, expectUnsupported, rawRange, sleep, QUIET_MS, waitUntil } from '../helpers.js';
import { scenario } from '../scenario.js';

/** A handler that sums the coalesced counts it is given. */
function counter(): { readonly handler: (n: number) => void; readonly total: () => number } {
  let total = 0;
  return { handler: (n) => (total += n), total: () => total };
}

export const doorbellScenarios = [
  scenario('doorbell.datamatch', 'only writes of the matching width and value ring; others reach the sink; same match twice is Exists', async (session) => {
    const { backend, guest } = session;
    const w = session.mmioWindow.base;
    const a = w + 0x100n;
    if (!backend.capabilities.doorbellDatamatch) {
      expectUnsupported(() => backend.registerIoEvent({ space: 'mmio', address: a, length: 4, datamatch: 7n }, () => {}), 'a datamatch doorbell');
      return;
    }
    const sink = attachRecorder(session);
    const claim = backend.claimIo('mmio', rawRange(w, 0x1000));
    const seven = counter();
    const bell = backend.registerIoEvent({ space: 'mmio', address: a, length: 4, datamatch: 7n }, seven.handler);
    assert.deepEqual(bell.spec, { space: 'mmio', address: a, length: 4, datamatch: 7n });
    assert.equal(bell.disposed, false);

    await guest.mmioWrite(a, 4, 7n);
    await waitUntil(() => seven.total() === 1, 'the doorbell to ring for a matching write');
    assert.equal(bell.rings, 1, 'rings counts handler runs');
    assert.equal(sink.within('mmio', a, 4n).length, 0, 'a matching write never reaches the sink');

    await guest.mmioWrite(a, 4, 8n);
    await guest.mmioWrite(a, 2, 7n);
    assert.equal(await guest.mmioRead(a, 4), 0xffff_ffffn, 'reads are not caught by doorbells');
    assert.deepEqual(
      sink.within('mmio', a, 4n).map((r) => [r.kind, r.size, r.value]),
      [
        ['write', 4, 8n],
        ['write', 2, 7n],
        ['read', 4, 0xffff_ffffn],
      ],
      'a different value, a different width and a read all reach the sink',
    );
    await sleep(QUIET_MS);
    assert.equal(seven.total(), 1, 'non-matching writes do not ring');

    const eight = counter();
    const bell8 = backend.registerIoEvent({ space: 'mmio', address: a, length: 4, datamatch: 8n }, eight.handler);
    expectCode(() => backend.registerIoEvent({ space: 'mmio', address: a, length: 4, datamatch: 7n }, () => {}), 'Exists', 'a second doorbell with the same match');
    expectCode(() => backend.registerIoEvent({ space: 'mmio', address: a, length: 4 }, () => {}), 'Exists', 'an any-value doorbell over a datamatch one');
    await guest.mmioWrite(a, 4, 8n);
    await waitUntil(() => eight.total() === 1, 'the second doorbell to ring');
    assert.equal(seven.total(), 1, 'each datamatch rings only its own handler');

    bell.dispose();
    assert.equal(bell.disposed, true);
    sink.clear();
    await guest.mmioWrite(a, 4, 7n);
    assert.deepEqual(sink.within('mmio', a, 4n).map((r) => r.value), [7n], 'after dispose the write reaches the sink');
    assert.equal(seven.total(), 1);

    const p = BigInt(session.pioWindow.base);
    const ports = backend.claimIo('pio', rawRange(p, 0x10));
    const beef = counter();
    const portBell = backend.registerIoEvent({ space: 'pio', address: p + 4n, length: 2, datamatch: 0xbeefn }, beef.handler);
    await guest.pioWrite(session.pioWindow.base + 4, 2, 0xbeef);
    await waitUntil(() => beef.total() === 1, 'the port doorbell to ring');
    await guest.pioWrite(session.pioWindow.base + 4, 2, 0xbeee);
    assert.deepEqual(sink.within('pio', p + 4n, 2n).map((r) => r.value), [0xbeeen], 'a non-matching port write reaches the sink');
    for (const h of [bell8, portBell, ports, claim]) h.dispose();
  }),

  scenario('doorbell.any-value', 'without datamatch every write of the width rings; length 0 rings any width or is Unsupported', async (session) => {
    const { backend, guest } = session;
    const sink = attachRecorder(session);
    const w = session.mmioWindow.base;
    const claim = backend.claimIo('mmio', rawRange(w, 0x1000));
    const a = w + 0x300n;
    const any = counter();
    const bell = backend.registerIoEvent({ space: 'mmio', address: a, length: 4 }, any.handler);
    for (const v of [0n, 1n, 0xffff_ffffn]) await guest.mmioWrite(a, 4, v);
    await waitUntil(() => any.total() === 3, 'three rings, one per write (coalesced counts add up)');
    assert.equal(sink.within('mmio', a, 4n).length, 0, 'no rung write reaches the sink');
    await guest.mmioWrite(a, 2, 5n);
    assert.deepEqual(sink.within('mmio', a, 4n).map((r) => [r.size, r.value]), [[2, 5n]], 'a write of another width reaches the sink');
    expectCode(() => backend.registerIoEvent({ space: 'mmio', address: a, length: 4 }, () => {}), 'Exists', 'a second any-value doorbell at the same place');

    const p = session.pioWindow.base + 8;
    const port = counter();
    const portBell = backend.registerIoEvent({ space: 'pio', address: BigInt(p), length: 1 }, port.handler);
    await guest.pioWrite(p, 1, 0x5a);
    await guest.pioWrite(p, 1, 0xa5);
    await waitUntil(() => port.total() === 2, 'the port doorbell to ring twice');

    const b = w + 0x340n;
    const wide = counter();
    let anyWidth;
    try {
      anyWidth = backend.registerIoEvent({ space: 'mmio', address: b, length: 0 }, wide.handler);
    } catch (e) {
      // Length 0 is KVM's; userspace doorbells may refuse it, but only as Unsupported.
      assert.ok(isVmedError(e, 'Unsupported'), `a length-0 doorbell is served or refused with Unsupported, got ${String(e)}`);
    }
    if (anyWidth !== undefined) {
      for (const size of [1, 2, 4, 8] as const) await guest.mmioWrite(b, size, 1n);
      await waitUntil(() => wide.total() === 4, 'a length-0 doorbell to ring for every width');
      assert.equal(sink.within('mmio', b, 8n).length, 0, 'no write to a length-0 doorbell reaches the sink');
      anyWidth.dispose();
    }
    for (const h of [bell, portBell, claim]) h.dispose();
  }),

  scenario('doorbell.invalid-spec', 'malformed doorbells are Invalid', async (session) => {
    const { backend } = session;
    const a = session.mmioWindow.base + 0x500n;
    expectCode(() => backend.registerIoEvent({ space: 'mmio', address: a, length: 3 as 4 }, () => {}), 'Invalid', 'a 3-byte doorbell');
    expectCode(() => backend.registerIoEvent({ space: 'pio', address: BigInt(session.pioWindow.base), length: 8 }, () => {}), 'Invalid', 'an 8-byte port doorbell');
    expectCode(() => backend.registerIoEvent({ space: 'pio', address: 0x1_0000n, length: 1 }, () => {}), 'Invalid', 'a port doorbell past 0xffff');
    if (backend.capabilities.doorbellDatamatch) {
      expectCode(() => backend.registerIoEvent({ space: 'mmio', address: a, length: 1, datamatch: 0x100n }, () => {}), 'Invalid', 'a datamatch wider than the doorbell');
    }
  }),
];
