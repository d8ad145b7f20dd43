/**
 * Property tests: any sequence of guest accesses (any offset in or near the BAR, any size,
 * any value) mixed with host and context events never makes a model throw, and its state
 * always saves, restores into a fresh device that then behaves identically, and refuses
 * corrupted streams without changing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import type { DeviceModel, RegionAccessSize } from '@vmed/core';
import { eduDevice, framebufferDevice, serialDevice } from '../src/index.js';
import type { EduDevice, SerialDevice } from '../src/index.js';
import { expectSameBytes, fakeContext, load, save } from './fake-context.js';
import type { FakeContext } from './fake-context.js';

const RAM_BASE = 0x100000n;
const RAM_SIZE = 0x4000;

type Access = { kind: 'read' | 'write'; bar: number; offset: number; size: RegionAccessSize; value: number };
type CtxOp = { kind: 'busMaster'; on: boolean } | { kind: 'mode'; mode: 'intx' | 'msi' };

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const size = fc.constantFrom<RegionAccessSize>(1, 2, 4);

/** Mostly aligned accesses to `offsets`, some anywhere in or just past a BAR of `barSize`, some to other BARs. */
function accessArb(
  offsets: readonly number[],
  barSize: number,
  values: fc.Arbitrary<number>,
  sizes: fc.Arbitrary<RegionAccessSize> = size,
): fc.Arbitrary<Access> {
  const kind = fc.constantFrom<'read' | 'write'>('read', 'write');
  const known = fc.record({ kind, bar: fc.constant(0), offset: fc.constantFrom(...offsets), size: sizes, value: values });
  const anywhere = fc.record({
    kind,
    bar: fc.integer({ min: 0, max: 6 }),
    offset: fc.integer({ min: -4, max: barSize + 8 }),
    size,
    value: u32,
  });
  return fc.oneof({ weight: 4, arbitrary: known }, { weight: 1, arbitrary: anywhere }).map((a) => ({
    ...a,
    // Most accesses are naturally aligned, as the core delivers them; the rest test the guard.
    offset: a.bar === 0 && a.offset >= 0 && a.offset % 3 !== 1 ? a.offset - (a.offset % a.size) : a.offset,
  }));
}

const ctxOpArb: fc.Arbitrary<CtxOp> = fc.oneof(
  fc.record({ kind: fc.constant('busMaster' as const), on: fc.boolean() }),
  fc.record({ kind: fc.constant('mode' as const), mode: fc.constantFrom<'intx' | 'msi'>('intx', 'msi') }),
);

/** Applies a guest access; returns what a read returned (writes return -1). */
function access(model: DeviceModel, a: Access): number {
  if (a.kind === 'read') return model.read(a.bar, a.offset, a.size);
  model.write(a.bar, a.offset, a.size, a.value);
  return -1;
}

function applyCtx(f: FakeContext, op: CtxOp): void {
  if (op.kind === 'busMaster') f.dma.busMaster = op.on;
  else f.irq.mode = op.mode;
}

/** Loads `bytes` into `model`; true when accepted, false when refused with Invalid (anything else fails). */
function tryLoad(model: DeviceModel, bytes: Uint8Array): boolean {
  try {
    load(model, bytes);
    return true;
  } catch (e) {
    if (!isVmedError(e, 'Invalid')) throw e;
    return false;
  }
}

// --- serial ------------------------------------------------------------------------------------

type SerialOp =
  | { kind: 'access'; a: Access }
  | { kind: 'receive'; bytes: number[] }
  | { kind: 'lines'; cts: boolean; dsr: boolean; ri: boolean; dcd: boolean }
  | { kind: 'reset' }
  | { kind: 'ctx'; op: CtxOp };

const serialOpArb: fc.Arbitrary<SerialOp> = fc.oneof(
  { weight: 8, arbitrary: accessArb([0, 1, 2, 3, 4, 5, 6, 7], 8, fc.oneof(u32, fc.integer({ min: 0, max: 0xff }))).map((a) => ({ kind: 'access' as const, a })) },
  { weight: 2, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 20 }).map((bytes) => ({ kind: 'receive' as const, bytes })) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('lines' as const), cts: fc.boolean(), dsr: fc.boolean(), ri: fc.boolean(), dcd: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
  { weight: 1, arbitrary: ctxOpArb.map((op) => ({ kind: 'ctx' as const, op })) },
);

function newSerial(): { f: FakeContext; dev: SerialDevice; out: number[] } {
  const f = fakeContext({ ramBase: RAM_BASE, ramSize: RAM_SIZE });
  const out: number[] = [];
  return { f, dev: serialDevice.create(f.ctx, { onTransmit: (b) => out.push(...b) }), out };
}

function runSerial(t: { f: FakeContext; dev: SerialDevice }, ops: readonly SerialOp[]): number[] {
  const reads: number[] = [];
  for (const op of ops) {
    switch (op.kind) {
      case 'access':
        reads.push(access(t.dev, op.a));
        break;
      case 'receive':
        t.dev.receive(op.bytes);
        break;
      case 'lines':
        t.dev.setModemLines(op);
        break;
      case 'reset':
        t.dev.reset();
        break;
      case 'ctx':
        applyCtx(t.f, op.op);
        break;
    }
  }
  return reads;
}

