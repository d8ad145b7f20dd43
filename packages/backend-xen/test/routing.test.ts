/**
 * Claims, doorbells, page tracking and dirty reporting against recording stand-ins for the DM
 * calls (the real calls run in the lab): what reaches Xen, in which order, and what is refused.
 */
import { BadHandleError, ExistsError, InvalidError, RangeSet, UnsupportedError, addressRange, guestAddress, type RamRegion } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import { DoorbellTable } from '../src/ioreq/doorbells.js';
import { IoRouting, type RangeMapper } from '../src/ioreq/routing.js';
import { XenDirtyLog } from '../src/tracking/dirty.js';
import { PageTracker } from '../src/tracking/page-track.js';

function recorder(failOn?: (call: string) => boolean) {
  const calls: string[] = [];
  const hit = (c: string) => {
    if (failOn?.(c)) throw new ExistsError('xen.mapIoRange', `refused ${c}`, { errno: 'EEXIST' });
    calls.push(c);
  };
  const mapper: RangeMapper = {
    mapRange: (s, f, l) => hit(`map ${s} ${f.toString(16)}-${l.toString(16)}`),
    unmapRange: (s, f, l) => hit(`unmap ${s} ${f.toString(16)}-${l.toString(16)}`),
    mapPci: (s, b, d, f) => hit(`mappci ${s}:${b}:${d}.${f}`),
    unmapPci: (s, b, d, f) => hit(`unmappci ${s}:${b}:${d}.${f}`),
  };
  return { calls, mapper };
}

describe('IoRouting (claims)', () => {
  it('claims map inclusive ranges; dispose unmaps; overlap is Exists; zero length is Invalid', () => {
    const { calls, mapper } = recorder();
    const r = new IoRouting(mapper);
    const a = r.claim('mmio', addressRange(0xfebf_0000n, 0x1000n));
    const b = r.claim('pio', addressRange(0xc000, 0x20));
    expect(calls).toEqual(['map mmio febf0000-febf0fff', 'map pio c000-c01f']);
    expect(() => r.claim('mmio', addressRange(0xfebf_0800n, 0x1000n))).toThrow(ExistsError);
    expect(() => r.claim('mmio', { base: guestAddress(0x1000), length: 0n })).toThrow(InvalidError);
    expect(() => r.claim('pio', addressRange(0xfff0, 0x20))).toThrow(/port space/);
    expect(r.claims).toBe(2);
    a.dispose();
    a.dispose();
    b.dispose();
    expect(calls.slice(2)).toEqual(['unmap mmio febf0000-febf0fff', 'unmap pio c000-c01f']);
    expect(r.claims).toBe(0);
  });

  it('PCI functions: one claim each, Exists on a duplicate, bad addresses refused', () => {
    const { calls, mapper } = recorder();
    const r = new IoRouting(mapper);
    const c = r.claimPci({ bus: 0, device: 5, function: 0 });
    expect(c.space).toBe('pci');
    expect(() => r.claimPci({ segment: 0, bus: 0, device: 5, function: 0 })).toThrow(ExistsError);
    expect(() => r.claimPci({ bus: 0, device: 32, function: 0 })).toThrow(InvalidError);
    c.dispose();
    expect(calls).toEqual(['mappci 0:0:5.0', 'unmappci 0:0:5.0']);
  });

  it('a failed map leaves nothing mapped and nothing counted', () => {
    const { calls, mapper } = recorder((c) => c.startsWith('map mmio'));
    const r = new IoRouting(mapper);
    expect(() => r.claim('mmio', addressRange(0x1000, 0x1000))).toThrow(ExistsError);
    expect(r.claims).toBe(0);
    expect(calls).toEqual([]);
  });
});

