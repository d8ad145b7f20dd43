import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { edu, eduDevice, factorial32 } from '../src/index.js';
import { expectSameBytes, fakeContext, load, save } from './fake-context.js';

const RAM_BASE = 0x100000n;
const RAM_SIZE = 0x10000;
const BUF = BigInt(edu.DMA_BUFFER_ADDRESS);

function setup() {
  const f = fakeContext({ ramBase: RAM_BASE, ramSize: RAM_SIZE });
  const dev = eduDevice.create(f.ctx, {});
  const r = (offset: number): number => dev.read(0, offset, 4);
  const w = (offset: number, value: number): void => dev.write(0, offset, 4, value);
  /** A 64-bit register as the core delivers an 8-byte write: two 4-byte halves, low first. */
  const w64 = (offset: number, value: bigint): void => {
    w(offset, Number(value & 0xffffffffn));
    w(offset + 4, Number((value >> 32n) & 0xffffffffn));
  };
  const r64 = (offset: number): bigint => BigInt(r(offset)) | (BigInt(r(offset + 4)) << 32n);
  /** Programs and starts a transfer. */
  const runDma = (src: bigint, dst: bigint, count: bigint, cmd: number): void => {
    w64(edu.EDU_DMA_SRC, src);
    w64(edu.EDU_DMA_DST, dst);
    w64(edu.EDU_DMA_COUNT, count);
    w(edu.EDU_DMA_CMD, cmd);
  };
  return { ...f, dev, r, w, w64, r64, runDma };
}

function fill(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + seed) & 0xff;
}

describe('edu: PCI function and device type', () => {
  it("has QEMU's identity and layout: 1234:11e8 rev 0x10, class 0x00ff00, 1 MiB MMIO BAR0, INTA, one MSI vector", () => {
    const { dev } = setup();
    const d = dev.definition;
    expect([d.vendorId, d.deviceId, d.revision, d.classCode]).toEqual([0x1234, 0x11e8, 0x10, 0x00ff00]);
    expect(d.bars).toEqual([{ kind: 'memory32', size: 1 << 20 }]);
    expect(d.interruptPin).toBe(1);
    expect(d.msi?.vectors).toBe(1);
    expect(eduDevice.type).toBe('edu');
    expect(eduDevice.maxInstances).toBeGreaterThan(0);
  });
});

describe('edu: registers', () => {
  it('identifies as version 1.0 and ignores writes to the ID', () => {
    const { r, w } = setup();
    expect(r(edu.EDU_ID)).toBe(0x010000ed);
    w(edu.EDU_ID, 0);
    expect(r(edu.EDU_ID)).toBe(0x010000ed);
  });

  it('answers the liveness check with the bitwise inverse', () => {
    const { r, w } = setup();
    expect(r(edu.EDU_LIVENESS)).toBe(0);
    w(edu.EDU_LIVENESS, 0x12345678);
    expect(r(edu.EDU_LIVENESS)).toBe(0xedcba987);
    w(edu.EDU_LIVENESS, 0);
    expect(r(edu.EDU_LIVENESS)).toBe(0xffffffff);
  });

  it('accepts only 4-byte accesses: other sizes read all-ones and write nothing', () => {
    const { dev, r } = setup();
    expect(dev.read(0, edu.EDU_ID, 1)).toBe(0xff);
    expect(dev.read(0, edu.EDU_ID, 2)).toBe(0xffff);
    dev.write(0, edu.EDU_LIVENESS, 2, 0x1234);
    dev.write(0, edu.EDU_LIVENESS, 1, 0x12);
    expect(r(edu.EDU_LIVENESS)).toBe(0);
  });

  it('reads all-ones at write-only, unknown, misaligned and out-of-BAR offsets', () => {
    const { dev, r } = setup();
    for (const off of [edu.EDU_IRQ_RAISE, edu.EDU_IRQ_ACK, 0x0c, 0x28, 0x100, 0x40000, 0xffffc]) {
      expect(r(off), `offset ${off.toString(16)}`).toBe(0xffffffff);
    }
    expect(dev.read(0, 0x02, 4)).toBe(0xffffffff);
    expect(dev.read(0, 1 << 20, 4)).toBe(0xffffffff);
    expect(dev.read(1, 0, 4)).toBe(0xffffffff);
    dev.write(1, edu.EDU_LIVENESS, 4, 1);
    dev.write(0, (1 << 20) + 4, 4, 1);
    expect(r(edu.EDU_LIVENESS)).toBe(0);
  });

  it('keeps each 64-bit DMA register as two independent 32-bit halves', () => {
    const { r, w, w64, r64 } = setup();
    for (const reg of [edu.EDU_DMA_SRC, edu.EDU_DMA_DST, edu.EDU_DMA_COUNT]) {
      w64(reg, 0x1122334455667788n);
      expect(r64(reg)).toBe(0x1122334455667788n);
      w(reg, 0xaabbccdd); // low half only
      expect(r64(reg)).toBe(0x11223344aabbccddn);
      w(reg + 4, 0); // high half only
      expect(r64(reg)).toBe(0xaabbccddn);
    }
    expect(r(edu.EDU_DMA_CMD + 4)).toBe(0);
  });
});

