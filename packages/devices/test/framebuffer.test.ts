import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { framebuffer, framebufferDevice } from '../src/index.js';
import { expectSameBytes, fakeContext, load, save } from './fake-context.js';

const VRAM = 0x10000;
const CTRL = 2;

function setup(options: Parameters<typeof framebufferDevice.create>[1] = {}) {
  const f = fakeContext();
  const vram = new Uint8Array(options?.vramSize ?? VRAM);
  f.direct.set(0, vram);
  const frames: number[] = [];
  const dev = framebufferDevice.create(f.ctx, { vramSize: VRAM, width: 4, height: 2, onFrame: (n) => frames.push(n), ...options });
  const r = (offset: number): number => dev.read(CTRL, offset, 4);
  const w = (offset: number, value: number): void => dev.write(CTRL, offset, 4, value);
  return { ...f, dev, vram, r, w, frames };
}

function ppmHeader(ppm: Uint8Array): string {
  return new TextDecoder().decode(ppm.subarray(0, ppm.indexOf(0x0a, ppm.indexOf(0x0a, 3) + 1) + 1));
}

describe('framebuffer: PCI function', () => {
  it('has direct pixel memory in BAR0 and trapped mode registers in BAR2', () => {
    const { dev } = setup();
    const d = dev.definition;
    expect([d.vendorId, d.deviceId, d.classCode]).toEqual([0x1234, 0x11f0, 0x038000]);
    expect(d.bars?.[0]).toEqual({ kind: 'memory32', size: VRAM, prefetchable: true, backing: 'direct' });
    expect(d.bars?.[2]).toEqual({ kind: 'memory32', size: 0x1000 });
    expect(framebufferDevice.type).toBe('framebuffer');
  });

  it('refuses a bad pixel memory size or mode in the options', () => {
    const { ctx } = fakeContext();
    for (const options of [{ vramSize: 3 << 20 }, { vramSize: 4096 }, { width: 0 }, { height: 0x10000 }, { width: 1.5 }]) {
      expect(() => framebufferDevice.create(ctx, options), JSON.stringify(options)).toThrow(/framebuffer.create/);
    }
  });
});

describe('framebuffer: registers', () => {
  it('identifies itself and reports the pixel memory size', () => {
    const { r } = setup();
    expect(r(framebuffer.FB_ID)).toBe(0x62666d76);
    expect(r(framebuffer.FB_VRAM_SIZE)).toBe(VRAM);
  });

  it('keeps width and height in 16 bits and computes stride and status from the mode', () => {
    const { r, w } = setup();
    expect(r(framebuffer.FB_STATUS)).toBe(framebuffer.STATUS_MODE_VALID);
    w(framebuffer.FB_WIDTH, 0x10064);
    expect(r(framebuffer.FB_WIDTH)).toBe(100);
    expect(r(framebuffer.FB_STRIDE)).toBe(400);
    w(framebuffer.FB_FORMAT, framebuffer.FORMAT_RGB565);
    expect(r(framebuffer.FB_STRIDE)).toBe(200);
    w(framebuffer.FB_HEIGHT, 400); // 200 * 400 > 64 KiB: no longer fits
    expect(r(framebuffer.FB_STATUS)).toBe(0);
    w(framebuffer.FB_HEIGHT, 300);
    w(framebuffer.FB_ENABLE, 1);
    expect(r(framebuffer.FB_STATUS)).toBe(framebuffer.STATUS_MODE_VALID | framebuffer.STATUS_SCANNING_OUT);
    w(framebuffer.FB_FORMAT, 0x12345678); // unknown fourcc: kept, but invalid
    expect(r(framebuffer.FB_FORMAT)).toBe(0x12345678);
    expect(r(framebuffer.FB_STRIDE)).toBe(0);
    expect(r(framebuffer.FB_STATUS)).toBe(0);
  });

  it('counts flushed frames and tells the host', () => {
    const { dev, r, w, frames } = setup();
    w(framebuffer.FB_FLUSH, 0);
    w(framebuffer.FB_FLUSH, 0);
    expect(r(framebuffer.FB_FRAME_COUNT)).toBe(2);
    expect(frames).toEqual([1, 2]);
    expect(dev.frames).toBe(2);
  });

  it('reads all-ones and ignores writes for other BARs, sizes and offsets', () => {
    const { dev, r } = setup();
    expect(dev.read(0, 0, 4)).toBe(0xffffffff);
    expect(dev.read(CTRL, framebuffer.FB_ID, 2)).toBe(0xffff);
    expect(r(framebuffer.FB_FLUSH)).toBe(0xffffffff);
    expect(r(0xffc)).toBe(0xffffffff);
    dev.write(CTRL, framebuffer.FB_WIDTH, 2, 7);
    dev.write(0, framebuffer.FB_WIDTH, 4, 7);
    expect(r(framebuffer.FB_WIDTH)).toBe(4);
  });
});