describe('DoorbellTable', () => {
  it('a doorbell inside a claim maps nothing new; one outside routes its own bytes', () => {
    const { calls, mapper } = recorder();
    const r = new IoRouting(mapper);
    const t = new DoorbellTable(r);
    const claim = r.claim('mmio', addressRange(0xfebf_0000n, 0x1000n));
    const inside = t.register({ space: 'mmio', address: 0xfebf_0100n, length: 4 }, () => {});
    const outside = t.register({ space: 'pio', address: 0xcf0n, length: 2, datamatch: 1n }, () => {});
    expect(calls).toEqual(['map mmio febf0000-febf0fff', 'map pio cf0-cf1']);
    claim.dispose();
    // The claim goes, the doorbell keeps its 4 bytes mapped.
    expect(calls.slice(2)).toEqual(['unmap mmio febf0000-febf00ff', 'unmap mmio febf0104-febf0fff']);
    inside.dispose();
    outside.dispose();
    expect(calls.slice(4)).toEqual(['unmap mmio febf0100-febf0103', 'unmap pio cf0-cf1']);
    expect(t.count).toBe(0);
  });

  it('matching: exact address and width; datamatch compares the value', () => {
    const { mapper } = recorder();
    const t = new DoorbellTable(new IoRouting(mapper));
    let rings = 0;
    const bell = t.register({ space: 'mmio', address: 0x1000n, length: 4, datamatch: 7n }, (n) => (rings += n));
    expect(t.match('mmio', 0x1000n, 4, 7n)).toBe(bell);
    expect(t.match('mmio', 0x1000n, 4, 8n)).toBeUndefined();
    expect(t.match('mmio', 0x1000n, 2, 7n)).toBeUndefined();
    expect(t.match('pio', 0x1000n, 4, 7n)).toBeUndefined();
    t.match('mmio', 0x1000n, 4, 7n)?.ring();
    expect(rings).toBe(1);
    expect(bell.rings).toBe(1);
  });

  it('same match or any-value overlapping is Exists; different datamatch may share the address; length 0 is Unsupported', () => {
    const { mapper } = recorder();
    const t = new DoorbellTable(new IoRouting(mapper));
    t.register({ space: 'pio', address: 0x100n, length: 2, datamatch: 1n }, () => {});
    expect(() => t.register({ space: 'pio', address: 0x101n, length: 1, datamatch: 1n }, () => {})).toThrow(ExistsError);
    expect(() => t.register({ space: 'pio', address: 0x100n, length: 2, datamatch: 2n }, () => {})).not.toThrow();
    expect(() => t.register({ space: 'pio', address: 0x100n, length: 2 }, () => {})).toThrow(ExistsError);
    t.register({ space: 'pio', address: 0x200n, length: 2 }, () => {});
    expect(() => t.register({ space: 'pio', address: 0x200n, length: 2, datamatch: 3n }, () => {})).toThrow(ExistsError);
    expect(() => t.register({ space: 'mmio', address: 0x100n, length: 0 }, () => {})).toThrow(UnsupportedError);
    expect(() => t.register({ space: 'pio', address: 0x100n, length: 1, datamatch: 0x100n }, () => {})).toThrow(/does not fit/);
    expect(() => t.register({ space: 'pio', address: 0xffffn, length: 2 }, () => {})).toThrow(/leaves/);
  });
});

const ram = new RangeSet<RamRegion>([{ base: guestAddress(0), length: 0x100000n }]);

describe('PageTracker', () => {
  function tracker() {
    const calls: string[] = [];
    const t = new PageTracker(ram, {
      claimType: (c) => calls.push(c ? 'claim' : 'release'),
      setType: (tracked, pfn, nr) => calls.push(`${tracked ? 'ioreq_server' : 'ram_rw'} ${pfn}+${nr}`),
    });
    return { t, calls };
  }

  it('the first track claims the type, each sets its frames, the last dispose releases it', () => {
    const { t, calls } = tracker();
    const a = t.track(addressRange(0x2000, 0x2000), () => 'apply');
    const b = t.track(addressRange(0x8000, 0x1000), () => 'drop');
    expect(t.find(0x3ffen)?.base).toBe(0x2000n);
    expect(t.find(0x4000n)).toBeUndefined();
    a.dispose();
    b.dispose();
    expect(calls).toEqual(['claim', 'ioreq_server 2+2', 'ioreq_server 8+1', 'ram_rw 2+2', 'ram_rw 8+1', 'release']);
    expect(t.count).toBe(0);
  });

  it('refuses unaligned, non-RAM and overlapping ranges before any call', () => {
    const { t, calls } = tracker();
    expect(() => t.track(addressRange(0x2001, 0x1000), () => 'apply')).toThrow(InvalidError);
    expect(() => t.track(addressRange(0x2000, 0x800), () => 'apply')).toThrow(InvalidError);
    expect(() => t.track(addressRange(0xff000, 0x2000), () => 'apply')).toThrow(/not in guest RAM/);
    t.track(addressRange(0x2000, 0x2000), () => 'apply');
    expect(() => t.track(addressRange(0x3000, 0x1000), () => 'apply')).toThrow(ExistsError);
    expect(calls).toEqual(['claim', 'ioreq_server 2+2']);
  });

  it('a failing set_mem_type on the first track releases the claimed type', () => {
    const calls: string[] = [];
    const t = new PageTracker(ram, {
      claimType: (c) => calls.push(c ? 'claim' : 'release'),
      setType: () => {
        throw new InvalidError('xen.setMemType', 'nope');
      },
    });
    expect(() => t.track(addressRange(0x2000, 0x1000), () => 'apply')).toThrow(/nope/);
    expect(calls).toEqual(['claim', 'release']);
    expect(t.count).toBe(0);
  });
});

describe('XenDirtyLog (push)', () => {
  it('push reports the frames a range touches; pull is Unsupported; closed is BadHandle', () => {
    const reports: Array<[bigint, number]> = [];
    const log = new XenDirtyLog(ram, (pfn, nr) => reports.push([pfn, nr]));
    expect(log.mode).toBe('push');
    log.push(addressRange(0x1ffe, 4)); // frames 1 and 2
    expect(reports).toEqual([[1n, 2]]);
    expect(() => log.pull()).toThrow(UnsupportedError);
    expect(() => log.push(addressRange(0xffff0, 0x20))).toThrow(/not in guest RAM/);
    log.start();
    expect(log.active).toBe(true);
    log.stop();
    expect(log.active).toBe(false);
    log.close();
    expect(() => log.start()).toThrow(BadHandleError);
  });
});