describe('edu: factorial', () => {
  it('computes n! modulo 2^32, like QEMU’s 32-bit loop', () => {
    for (let n = 0; n <= 40; n++) {
      let f = 1n;
      for (let i = 2n; i <= BigInt(n); i++) f *= i;
      expect(factorial32(n), `${n}!`).toBe(Number(f % (1n << 32n)));
    }
    expect(factorial32(0xffffffff)).toBe(0);
  });

  it('puts the result in the register on the write and never leaves "computing" set', () => {
    const { dev, r, w } = setup();
    w(edu.EDU_FACTORIAL, 5);
    expect(r(edu.EDU_STATUS) & edu.STATUS_COMPUTING).toBe(0);
    expect(r(edu.EDU_FACTORIAL)).toBe(120);
    w(edu.EDU_FACTORIAL, 13);
    expect(r(edu.EDU_FACTORIAL)).toBe(1932053504); // 6227020800 mod 2^32
    w(edu.EDU_FACTORIAL, 0xffffffff);
    expect(r(edu.EDU_FACTORIAL)).toBe(0);
    expect(dev.stats().factorialsComputed).toBe(3);
  });

  it('keeps status bit 7 and treats bit 0 as read-only', () => {
    const { r, w } = setup();
    w(edu.EDU_STATUS, 0x81);
    expect(r(edu.EDU_STATUS)).toBe(0x80);
    w(edu.EDU_STATUS, 0x01);
    expect(r(edu.EDU_STATUS)).toBe(0);
  });

  it('raises interrupt status bit 0 after a factorial only when status bit 7 is set', () => {
    const { irq, r, w } = setup();
    w(edu.EDU_FACTORIAL, 3);
    expect(irq.events).toEqual([]);
    expect(r(edu.EDU_IRQ_STATUS)).toBe(0);
    w(edu.EDU_STATUS, edu.STATUS_IRQ_FACTORIAL);
    w(edu.EDU_FACTORIAL, 4);
    expect(r(edu.EDU_FACTORIAL)).toBe(24);
    expect(r(edu.EDU_IRQ_STATUS)).toBe(edu.IRQ_FACTORIAL);
    expect(irq.asserted).toBe(true);
  });
});

