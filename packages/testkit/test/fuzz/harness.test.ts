/**
 * The fuzzer's own checks must catch what they claim to: each test here plants a bug — a model
 * that DMAs where the guest never pointed it, a model that throws on guest input, a config
 * write that changes a read-only or RW1C bit the wrong way — and asserts that the matching
 * invariant reports it.
 */
import fc from 'fast-check';
import { PciFunction, type DeviceContext, type DeviceDefinition, type DeviceModel, type PciFunctionDefinition } from '@vmed/core';
import { eduDevice } from '@vmed/devices';
import { describe, expect, it } from 'vitest';
import { buildConfigOracle, judgeConfigWrite } from '../../src/fuzz/config-oracle.js';
import { deviceTarget, type DeviceSlotSpec } from '../../src/fuzz/device-harness.js';
import type { InvariantName } from '../../src/fuzz/types.js';

const SABOTEUR_FUNCTION: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0xbad0,
  classCode: 0xff0000,
  bars: [{ kind: 'memory32', size: 0x1000 }],
};

/** A model with one planted bug, chosen by `bug`. */
function saboteur(bug: 'wild-dma' | 'throws'): DeviceDefinition<never> {
  return {
    type: `saboteur-${bug}`,
    description: 'a model with a planted bug',
    maxInstances: 2,
    create(ctx: DeviceContext): DeviceModel {
      return {
        definition: SABOTEUR_FUNCTION,
        stateVersion: 1,
        read: () => 0,
        write(_bar, offset, size, value) {
          if (offset !== 0 || size !== 4) return;
          // Wild DMA: reads guest memory at whatever address was written, never programmed as a buffer.
          if (bug === 'wild-dma') {
            try {
              ctx.dma.read(BigInt(value >>> 0), 8);
            } catch {
              // refused: fine, the bug only shows when the address is RAM
            }
          } else if (value === 0) {
            throw new Error('planted: the model throws on a guest write of 0');
          }
        },
        reset() {},
        saveState() {},
        loadState() {},
      };
    },
  };
}

async function invariantsFound(slot: DeviceSlotSpec): Promise<Set<InvariantName>> {
  const target = deviceTarget({ name: 'saboteur', description: '', words: { min: 0, max: 0 }, devices: [slot], primary: 1, ops: ['bar', 'bar', 'bar', 'config'] });
  const found = new Set<InvariantName>();
  for (const program of fc.sample(fc.uint32Array({ minLength: 2000, maxLength: 2000 }), { numRuns: 20, seed: 42 })) {
    const outcome = await target.run(program, () => undefined, false);
    for (const v of outcome.violations) found.add(v.invariant);
  }
  return found;
}

describe('fuzz harness: planted bugs are caught', () => {
  it('a model reading guest memory it was never pointed at breaks dma-bounds', async () => {
    const found = await invariantsFound({ definition: saboteur('wild-dma'), slot: 3, barHints: { 0: [0] }, valueHints: [0x1000, 0x8000] });
    expect(found.has('dma-bounds')).toBe(true);
  });

  it('a model throwing on guest input is reported, though the core fences it', async () => {
    const found = await invariantsFound({ definition: saboteur('throws'), slot: 3, barHints: { 0: [0] } });
    expect(found.has('unexpected-throw')).toBe(true);
    expect(found.has('sink-throws')).toBe(false);
  });

  it('the reference edu device breaks none of them under the same programs', async () => {
    const found = await invariantsFound({ definition: eduDevice as DeviceDefinition<never>, slot: 3, barHints: { 0: [0x80, 0x88, 0x90, 0x98] } });
    expect([...found]).toEqual([]);
  });
});

describe('fuzz harness: the config oracle judges writes from the definition alone', () => {
  const fn = new PciFunction(eduDevice.create({} as DeviceContext).definition, {
    address: { bus: 0, device: 3, function: 0 },
    intxLine: 19,
    createMsiRoute: () => {
      throw new Error('no routes in this test');
    },
    createLineIrq: () => {
      throw new Error('no lines in this test');
    },
    onBarChange: () => {},
  });
  const image = fn.dumpConfig();
  const oracle = buildConfigOracle(fn.definition, image);

  it('accepts what the function really does with a command write', () => {
    const before = fn.dumpConfig();
    fn.configWrite(0x04, 2, 0x0007);
    expect(judgeConfigWrite(oracle, before, fn.dumpConfig(), { register: 0x04, bytes: [0x07, 0x00] })).toBeUndefined();
  });

  it('flags a vendor ID that changed on a write', () => {
    const after = image.slice();
    after[0x00] = 0x35;
    expect(judgeConfigWrite(oracle, image, after, { register: 0x00, bytes: [0x35] })?.invariant).toBe('config-read-only');
  });

  it('flags RW1C status bits set by a write, kept after a 1, or cleared by a 0', () => {
    const set = image.slice();
    set[0x07] = (set[0x07] ?? 0) | 0x20; // Received Master Abort
    expect(judgeConfigWrite(oracle, image, set, { register: 0x07, bytes: [0x20] })?.invariant).toBe('config-rw1c');
    expect(judgeConfigWrite(oracle, set, set, { register: 0x07, bytes: [0x20] })?.invariant).toBe('config-rw1c');
    expect(judgeConfigWrite(oracle, set, image, { register: 0x07, bytes: [0x00] })?.invariant).toBe('config-rw1c');
    expect(judgeConfigWrite(oracle, set, image, { register: 0x07, bytes: [0x20] })).toBeUndefined();
  });

  it('flags a byte outside the write that changed, and a BAR that sizes wrong', () => {
    const after = image.slice();
    after[0x3c] = 0x05;
    expect(judgeConfigWrite(oracle, image, after, { register: 0x04, bytes: [0x00] })?.invariant).toBe('config-untouched-bytes');
    // A BAR that ignores the all-ones probe (edu's 1 MiB BAR must then read 0xfff00000).
    expect(judgeConfigWrite(oracle, image, image, { register: 0x10, bytes: [0xff, 0xff, 0xff, 0xff] })?.invariant).toBe('bar-sizing');
    const sized = image.slice();
    sized.set([0x00, 0x00, 0xf0, 0xff], 0x10);
    expect(judgeConfigWrite(oracle, image, sized, { register: 0x10, bytes: [0xff, 0xff, 0xff, 0xff] })).toBeUndefined();
  });
});