// --- edu ---------------------------------------------------------------------------------------

type EduOp = { kind: 'access'; a: Access } | { kind: 'reset' } | { kind: 'ctx'; op: CtxOp };

const EDU_OFFSETS = [0x00, 0x04, 0x08, 0x20, 0x24, 0x60, 0x64, 0x80, 0x84, 0x88, 0x8c, 0x90, 0x94, 0x98, 0x9c, 0xa0];
/** Values that make DMA interesting: buffer and RAM addresses, edges, counts, commands. */
const eduValue = fc.oneof(
  u32,
  fc.constantFrom(0, 1, 3, 5, 7, 0x40000, 0x40ff0, 0x40fff, 0x41000, 0x100000, 0x103ff0, 0x80000000, 0xfffffff0, 0xffffffff),
  fc.integer({ min: 0, max: 4200 }),
);
const eduOpArb: fc.Arbitrary<EduOp> = fc.oneof(
  {
    weight: 10,
    // edu serves only 4-byte accesses: mostly those, so that the registers really change.
    arbitrary: accessArb(EDU_OFFSETS, 1 << 20, eduValue, fc.oneof({ weight: 6, arbitrary: fc.constant<RegionAccessSize>(4) }, { weight: 1, arbitrary: size })).map(
      (a) => ({ kind: 'access' as const, a }),
    ),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
  { weight: 1, arbitrary: ctxOpArb.map((op) => ({ kind: 'ctx' as const, op })) },
);

function newEdu(): { f: FakeContext; dev: EduDevice } {
  const f = fakeContext({ ramBase: RAM_BASE, ramSize: RAM_SIZE });
  for (let i = 0; i < RAM_SIZE; i++) f.dma.ram[i] = (i * 13) & 0xff;
  return { f, dev: eduDevice.create(f.ctx, {}) };
}

function runEdu(t: { f: FakeContext; dev: EduDevice }, ops: readonly EduOp[]): number[] {
  const reads: number[] = [];
  for (const op of ops) {
    if (op.kind === 'access') reads.push(access(t.dev, op.a));
    else if (op.kind === 'reset') t.dev.reset();
    else applyCtx(t.f, op.op);
  }
  return reads;
}

/** A second context in the same guest situation: same RAM contents, bus mastering and mode. */
function copyContext(from: FakeContext, to: FakeContext): void {
  to.dma.ram.set(from.dma.ram);
  to.dma.busMaster = from.dma.busMaster;
  to.irq.mode = from.irq.mode;
}

// --- the properties ----------------------------------------------------------------------------

describe('serial: properties', () => {
  it('never throws, and its state restores into a fresh device that behaves the same', () => {
    fc.assert(
      fc.property(fc.array(serialOpArb, { maxLength: 60 }), fc.array(serialOpArb, { maxLength: 40 }), (before, after) => {
        const a = newSerial();
        runSerial(a, before);
        const bytes = save(a.dev);
        const b = newSerial();
        copyContext(a.f, b.f);
        load(b.dev, bytes);
        expectSameBytes(save(b.dev), bytes, 'restored state');
        // A restored device re-drives INTx from its loaded level. The original only drives the
        // line when its level changes, as the core's raise/lower do (and QEMU's devices): if
        // the guest switched MSI -> INTx after the last change, its line lags a condition
        // raised as an MSI (found by the serial property, seed 1045941396). Compare lines only when
        // the original's last raise/lower happened in INTx mode.
        const lastIn = a.f.irq.lastEventMode;
        if (a.f.irq.mode === 'intx' && (lastIn === undefined || lastIn === 'intx')) expect(b.f.irq.asserted).toBe(a.f.irq.asserted);
        a.out.length = 0;
        expect(runSerial(b, after)).toEqual(runSerial(a, after));
        expect(b.out).toEqual(a.out);
        expectSameBytes(save(b.dev), save(a.dev), 'state after the same accesses');
      }),
    );
  });

  it('refuses a truncated stream and stays unchanged', () => {
    fc.assert(
      fc.property(fc.array(serialOpArb, { maxLength: 40 }), fc.nat(), (ops, cut) => {
        const t = newSerial();
        runSerial(t, ops);
        const bytes = save(t.dev);
        const before = save(t.dev);
        expect(tryLoad(t.dev, bytes.subarray(0, cut % bytes.length))).toBe(false);
        expectSameBytes(save(t.dev), before);
      }),
    );
  });

  it('given another device’s state with a flipped bit, either refuses and stays unchanged, or takes exactly that state', () => {
    fc.assert(
      fc.property(fc.array(serialOpArb, { maxLength: 40 }), fc.array(serialOpArb, { maxLength: 40 }), fc.nat(), (ops, sourceOps, bit) => {
        const t = newSerial();
        runSerial(t, ops);
        const source = newSerial();
        runSerial(source, sourceOps);
        const before = save(t.dev);
        const flipped = save(source.dev);
        const i = bit % (flipped.length * 8);
        flipped[i >> 3] = (flipped[i >> 3] ?? 0) ^ (1 << (i & 7));
        if (tryLoad(t.dev, flipped)) expectSameBytes(save(t.dev), flipped, 'accepted state');
        else expectSameBytes(save(t.dev), before, 'refused: state');
      }),
      { numRuns: 300 },
    );
  });
});

describe('edu: properties', () => {
  it('never throws, and its state restores into a fresh device that behaves the same', () => {
    fc.assert(
      fc.property(fc.array(eduOpArb, { maxLength: 80 }), fc.array(eduOpArb, { maxLength: 40 }), (before, after) => {
        const a = newEdu();
        runEdu(a, before);
        const bytes = save(a.dev);
        const b = newEdu();
        copyContext(a.f, b.f);
        load(b.dev, bytes);
        expectSameBytes(save(b.dev), bytes, 'restored state');
        // A restored device re-drives INTx from its loaded level. The original only drives the
        // line when its level changes, as the core's raise/lower do (and QEMU's devices): if
        // the guest switched MSI -> INTx after the last change, its line lags a condition
        // raised as an MSI (found by the serial property, seed 1045941396). Compare lines only when
        // the original's last raise/lower happened in INTx mode.
        const lastIn = a.f.irq.lastEventMode;
        if (a.f.irq.mode === 'intx' && (lastIn === undefined || lastIn === 'intx')) expect(b.f.irq.asserted).toBe(a.f.irq.asserted);
        expect(runEdu(b, after)).toEqual(runEdu(a, after));
        expectSameBytes(b.f.dma.ram, a.f.dma.ram, 'guest RAM');
        expectSameBytes(save(b.dev), save(a.dev), 'state after the same accesses');
      }),
    );
  });

  it('refuses a truncated stream and stays unchanged', () => {
    fc.assert(
      fc.property(fc.array(eduOpArb, { maxLength: 40 }), fc.nat(), (ops, cut) => {
        const t = newEdu();
        runEdu(t, ops);
        const before = save(t.dev);
        expect(tryLoad(t.dev, before.subarray(0, cut % before.length))).toBe(false);
        expectSameBytes(save(t.dev), before);
      }),
    );
  });

  it('given another device’s state with a flipped bit, either refuses and stays unchanged, or takes exactly that state', () => {
    // Most flips land in the register header (the buffer is 4 KiB of free-form data).
    const bitArb = fc.oneof(fc.integer({ min: 0, max: 46 * 8 - 1 }), fc.nat());
    fc.assert(
      fc.property(fc.array(eduOpArb, { maxLength: 40 }), fc.array(eduOpArb, { maxLength: 40 }), bitArb, (ops, sourceOps, bit) => {
        const t = newEdu();
        runEdu(t, ops);
        const source = newEdu();
        runEdu(source, sourceOps);
        const before = save(t.dev);
        const flipped = save(source.dev);
        const i = bit % (flipped.length * 8);
        flipped[i >> 3] = (flipped[i >> 3] ?? 0) ^ (1 << (i & 7));
        if (tryLoad(t.dev, flipped)) expectSameBytes(save(t.dev), flipped, 'accepted state');
        else expectSameBytes(save(t.dev), before, 'refused: state');
      }),
      { numRuns: 300 },
    );
  });
});

describe('framebuffer: properties', () => {
  it('never throws, and its state restores into a fresh device with the same registers and picture', () => {
    const offsets = [0x00, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24];
    const fbValue = fc.oneof(u32, fc.integer({ min: 0, max: 300 }), fc.constantFrom(1, 0x34325258, 0x36314752));
    const sizes = fc.oneof({ weight: 6, arbitrary: fc.constant<RegionAccessSize>(4) }, { weight: 1, arbitrary: size });
    const accesses = accessArb(offsets, 0x1000, fbValue, sizes).map((a) => ({ ...a, bar: a.bar === 0 ? 2 : a.bar }));
    const make = () => {
      const f = fakeContext();
      const vram = new Uint8Array(0x10000);
      for (let i = 0; i < vram.length; i++) vram[i] = (i * 31) & 0xff;
      f.direct.set(0, vram);
      return framebufferDevice.create(f.ctx, { vramSize: 0x10000 });
    };
    const picture = (d: ReturnType<typeof make>) => (d.mode === undefined ? undefined : d.toPpm());
    fc.assert(
      fc.property(fc.array(accesses, { maxLength: 60 }), (ops) => {
        const a = make();
        for (const op of ops) access(a, op);
        const b = make();
        load(b, save(a));
        expectSameBytes(save(b), save(a));
        for (const off of offsets) expect(b.read(2, off, 4)).toBe(a.read(2, off, 4));
        expect(picture(b)).toEqual(picture(a));
      }),
    );
  });
});