describe('edu: interrupt raise and acknowledge', () => {
  it('ORs raised values into the status and holds INTx until all are acknowledged', () => {
    const { irq, r, w } = setup();
    w(edu.EDU_IRQ_RAISE, 0x10);
    w(edu.EDU_IRQ_RAISE, 0x01);
    expect(r(edu.EDU_IRQ_STATUS)).toBe(0x11);
    expect(irq.asserted).toBe(true);
    w(edu.EDU_IRQ_ACK, 0x10);
    expect(r(edu.EDU_IRQ_STATUS)).toBe(0x01);
    expect(irq.asserted).toBe(true);
    w(edu.EDU_IRQ_ACK, 0xffffffff);
    expect(r(edu.EDU_IRQ_STATUS)).toBe(0);
    expect(irq.asserted).toBe(false);
    expect(irq.events).toEqual(['raise', 'raise', 'lower']);
  });

  it('does not signal when raising 0 with nothing pending', () => {
    const { irq, w } = setup();
    w(edu.EDU_IRQ_RAISE, 0);
    expect(irq.events).toEqual([]);
  });

  it('sends one MSI message per raise when the guest picked MSI', () => {
    const { irq, w } = setup();
    irq.mode = 'msi';
    w(edu.EDU_IRQ_RAISE, 1);
    w(edu.EDU_IRQ_RAISE, 2);
    expect(irq.messages).toBe(2);
  });
});

describe('edu: DMA', () => {
  it('copies guest RAM into the buffer (direction 0) and reports completion', () => {
    const { dev, dma: ram, r, runDma } = setup();
    fill(ram.ram.subarray(0x100, 0x100 + 100), 3);
    runDma(RAM_BASE + 0x100n, BUF + 8n, 100n, edu.DMA_CMD_START);
    expect(r(edu.EDU_DMA_CMD)).toBe(0); // start bit clear: done
    expect(dev.peekDmaBuffer().subarray(8, 108)).toEqual(ram.ram.subarray(0x100, 0x100 + 100));
    expect(dev.peekDmaBuffer()[7]).toBe(0);
    expect(dev.peekDmaBuffer()[108]).toBe(0);
    expect(dev.stats()).toMatchObject({ dmaTransfers: 1, dmaBytesToDevice: 100, dmaBytesToRam: 0 });
  });

  it('copies the buffer to guest RAM (direction 1) — the spec’s round trip', () => {
    const { dev, dma: ram, r, runDma } = setup();
    fill(ram.ram.subarray(0, 100), 9);
    runDma(RAM_BASE, BUF, 100n, edu.DMA_CMD_START);
    runDma(BUF, RAM_BASE + 100n, 100n, edu.DMA_CMD_START | edu.DMA_CMD_TO_RAM);
    expect(r(edu.EDU_DMA_CMD)).toBe(edu.DMA_CMD_TO_RAM);
    expect(ram.ram.subarray(100, 200)).toEqual(ram.ram.subarray(0, 100));
    expect(ram.ram[200]).toBe(0);
    expect(dev.stats()).toMatchObject({ dmaTransfers: 2, dmaBytesToDevice: 100, dmaBytesToRam: 100 });
  });

  it('moves the whole 4 KiB buffer', () => {
    const { dev, dma: ram, runDma } = setup();
    fill(ram.ram.subarray(0, 4096), 1);
    runDma(RAM_BASE, BUF, 4096n, edu.DMA_CMD_START);
    expectSameBytes(dev.peekDmaBuffer(), ram.ram.subarray(0, 4096));
    runDma(BUF + 4095n, RAM_BASE + 0x8000n, 1n, edu.DMA_CMD_START | edu.DMA_CMD_TO_RAM);
    expect(ram.ram[0x8000]).toBe(ram.ram[4095]);
  });

  it('raises interrupt 0x100 when the command asks for it', () => {
    const { irq, r, runDma } = setup();
    runDma(RAM_BASE, BUF, 4n, edu.DMA_CMD_START);
    expect(irq.events).toEqual([]);
    runDma(RAM_BASE, BUF, 4n, edu.DMA_CMD_START | edu.DMA_CMD_IRQ);
    expect(r(edu.EDU_IRQ_STATUS)).toBe(edu.IRQ_DMA);
    expect(irq.asserted).toBe(true);
  });

  it('ignores a command without the start bit', () => {
    const { dma: ram, r, w, runDma } = setup();
    ram.ram[0] = 0xaa;
    runDma(RAM_BASE, BUF, 1n, edu.DMA_CMD_TO_RAM | edu.DMA_CMD_IRQ); // no start bit
    expect(ram.calls).toEqual([]);
    expect(r(edu.EDU_DMA_CMD)).toBe(0);
    w(edu.EDU_DMA_CMD, 0x7ffffff8 | edu.DMA_CMD_START); // undefined bits are not kept
    expect(r(edu.EDU_DMA_CMD)).toBe(0);
  });

  it('does an empty transfer for count 0 without touching guest memory', () => {
    const { dev, dma: ram, r, runDma } = setup();
    runDma(0xffffffffffffffffn, BUF + 0xfffn, 0n, edu.DMA_CMD_START);
    expect(r(edu.EDU_DMA_CMD)).toBe(0);
    expect(r(edu.EDU_DMA_ERROR)).toBe(edu.DMA_ERROR_NONE);
    expect(ram.calls).toEqual([]);
    expect(dev.stats()).toMatchObject({ dmaTransfers: 1, dmaErrors: 0 });
  });
});

