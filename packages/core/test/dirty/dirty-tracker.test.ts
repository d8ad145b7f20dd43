import { describe, expect, it } from 'vitest';
import type { DirtyBitmap, DirtyLog } from '../../src/backend/tracking.js';
import { DirtyTracker } from '../../src/dirty/dirty-tracker.js';
import { isVmedError } from '../../src/errors.js';
import { fakeMemory } from '../helpers/fake-memory.js';

function pullLog(pending: () => DirtyBitmap[]): DirtyLog & { pushed: unknown[] } {
  return {
    mode: 'pull', active: true, pushed: [],
    start() {}, stop() {},
    pull: pending,
    push(r) { this.pushed.push(r); },
  };
}

describe('DirtyTracker', () => {
  const mem = fakeMemory([[0, 0x10000], [0x100000, 0x4000]]);

  it('marks every page a device write touches, across regions', () => {
    const t = new DirtyTracker(mem.ram, undefined);
    t.markDeviceWrite(0x0ffen, 4); // pages 0x0 and 0x1000
    t.markDeviceWrite(0x101000n, 1);
    expect(t.collect().pages()).toEqual([0x0n, 0x1000n, 0x101000n]);
  });

  it('ORs the pulled hypervisor log into the device bits, and commit forgets them', () => {
    let once = true;
    const log = pullLog(() => {
      if (!once) return [];
      once = false;
      const bits = new Uint32Array(1);
      bits[0] = 0b100; // page 2
      return [{ base: 0n, pages: 16, bits }];
    });
    const t = new DirtyTracker(mem.ram, log);
    t.markDeviceWrite(0x3000n, 8);
    const c = t.collect();
    expect(c.pages()).toEqual([0x2000n, 0x3000n]);
    c.commit();
    expect(t.collect().pages()).toEqual([]);
  });

  it('an aborted collection loses no bits, including the ones pulled from the hypervisor', () => {
    let once = true;
    const log = pullLog(() => {
      if (!once) return [];
      once = false;
      const bits = new Uint32Array(1);
      bits[0] = 1 << 5;
      return [{ base: 0n, pages: 16, bits }];
    });
    const t = new DirtyTracker(mem.ram, log);
    t.markDeviceWrite(0x100000n, 1);
    const first = t.collect();
    expect(first.pages()).toEqual([0x5000n, 0x100000n]);
    first.abort();
    // The hypervisor's log was cleared by the first pull; the bits must come back from ours.
    expect(t.collect().pages()).toEqual([0x5000n, 0x100000n]);
  });

  it('refuses a second collection while one is open, and double settle', () => {
    const t = new DirtyTracker(mem.ram, undefined);
    const c = t.collect();
    expect(() => t.collect()).toThrow(expect.objectContaining({ code: 'State' }));
    c.commit();
    try {
      c.abort();
      expect.unreachable();
    } catch (e) {
      expect(isVmedError(e, 'State')).toBe(true);
    }
  });

  it('push mode forwards device writes to the hypervisor while active', () => {
    const log: DirtyLog & { pushed: Array<{ base: bigint; length: bigint }> } = {
      mode: 'push', active: true, pushed: [], start() {}, stop() {},
      pull() { throw new Error('not in push mode'); },
      push(r) { this.pushed.push(r); },
    };
    const t = new DirtyTracker(mem.ram, log);
    t.markDeviceWrite(0x2000n, 0x1800);
    expect(log.pushed).toEqual([{ base: 0x2000n, length: 0x1800n }]);
    expect(t.collect().pages()).toEqual([0x2000n, 0x3000n]);
  });
});
