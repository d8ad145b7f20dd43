/**
 * Write-protect page tracking: guest stores to a tracked range go to the handler, which
 * applies or drops them; reads, host writes and other pages are untouched.
 */
import assert from 'node:assert/strict';
import { PAGE_SIZE, bitmapPages, type Backend, type TrackedWrite, type TrackedWriteAction } from '@vmed/core';
import { expectCode, expectUnsupported, le, rawRange, scratchPages } from '../helpers.js';
import { scenario } from '../scenario.js';

function hasPageTracking(backend: Backend, page: bigint): boolean {
  if (backend.capabilities.pageTracking) return true;
  expectUnsupported(() => backend.trackWrites(rawRange(page, PAGE_SIZE), () => 'apply'), 'trackWrites without page tracking');
  return false;
}

function readLe(backend: Backend, address: bigint, size: number): bigint {
  const b = new Uint8Array(size);
  backend.memory.read(address, b);
  return le(b, 0, size);
}

export const pageTrackingScenarios = [
  scenario('page-tracking.write-caught', 'guest stores to a tracked page reach the handler, which applies or drops them', async ({ backend, guest }) => {
    const [p0, p1] = scratchPages(guest, 2) as [bigint, bigint];
    if (!hasPageTracking(backend, p0)) return;
    backend.memory.write(p0, new Uint8Array(PAGE_SIZE));
    backend.memory.write(p1, new Uint8Array(PAGE_SIZE));
    const caught: TrackedWrite[] = [];
    let action: TrackedWriteAction = 'drop';
    const track = backend.trackWrites(rawRange(p0, PAGE_SIZE), (w) => {
      caught.push({ address: w.address, size: w.size, value: w.value });
      return action;
    });
    assert.equal(track.range.base, p0);
    assert.equal(track.range.length, BigInt(PAGE_SIZE));

    backend.memory.write(p0 + 0x10n, Uint8Array.of(1, 2, 3, 4));
    assert.equal(await guest.mmioRead(p0 + 0x10n, 4), 0x0403_0201n, 'reads of a tracked page are not caught');
    assert.equal(caught.length, 0, 'host writes and guest reads do not reach the handler');

    await guest.mmioWrite(p0 + 8n, 4, 0xcafe_f00dn);
    assert.deepEqual(caught, [{ address: p0 + 8n, size: 4, value: 0xcafe_f00dn }], 'the store reaches the handler');
    assert.equal(readLe(backend, p0 + 8n, 4), 0n, 'a dropped store does not land');
    assert.equal(await guest.mmioRead(p0 + 8n, 4), 0n, 'the guest does not see a dropped store');

    action = 'apply';
    await guest.mmioWrite(p0 + 0x20n, 8, 0x0102_0304_0506_0708n);
    assert.deepEqual(caught[1], { address: p0 + 0x20n, size: 8, value: 0x0102_0304_0506_0708n });
    assert.equal(readLe(backend, p0 + 0x20n, 8), 0x0102_0304_0506_0708n, 'an applied store lands');

    await guest.mmioWrite(p1, 4, 7n);
    assert.equal(caught.length, 2, 'stores to other pages are not caught');
    assert.equal(readLe(backend, p1, 4), 7n);

    track.dispose();
    assert.equal(track.disposed, true);
    await guest.mmioWrite(p0 + 8n, 4, 0x11n);
    assert.equal(caught.length, 2, 'an untracked page is plain RAM again');
    assert.equal(readLe(backend, p0 + 8n, 4), 0x11n);
  }),

  scenario('page-tracking.applied-write-dirty', 'pull mode: a tracked store the handler applied is in the dirty log (the guest wrote it)', async ({ backend, guest }) => {
    const [p0] = scratchPages(guest, 1) as [bigint];
    if (!hasPageTracking(backend, p0)) return;
    const mode = backend.capabilities.dirtyTracking;
    if (mode === false) {
      expectUnsupported(() => backend.dirty.pull(), 'dirty.pull without dirty tracking');
      return;
    }
    if (mode === 'push') {
      backend.dirty.start();
      expectUnsupported(() => backend.dirty.pull(), 'dirty.pull in push mode');
      backend.dirty.stop();
      return;
    }
    backend.dirty.start();
    backend.dirty.pull();
    const track = backend.trackWrites(rawRange(p0, PAGE_SIZE), () => 'apply');
    await guest.mmioWrite(p0 + 4n, 4, 9n);
    assert.ok(bitmapPages(backend.dirty.pull()).includes(p0), 'an applied tracked store must not escape migration');
    track.dispose();
    backend.dirty.stop();
  }),

  scenario('page-tracking.invalid-range', 'unaligned or non-RAM ranges are Invalid; overlapping tracks are Exists', async ({ backend, guest }) => {
    const [p0, p1] = scratchPages(guest, 2) as [bigint, bigint];
    if (!hasPageTracking(backend, p0)) return;
    const ram = backend.memory.ram.ranges;
    const last = ram[ram.length - 1];
    assert.ok(last !== undefined);
    expectCode(() => backend.trackWrites(rawRange(p0 + 1n, PAGE_SIZE), () => 'apply'), 'Invalid', 'an unaligned base');
    expectCode(() => backend.trackWrites(rawRange(p0, 100), () => 'apply'), 'Invalid', 'an unaligned length');
    expectCode(() => backend.trackWrites(rawRange(last.base + last.length, PAGE_SIZE), () => 'apply'), 'Invalid', 'a range past the end of RAM');
    expectCode(() => backend.trackWrites(rawRange(p0, 0), () => 'apply'), 'Invalid', 'an empty range');
    const t = backend.trackWrites(rawRange(p0, 2 * PAGE_SIZE), () => 'apply');
    expectCode(() => backend.trackWrites(rawRange(p1, PAGE_SIZE), () => 'apply'), 'Exists', 'a range overlapping a tracked one');
    t.dispose();
    backend.trackWrites(rawRange(p1, PAGE_SIZE), () => 'apply').dispose();
  }),
];