describe('edu: hostile DMA', () => {
  /**
   * Runs one transfer with a known buffer and RAM, and checks it failed with `code`, moved
   * no byte in either direction, and raised interrupt 0x100 only because it was asked to.
   */
  function expectDmaError(
    program: { src: bigint; dst: bigint; count: bigint; toRam: boolean },
    code: number,
    prepare?: (t: ReturnType<typeof setup>) => void,
  ): ReturnType<typeof setup> {
    for (const withIrq of [false, true]) {
      const t = setup();
      fill(t.dma.ram, 5);
      t.dma.ram[0] = 0xaa; // buffer byte 0 is 0xaa after this warm-up transfer
      t.runDma(RAM_BASE, BUF, 1n, edu.DMA_CMD_START);
      prepare?.(t);
      const ramBefore = t.dma.ram.slice();
      const bufferBefore = t.dev.peekDmaBuffer();
      t.irq.take();
      const cmd = edu.DMA_CMD_START | (program.toRam ? edu.DMA_CMD_TO_RAM : 0) | (withIrq ? edu.DMA_CMD_IRQ : 0);
      t.runDma(program.src, program.dst, program.count, cmd);
      const expectedCmd = ((program.toRam ? edu.DMA_CMD_TO_RAM : 0) | (withIrq ? edu.DMA_CMD_IRQ : 0) | edu.DMA_CMD_ERROR) >>> 0;
      expect(t.r(edu.EDU_DMA_CMD)).toBe(expectedCmd);
      expect(t.r(edu.EDU_DMA_ERROR)).toBe(code);
      expectSameBytes(t.dma.ram, ramBefore, 'guest RAM');
      expectSameBytes(t.dev.peekDmaBuffer(), bufferBefore, 'DMA buffer');
      expect(t.r(edu.EDU_IRQ_STATUS)).toBe(withIrq ? edu.IRQ_DMA : 0);
      expect(t.irq.events).toEqual(withIrq ? ['raise'] : []);
      expect(t.dev.stats().dmaErrors).toBe(1);
      if (withIrq) return t;
    }
    throw new Error('unreachable');
  }

  const toDevice = (src: bigint, dst: bigint, count: bigint) => ({ src, dst, count, toRam: false });
  const toRam = (src: bigint, dst: bigint, count: bigint) => ({ src, dst, count, toRam: true });

  it.each([
    ['below the buffer', toDevice(RAM_BASE, BUF - 1n, 1n)],
    ['at the buffer end', toDevice(RAM_BASE, BUF + 4096n, 1n)],
    ['far above (2^63)', toDevice(RAM_BASE, 1n << 63n, 1n)],
    ['count overrunning the buffer', toDevice(RAM_BASE, BUF + 0xff0n, 0x11n)],
    ['count 4097', toDevice(RAM_BASE, BUF, 4097n)],
    ['a huge count (2^64 - 1)', toDevice(RAM_BASE, BUF, 0xffffffffffffffffn)],
    ['a count that wraps the device address past 2^64', toDevice(RAM_BASE, BUF + 0x10n, (1n << 64n) - 0x10n)],
    ['source outside the buffer (to RAM)', toRam(BUF - 0x1000n, RAM_BASE, 16n)],
    ['source overrun (to RAM)', toRam(BUF + 0xfffn, RAM_BASE, 2n)],
    ['count 0 outside the buffer', toDevice(RAM_BASE, BUF + 4096n, 0n)],
  ])('refuses a device-side range %s', (_name, program) => {
    const t = expectDmaError(program, edu.DMA_ERROR_DEVICE_RANGE);
    expect(t.dma.calls.slice(1)).toEqual([]); // the core was never asked
  });

  it('refuses a guest range that wraps past 2^64 before asking the core', () => {
    const t = expectDmaError(toDevice(0xfffffffffffffff0n, BUF, 32n), edu.DMA_ERROR_GUEST_WRAP);
    expect(t.dma.calls.slice(1)).toEqual([]);
    expectDmaError(toRam(BUF, 0xffffffffffffffffn, 2n), edu.DMA_ERROR_GUEST_WRAP);
  });

  it.each([
    ['below guest RAM', toDevice(RAM_BASE - 1n, BUF, 4n)],
    ['straddling the end of guest RAM', toDevice(RAM_BASE + BigInt(RAM_SIZE) - 2n, BUF, 4n)],
    ['beyond guest RAM (to RAM)', toRam(BUF, RAM_BASE + BigInt(RAM_SIZE), 1n)],
    ['at the top of the address space', toRam(BUF, 0xfffffffffffffff0n, 16n)],
  ])('turns the core refusing a guest range %s into a DMA error', (_name, program) => {
    const t = expectDmaError(program, edu.DMA_ERROR_GUEST_REFUSED);
    expect(t.dma.calls.length).toBe(2); // the warm-up and the refused one
  });

  it('turns "bus mastering off" into a DMA error in both directions', () => {
    const off = (t: ReturnType<typeof setup>): void => {
      t.dma.busMaster = false;
    };
    expectDmaError(toDevice(RAM_BASE, BUF, 16n), edu.DMA_ERROR_GUEST_REFUSED, off);
    expectDmaError(toRam(BUF, RAM_BASE, 16n), edu.DMA_ERROR_GUEST_REFUSED, off);
  });

  it('clears the error on the next good command', () => {
    const t = expectDmaError(toDevice(RAM_BASE, BUF + 4096n, 1n), edu.DMA_ERROR_DEVICE_RANGE);
    t.runDma(RAM_BASE, BUF, 1n, edu.DMA_CMD_START);
    expect(t.r(edu.EDU_DMA_CMD)).toBe(0);
    expect(t.r(edu.EDU_DMA_ERROR)).toBe(edu.DMA_ERROR_NONE);
  });

  it('lets an error that is not a VmedError surface (a bug, not a guest fault)', () => {
    const t = setup();
    t.dma.read = () => {
      throw new TypeError('core bug');
    };
    expect(() => t.runDma(RAM_BASE, BUF, 1n, edu.DMA_CMD_START)).toThrow(TypeError);
  });
});