describe('framebuffer: the host’s picture', () => {
  it('refuses a snapshot while scanout is off or the mode is invalid', () => {
    const { dev, w } = setup();
    expect(() => dev.toPpm()).toThrow(expect.objectContaining({ code: 'State' }));
    w(framebuffer.FB_ENABLE, 1);
    w(framebuffer.FB_WIDTH, 0);
    expect(dev.mode).toBeUndefined();
    expect(() => dev.snapshot()).toThrow(expect.objectContaining({ code: 'State' }));
  });

  it('renders XRGB8888 pixels as a P6 PPM', () => {
    const { dev, vram, w } = setup();
    w(framebuffer.FB_ENABLE, 1);
    // Row 0: red, green, blue, white; row 1: black, grey, (0x12,0x34,0x56), black.
    const px: Array<[number, number, number]> = [
      [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255],
      [0, 0, 0], [128, 128, 128], [0x12, 0x34, 0x56], [0, 0, 0],
    ];
    px.forEach(([rr, g, b], i) => vram.set([b, g, rr, 0xee], i * 4));
    const ppm = dev.toPpm();
    expect(ppmHeader(ppm)).toBe('P6\n4 2\n255\n');
    expect(Array.from(ppm.subarray(11))).toEqual(px.flat());
    expect(dev.mode).toEqual({ width: 4, height: 2, format: 'XRGB8888', stride: 16 });
  });

  it('renders RGB565 pixels, widening each channel to 8 bits', () => {
    const { dev, vram, w } = setup();
    w(framebuffer.FB_FORMAT, framebuffer.FORMAT_RGB565);
    w(framebuffer.FB_WIDTH, 3);
    w(framebuffer.FB_HEIGHT, 1);
    w(framebuffer.FB_ENABLE, 1);
    const dv = new DataView(vram.buffer);
    dv.setUint16(0, 0xf800, true); // red
    dv.setUint16(2, 0x07e0, true); // green
    dv.setUint16(4, (0b10000 << 11) | (0b100000 << 5) | 0b00001, true);
    const { rgb } = dev.snapshot();
    expect(Array.from(rgb)).toEqual([255, 0, 0, 0, 255, 0, 0x84, 0x82, 0x08]);
  });

  it('reads the pixel memory live: what the guest writes next is in the next picture', () => {
    const { dev, vram, w } = setup();
    w(framebuffer.FB_ENABLE, 1);
    const first = dev.snapshot().rgb.slice();
    vram[0] = 0x40; // blue of pixel 0
    expect(dev.snapshot().rgb[2]).toBe(0x40);
    expect(first[2]).toBe(0);
  });
});

describe('framebuffer: reset, save and load', () => {
  it('resets to the power-on mode with scanout off', () => {
    const { dev, r, w } = setup();
    w(framebuffer.FB_WIDTH, 9);
    w(framebuffer.FB_ENABLE, 1);
    w(framebuffer.FB_FLUSH, 0);
    dev.reset();
    expect([r(framebuffer.FB_WIDTH), r(framebuffer.FB_HEIGHT), r(framebuffer.FB_ENABLE), r(framebuffer.FB_FRAME_COUNT)]).toEqual([4, 2, 0, 0]);
  });

  it('round-trips the mode and refuses bad streams unchanged', () => {
    const a = setup();
    a.w(framebuffer.FB_WIDTH, 17);
    a.w(framebuffer.FB_FORMAT, framebuffer.FORMAT_RGB565);
    a.w(framebuffer.FB_ENABLE, 1);
    a.w(framebuffer.FB_FLUSH, 0);
    const bytes = save(a.dev);
    const b = setup();
    load(b.dev, bytes);
    expectSameBytes(save(b.dev), bytes);
    expect(b.dev.mode).toEqual(a.dev.mode);

    const before = save(b.dev);
    const bad = [
      bytes.subarray(0, bytes.length - 1),
      new Uint8Array([...bytes, 0]),
      (() => { const x = bytes.slice(); x[2] = 1; return x; })(), // width over 16 bits
      (() => { const x = bytes.slice(); x[12] = 2; return x; })(), // enabled not a boolean
    ];
    for (const stream of bad) {
      expect(() => load(b.dev, stream)).toThrow(expect.objectContaining({ code: 'Invalid' }));
      expectSameBytes(save(b.dev), before);
    }
    let error: unknown;
    try {
      load(b.dev, bytes, 2);
    } catch (e) {
      error = e;
    }
    expect(isVmedError(error, 'Invalid')).toBe(true);
  });
});
