/**
 * Dirty tracking: the backend's log shows what the guest wrote (pull mode) and returns each
 * bit once; device-model writes are reported through `push`; a collection round that is
 * aborted gives its pages back (checked on the core's `DirtyTracker`, which OR-s the backend's log
 * with device-model writes).
 */
import assert from 'node:assert/strict';
import { DirtyTracker, PAGE_SIZE, bitmapPages, type Backend } from '@vmed/core';
import { expectCode, expectUnsupported, pattern, rawRange, scratchPages } from '../helpers.js';
import { scenario } from '../scenario.js';

/** True when dirty tracking is present; otherwise checks every method is Unsupported. */
function hasDirtyTracking(backend: Backend, page: bigint): boolean {
  if (backend.capabilities.dirtyTracking !== false) return true;
  expectUnsupported(() => backend.dirty.start(), 'dirty.start without dirty tracking');
  expectUnsupported(() => backend.dirty.pull(), 'dirty.pull without dirty tracking');
  expectUnsupported(() => backend.dirty.push(rawRange(page, PAGE_SIZE)), 'dirty.push without dirty tracking');
  return false;
}

/** True in pull mode; in push mode checks `pull` is Unsupported. */
function pulls(backend: Backend): boolean {
  if (backend.capabilities.dirtyTracking === 'pull') return true;
  backend.dirty.start();
  expectUnsupported(() => backend.dirty.pull(), 'dirty.pull in push mode');
  backend.dirty.stop();
  return false;
}

export const dirtyScenarios = [
  scenario('dirty.guest-writes-visible', 'pull mode: pages the guest stored to are set in the log, one bitmap per RAM region', async ({ backend, guest }) => {
    const [p0, p1, p2] = scratchPages(guest, 3) as [bigint, bigint, bigint];
    if (!hasDirtyTracking(backend, p0) || !pulls(backend)) return;
    backend.dirty.start();
    assert.equal(backend.dirty.active, true);
    await guest.mmioWrite(p0 + 8n, 4, 1n);
    await guest.mmioWrite(p1 + 0xff8n, 8, 2n);
    const bitmaps = backend.dirty.pull();
    const ram = backend.memory.ram.ranges;
    assert.equal(bitmaps.length, ram.length, 'one bitmap per RAM region');
    for (const [i, b] of bitmaps.entries()) {
      const r = ram[i];
      assert.ok(r !== undefined && b.base === r.base, 'bitmaps follow the RAM map');
      assert.equal(b.pages, Math.ceil(Number(r.length) / PAGE_SIZE), 'a bitmap covers its whole region');
      assert.ok(b.bits.length * 32 >= b.pages, 'the bit array holds every page');
    }
    const pages = bitmapPages(bitmaps);
    assert.ok(pages.includes(p0), 'a 4-byte guest store dirties its page');
    assert.ok(pages.includes(p1), 'an 8-byte guest store dirties its page');
    assert.ok(!pages.includes(p2), 'a page nobody wrote is clean');
    backend.dirty.stop();
    assert.equal(backend.dirty.active, false);
  }),

  scenario('dirty.pull-returns-once', 'pull mode: a pull returns and clears; a second pull without new stores shows nothing', async ({ backend, guest }) => {
    const [p0, p1] = scratchPages(guest, 2) as [bigint, bigint];
    if (!hasDirtyTracking(backend, p0) || !pulls(backend)) return;
    backend.dirty.start();
    await guest.mmioWrite(p0, 4, 3n);
    assert.ok(bitmapPages(backend.dirty.pull()).includes(p0), 'the first pull has the store');
    const second = bitmapPages(backend.dirty.pull());
    assert.ok(!second.includes(p0), 'the second pull does not repeat it');
    await guest.mmioWrite(p1, 1, 4n);
    const third = bitmapPages(backend.dirty.pull());
    assert.ok(third.includes(p1) && !third.includes(p0), 'a later pull has only the later store');
    backend.dirty.stop();
  }),

  scenario('dirty.device-writes-visible', "device-model writes reach the round through push (forwarded on push backends, the core's own bitmap on pull)", async ({ backend, guest }) => {
    const [p0, p1, p2] = scratchPages(guest, 3) as [bigint, bigint, bigint];
    if (!hasDirtyTracking(backend, p0)) return;
    const collector = new DirtyTracker(backend.memory.ram, backend.dirty);
    backend.dirty.start();
    backend.memory.write(p0, pattern(16, 7));
    collector.markDeviceWrite(p0, 16);
    const view = backend.memory.view(p1, 8, 'readwrite');
    view.bytes[0] = 0x99;
    view.dispose();
    collector.markDeviceWrite(p1, 1);
    const round = collector.collect();
    assert.ok(round.pages().includes(p0), 'a memory.write by the device is in the round');
    assert.ok(round.pages().includes(p1), 'a write through a view is in the round');
    assert.ok(!round.pages().includes(p2), 'an untouched page is not');
    round.commit();
    const next = collector.collect();
    assert.ok(!next.pages().includes(p0) && !next.pages().includes(p1), 'a committed round is not repeated');
    next.commit();
    backend.dirty.stop();
  }),

  scenario('dirty.aborted-collection-keeps-bits', 'an aborted round gives its pages back; the backend returned them only once', async ({ backend, guest }) => {
    const [p0, p1, p2] = scratchPages(guest, 3) as [bigint, bigint, bigint];
    if (!hasDirtyTracking(backend, p0)) return;
    const pull = backend.capabilities.dirtyTracking === 'pull';
    const collector = new DirtyTracker(backend.memory.ram, backend.dirty);
    backend.dirty.start();
    // Guest stores on pull backends; on push backends the device's writes are what the collector holds.
    const dirty = async (page: bigint, value: bigint) => {
      if (pull) await guest.mmioWrite(page, 4, value);
      else collector.markDeviceWrite(page, 4);
    };
    await dirty(p0, 1n);
    await dirty(p1, 2n);
    const r1 = collector.collect();
    assert.ok(r1.pages().includes(p0) && r1.pages().includes(p1), 'the first round has both pages');
    r1.abort();
    if (pull) {
      const raw = bitmapPages(backend.dirty.pull());
      assert.ok(!raw.includes(p0) && !raw.includes(p1), "the backend's log was cleared by the first pull: the bits live only in the collector now");
    }
    const r2 = collector.collect();
    assert.ok(r2.pages().includes(p0) && r2.pages().includes(p1), 'the aborted round gave its pages back');
    r2.commit();
    expectCode(() => r2.abort(), 'State', 'aborting a committed round');
    const r3 = collector.collect();
    assert.ok(!r3.pages().includes(p0) && !r3.pages().includes(p1), 'a committed round is gone');
    r3.commit();

    await dirty(p2, 3n);
    const r4 = collector.collect();
    expectCode(() => collector.collect(), 'State', 'a second round while one is open');
    r4.abort();
    await dirty(p0, 4n);
    const r5 = collector.collect();
    assert.ok(r5.pages().includes(p2) && r5.pages().includes(p0), 'an aborted round merges with new writes');
    r5.commit();
    backend.dirty.stop();
  }),
];