describe('edu: reset', () => {
  it('returns to power-on state and lowers the line', () => {
    const { dev, irq, r, w, dma: ram, runDma } = setup();
    fill(ram.ram, 1);
    w(edu.EDU_LIVENESS, 1);
    w(edu.EDU_STATUS, 0x80);
    w(edu.EDU_FACTORIAL, 6);
    runDma(RAM_BASE, BUF, 64n, edu.DMA_CMD_START | edu.DMA_CMD_IRQ);
    expect(irq.asserted).toBe(true);
    dev.reset();
    expect(irq.asserted).toBe(false);
    for (const off of [edu.EDU_LIVENESS, edu.EDU_FACTORIAL, edu.EDU_STATUS, edu.EDU_IRQ_STATUS, edu.EDU_DMA_CMD, edu.EDU_DMA_COUNT]) {
      expect(r(off), `offset ${off.toString(16)}`).toBe(0);
    }
    expectSameBytes(dev.peekDmaBuffer(), new Uint8Array(4096));
  });
});

/** A device with every register and the buffer holding something. */
function busyDevice() {
  const t = setup();
  fill(t.dma.ram, 11);
  t.w(edu.EDU_LIVENESS, 0x0badf00d);
  t.w(edu.EDU_STATUS, 0x80);
  t.w(edu.EDU_FACTORIAL, 10);
  t.runDma(RAM_BASE, BUF + 16n, 2000n, edu.DMA_CMD_START);
  t.runDma(RAM_BASE, BUF + 4096n, 1n, edu.DMA_CMD_START | edu.DMA_CMD_TO_RAM | edu.DMA_CMD_IRQ); // an error
  t.w(edu.EDU_IRQ_RAISE, 0x40000000);
  return t;
}

