import { describe, expect, it } from 'vitest';
import { DeviceDmaEngine, DmaError, MAX_DMA_TRANSFER } from '../../src/device/dma.js';
import { DirtyTracker } from '../../src/dirty/dirty-tracker.js';
import { fakeMemory } from '../helpers/fake-memory.js';

function setup(busMaster = true) {
  const mem = fakeMemory([[0, 0x10000]]);
  const dirty = new DirtyTracker(mem.ram, undefined);
  let bm = busMaster;
  const dma = new DeviceDmaEngine(mem, dirty, () => bm);
  return { mem, dirty, dma, setBusMaster: (v: boolean) => (bm = v) };
}

describe('DeviceDmaEngine', () => {
  it('moves bytes both ways and marks written pages dirty', () => {
    const { mem, dirty, dma } = setup();
    dma.write(0x1ffen, Uint8Array.of(1, 2, 3, 4));
    expect([...mem.bytesAt(0x1ffen, 4)]).toEqual([1, 2, 3, 4]);
    expect([...dma.read(0x1fffn, 2)]).toEqual([2, 3]);
    expect(dirty.collect().pages()).toEqual([0x1000n, 0x2000n]);
    expect(dma.stats).toMatchObject({ bytesRead: 2, bytesWritten: 4 });
  });

  it('refuses every transfer while bus mastering is off, before touching memory', () => {
    const { mem, dma, setBusMaster } = setup(false);
    expect(() => dma.write(0n, Uint8Array.of(9))).toThrow(DmaError);
    expect(mem.bytesAt(0n, 1)[0]).toBe(0);
    expect(() => dma.read(0n, 1)).toThrow(expect.objectContaining({ code: 'State' }));
    setBusMaster(true);
    dma.write(0n, Uint8Array.of(9));
    expect(mem.bytesAt(0n, 1)[0]).toBe(9);
  });

  it('refuses hostile ranges: outside RAM, wrapping past 2^64, huge and negative lengths', () => {
    const { dma, dirty } = setup();
    expect(() => dma.read(0xffffn, 2)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => dma.read((1n << 64n) - 2n, 4)).toThrow(/2\^64/);
    expect(() => dma.read(0n, MAX_DMA_TRANSFER + 1)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => dma.read(0n, -1)).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => dma.write(0xfff0n, new Uint8Array(0x20))).toThrow(DmaError);
    expect(dirty.collect().pages()).toEqual([]);
    expect(dma.stats.refused).toBe(5);
  });

  it('a zero-length transfer is allowed and moves nothing', () => {
    const { dma } = setup();
    expect(dma.read(0x10n, 0)).toHaveLength(0);
  });

  it('a writable view marks its range dirty when released, once', () => {
    const { dma, dirty, mem } = setup();
    const v = dma.view(0x4000n, 0x2000, 'readwrite');
    v.bytes.fill(7);
    expect(dirty.pendingDevicePages()).toEqual([]);
    v.dispose();
    v.dispose();
    expect(dirty.pendingDevicePages()).toEqual([0x4000n, 0x5000n]);
    expect(mem.bytesAt(0x5fffn, 1)[0]).toBe(7);
    expect(dma.stats.bytesWritten).toBe(0x2000);
  });
});