describe('edu: save and load', () => {
  it('round-trips registers, the error, interrupt status and the DMA buffer', () => {
    const a = busyDevice();
    const bytes = save(a.dev);
    const b = setup();
    load(b.dev, bytes);
    expectSameBytes(save(b.dev), bytes, 'state');
    for (const off of [0x00, 0x04, 0x08, 0x20, 0x24, 0x80, 0x84, 0x88, 0x8c, 0x90, 0x94, 0x98, 0xa0]) {
      expect(b.r(off), `offset ${off.toString(16)}`).toBe(a.r(off));
    }
    expectSameBytes(b.dev.peekDmaBuffer(), a.dev.peekDmaBuffer());
    expect(b.irq.asserted).toBe(true); // INTx re-driven to the loaded level
  });

  it('re-drives INTx low for a quiet state and sends no MSI on load', () => {
    const a = busyDevice();
    const b = setup();
    b.irq.mode = 'msi';
    load(b.dev, save(a.dev));
    expect(b.irq.messages).toBe(0);
    const c = busyDevice();
    load(c.dev, save(setup().dev));
    expect(c.irq.asserted).toBe(false);
  });

  function expectRefused(bytes: Uint8Array, version = 1): void {
    const t = busyDevice();
    const before = save(t.dev);
    let error: unknown;
    try {
      load(t.dev, bytes, version);
    } catch (e) {
      error = e;
    }
    expect(isVmedError(error, 'Invalid'), String(error)).toBe(true);
    expectSameBytes(save(t.dev), before, 'state');
  }

  it('refuses truncated streams and stays unchanged', () => {
    const bytes = save(setup().dev);
    const cuts = [0, 1, 4, 8, 9, 12, 13, 20, 36, 40, 41, 42, 45, 46, 100, bytes.length - 1];
    for (const n of cuts) expectRefused(bytes.subarray(0, n));
  });

  it('refuses impossible values and stays unchanged', () => {
    const good = save(setup().dev);
    const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    const patch = (f: (v: DataView) => void): Uint8Array => {
      const b = good.slice();
      f(view(b));
      return b;
    };
    expectRefused(patch((v) => v.setUint8(8, 2))); // irqAfterFactorial not a boolean
    expectRefused(patch((v) => v.setUint32(37, edu.DMA_CMD_START, true))); // a transfer in flight
    expectRefused(patch((v) => v.setUint32(37, 0x8, true))); // undefined command bit
    expectRefused(patch((v) => v.setUint8(41, 4))); // unknown error code
    expectRefused(patch((v) => v.setUint8(41, 1))); // error code without command bit 31
    expectRefused(patch((v) => v.setUint32(37, edu.DMA_CMD_ERROR, true))); // bit 31 without a code
    expectRefused(patch((v) => v.setUint32(42, 4097, true))); // buffer too long
    const short = new Uint8Array([...good.subarray(0, 42), 0xff, 0x0f, 0, 0, ...new Uint8Array(4095)]);
    expectRefused(short); // buffer of 4095 bytes
    expectRefused(new Uint8Array([...good, 0])); // a trailing byte
  });

  it('refuses unknown state versions', () => {
    const bytes = save(setup().dev);
    expectRefused(bytes, 2);
    expectRefused(bytes, 0);
    expectRefused(bytes, 1.5);
  });
});
