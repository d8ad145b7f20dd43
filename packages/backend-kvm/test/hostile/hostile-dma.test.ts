/**
 * Hostile DMA through the edu device on a real KVM guest. The guest (the testkit agent, two
 * vCPUs) writes edu's DMA registers with MMIO instructions: descriptors pointing outside RAM,
 * into the RAM hole, over the end of RAM, past 2^64, at MMIO (edu's own BAR, the LAPIC, the
 * ECAM window), with zero and huge counts, with bus mastering off, and rewritten by a second
 * vCPU while the first starts transfers. Each time the device must answer with its documented
 * error status (command bit 31 + register 0xa0), move no byte, and the guest must keep running.
 *
 * Behind the device's checks, the host mapping of guest RAM is surrounded by PROT_NONE guard
 * pages (`src/memory/guarded-ram.ts`): had any byte been copied past the end of RAM, this test
 * process would have died of SIGSEGV.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isVmedError, type MediatedDevice } from '@vmed/core';
import type { EduDevice } from '@vmed/devices';
import { edu, eduDevice } from '@vmed/devices';
import * as guests from '@vmed/testkit';
import { KVM_SKIP } from '../helpers/kvm.js';
import { AgentGuest, HOLE_LAYOUT_END, MiB, kvmMediator, until, type KvmMediator } from './helpers/agent-guest.js';

const EDU_SLOT = 4;
const bdf = { bus: 0, device: EDU_SLOT, function: 0 };
const SCRATCH = BigInt(guests.AGENT_SCRATCH_ADDR);
const BUFFER = BigInt(edu.DMA_BUFFER_ADDRESS);
const START = edu.DMA_CMD_START;
const TO_RAM = edu.DMA_CMD_TO_RAM;
const IRQ = edu.DMA_CMD_IRQ;
const U64_MAX = (1n << 64n) - 1n;
const DMA_VECTOR = 0x45;
/** Register values as the guest reads them: unsigned 32-bit. */
const u32 = (bits: number): number => bits >>> 0;

interface DmaOutcome {
  readonly cmd: number;
  readonly error: number;
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('hostile DMA through edu on KVM', () => {
  let kvm: KvmMediator | undefined;
  let agent: AgentGuest | undefined;
  let device: MediatedDevice;
  let model: EduDevice;
  let bar: bigint;

  beforeEach(async (ctx) => {
    ctx.skip(KVM_SKIP !== undefined, KVM_SKIP);
    kvm = await kvmMediator({ vcpus: 2, deviceTypes: [eduDevice] });
    device = kvm.mediator.create('edu', { slot: EDU_SLOT });
    device.open();
    model = device.model as EduDevice;
    agent = await AgentGuest.start(kvm.backend);
    // The guest's driver: memory decode and bus mastering on, BAR0 where firmware put it.
    await agent.cfgWrite(bdf, 0x04, 2, 0x6);
    bar = await agent.barAddress(bdf, 0);
    expect(Number(await agent.mmioRead(bar + BigInt(edu.EDU_ID)))).toBe(edu.EDU_ID_VALUE);
  });

  afterEach(async () => {
    if (agent !== undefined && agent.ended === undefined) {
      // A test that left the guest running stops it here; a finished one proved it ran on.
      await agent.abandon();
    }
    await kvm?.mediator.close();
    kvm = undefined;
    agent = undefined;
  });

  const reg = (offset: number): bigint => bar + BigInt(offset);

  async function write64(offset: number, value: bigint, vcpu = 0): Promise<void> {
    const a = agent as AgentGuest;
    await a.mmioWrite(reg(offset), value & 0xffff_ffffn, 4, vcpu);
    await a.mmioWrite(reg(offset + 4), (value >> 32n) & 0xffff_ffffn, 4, vcpu);
  }

  async function read64(offset: number): Promise<bigint> {
    const a = agent as AgentGuest;
    return (await a.mmioRead(reg(offset))) | ((await a.mmioRead(reg(offset + 4))) << 32n);
  }

  /** Programs a descriptor and starts it, all from vCPU 0, then reads the outcome as a driver would. */
  async function dma(src: bigint, dst: bigint, count: bigint, cmd: number): Promise<DmaOutcome> {
    await write64(edu.EDU_DMA_SRC, src);
    await write64(edu.EDU_DMA_DST, dst);
    await write64(edu.EDU_DMA_COUNT, count);
    await (agent as AgentGuest).mmioWrite(reg(edu.EDU_DMA_CMD), cmd);
    return outcome();
  }

  async function outcome(vcpu = 0): Promise<DmaOutcome> {
    const a = agent as AgentGuest;
    return { cmd: Number(await a.mmioRead(reg(edu.EDU_DMA_CMD), 4, vcpu)), error: Number(await a.mmioRead(reg(edu.EDU_DMA_ERROR), 4, vcpu)) };
  }

  /** Fills the device buffer with a pattern through a good DMA, so "nothing moved" is visible. */
  async function loadBuffer(seed: number): Promise<Uint8Array> {
    const pattern = guests.ramFillPattern(seed, edu.DMA_BUFFER_SIZE);
    kvm?.backend.memory.write(SCRATCH, pattern);
    expect(await dma(SCRATCH, BUFFER, BigInt(edu.DMA_BUFFER_SIZE), START)).toEqual({ cmd: 0, error: edu.DMA_ERROR_NONE });
    expect(model.peekDmaBuffer()).toEqual(pattern);
    return pattern;
  }

  function ramBytes(address: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    kvm?.backend.memory.read(address, out);
    return out;
  }

  it('refuses every hostile descriptor with its error status, moves nothing, and the guest runs on', async () => {
    const a = agent as AgentGuest;
    const k = kvm as KvmMediator;
    const pattern = await loadBuffer(0x31);
    // Canaries on the RAM side of each edge a descriptor straddles.
    const edges = [HOLE_LAYOUT_END - 32n, 4n * BigInt(MiB) - 32n, 8n * BigInt(MiB)];
    for (const e of edges) k.backend.memory.write(e, new Uint8Array(32).fill(0x5a));
    const guestBefore = await Promise.all(edges.map((e) => a.checksum(e, 32)));
    const moved = () => ({ ...device.dma.stats, refused: 0 });
    const movedBefore = moved();
    const eduBefore = model.stats();

    const hostile: Array<[what: string, guest: bigint, count: bigint, error: number]> = [
      ['outside guest RAM', 0x1000_0000n, 64n, edu.DMA_ERROR_GUEST_REFUSED],
      ['just past the end of RAM', HOLE_LAYOUT_END, 1n, edu.DMA_ERROR_GUEST_REFUSED],
      ['inside the RAM hole', 5n * BigInt(MiB), 64n, edu.DMA_ERROR_GUEST_REFUSED],
      ['over the end of RAM', HOLE_LAYOUT_END - 8n, 64n, edu.DMA_ERROR_GUEST_REFUSED],
      ['over the end of RAM by one byte', HOLE_LAYOUT_END - 4095n, 4096n, edu.DMA_ERROR_GUEST_REFUSED],
      ['from the first region into the hole', 4n * BigInt(MiB) - 16n, 64n, edu.DMA_ERROR_GUEST_REFUSED],
      ['from the hole into the second region', 8n * BigInt(MiB) - 8n, 64n, edu.DMA_ERROR_GUEST_REFUSED],
      ['wrapping past 2^64', U64_MAX - 15n, 256n, edu.DMA_ERROR_GUEST_WRAP],
      ['at 2^64 - 1', U64_MAX, 2n, edu.DMA_ERROR_GUEST_WRAP],
      ["over edu's own BAR", bar, 64n, edu.DMA_ERROR_GUEST_REFUSED],
      ['over the LAPIC', 0xfee0_0000n, 16n, edu.DMA_ERROR_GUEST_REFUSED],
      ['over the ECAM window', 0xb000_0000n, 16n, edu.DMA_ERROR_GUEST_REFUSED],
      ['above 4 GiB', 1n << 40n, 16n, edu.DMA_ERROR_GUEST_REFUSED],
    ];
    let errors = 0;
    for (const [what, guest, count, error] of hostile) {
      for (const toRam of [false, true]) {
        const result = toRam ? await dma(BUFFER, guest, count, START | TO_RAM) : await dma(guest, BUFFER, count, START);
        errors++;
        expect(result, `${what} (${toRam ? 'to RAM' : 'from RAM'})`).toEqual({ cmd: u32((toRam ? TO_RAM : 0) | edu.DMA_CMD_ERROR), error });
      }
    }
    // Counts the device refuses on its own side: zero-length elsewhere, huge, past its buffer.
    const deviceSide: Array<[what: string, device: bigint, count: bigint]> = [
      ['a count of 2^32', BUFFER, 1n << 32n],
      ['a count of 2^64 - 1', BUFFER, U64_MAX],
      ['one byte more than the buffer', BUFFER, BigInt(edu.DMA_BUFFER_SIZE) + 1n],
      ['the end of the buffer', BUFFER + BigInt(edu.DMA_BUFFER_SIZE) - 8n, 64n],
      ['a device address past the buffer', BUFFER + BigInt(edu.DMA_BUFFER_SIZE), 0n],
      ['a device address that wraps', U64_MAX, 2n],
    ];
    for (const [what, dev, count] of deviceSide) {
      expect(await dma(SCRATCH, dev, count, START), what).toEqual({ cmd: u32(edu.DMA_CMD_ERROR), error: edu.DMA_ERROR_DEVICE_RANGE });
      expect(await dma(dev, SCRATCH, count, START | TO_RAM), what).toEqual({ cmd: u32(TO_RAM | edu.DMA_CMD_ERROR), error: edu.DMA_ERROR_DEVICE_RANGE });
      errors += 2;
    }
    // Zero bytes at a hostile guest address: an empty transfer, successful by edu's definition.
    for (const guest of [HOLE_LAYOUT_END, U64_MAX, bar]) {
      expect(await dma(BUFFER, guest, 0n, START | TO_RAM)).toEqual({ cmd: TO_RAM, error: edu.DMA_ERROR_NONE });
    }

    // Nothing moved: the device buffer, the RAM canaries (host and guest view), the counters.
    expect(model.peekDmaBuffer()).toEqual(pattern);
    for (const e of edges) expect(ramBytes(e, 32)).toEqual(new Uint8Array(32).fill(0x5a));
    expect(await Promise.all(edges.map((e) => a.checksum(e, 32)))).toEqual(guestBefore);
    expect(moved()).toEqual(movedBefore);
    const eduAfter = model.stats();
    expect(eduAfter.dmaErrors - eduBefore.dmaErrors).toBe(errors);
    expect(eduAfter.dmaBytesToDevice).toBe(eduBefore.dmaBytesToDevice);
    expect(eduAfter.dmaBytesToRam).toBe(eduBefore.dmaBytesToRam);
    expect(device.broken).toBe(false);
    expect(k.errors).toEqual([]);

    // The device still works, and the next good command clears the error.
    expect(await dma(BUFFER, SCRATCH + 0x2000n, 256n, START | TO_RAM)).toEqual({ cmd: TO_RAM, error: edu.DMA_ERROR_NONE });
    expect(ramBytes(SCRATCH + 0x2000n, 256)).toEqual(pattern.subarray(0, 256));
    expect(await a.checksum(SCRATCH + 0x2000n, 256)).toBe(guests.fnv1a32(pattern.subarray(0, 256)));
    // And the guest finishes its run on its own terms.
    const end = await a.finish();
    expect(end.vcpus.map((v) => v.reason)).toEqual(['done', 'done']);
  });

  it('refuses DMA while bus mastering is off, and reports the error by MSI when asked', async () => {
    const a = agent as AgentGuest;
    const pattern = await loadBuffer(0x77);
    await a.enableMsi(bdf, DMA_VECTOR);
    // A hostile descriptor with the interrupt bit: the guest learns of the error by MSI.
    expect(await dma(BUFFER, HOLE_LAYOUT_END - 8n, 64n, START | TO_RAM | IRQ)).toEqual({
      cmd: u32(TO_RAM | IRQ | edu.DMA_CMD_ERROR),
      error: edu.DMA_ERROR_GUEST_REFUSED,
    });
    await until(() => a.interruptCount(DMA_VECTOR) === 1);
    expect(Number(await a.mmioRead(reg(edu.EDU_IRQ_STATUS)))).toBe(edu.IRQ_DMA);
    await a.mmioWrite(reg(edu.EDU_IRQ_ACK), edu.IRQ_DMA);

    // Bus master off: a perfectly good descriptor is refused by the core, as the spec says.
    await a.cfgWrite(bdf, 0x04, 2, 0x2);
    const before = ramBytes(SCRATCH + 0x3000n, 64);
    expect(await dma(BUFFER, SCRATCH + 0x3000n, 64n, START | TO_RAM)).toEqual({ cmd: u32(TO_RAM | edu.DMA_CMD_ERROR), error: edu.DMA_ERROR_GUEST_REFUSED });
    expect(ramBytes(SCRATCH + 0x3000n, 64)).toEqual(before);
    await a.cfgWrite(bdf, 0x04, 2, 0x6);
    expect(await dma(BUFFER, SCRATCH + 0x3000n, 64n, START | TO_RAM)).toEqual({ cmd: TO_RAM, error: edu.DMA_ERROR_NONE });
    expect(ramBytes(SCRATCH + 0x3000n, 64)).toEqual(pattern.subarray(0, 64));
    expect(a.interruptCount(DMA_VECTOR)).toBe(1);
    await a.finish();
  });

  it('uses the descriptor as it is when the command starts: a second vCPU rewriting it cannot split a transfer', async () => {
    const a = agent as AgentGuest;
    const k = kvm as KvmMediator;
    const pattern = await loadBuffer(0x10);
    const good = SCRATCH + 0x8000n;
    const bad = HOLE_LAYOUT_END - 8n;
    const tail = new Uint8Array(8).fill(0xc3);
    k.backend.memory.write(bad, tail);

    // In order, across vCPUs: vCPU 0 starts a good transfer, then vCPU 1 points the
    // descriptor past the end of RAM and makes the count huge. The transfer that ran used
    // the good descriptor whole; the next start uses the hostile one and is refused.
    await write64(edu.EDU_DMA_SRC, BUFFER);
    await write64(edu.EDU_DMA_DST, good);
    await write64(edu.EDU_DMA_COUNT, 64n);
    await a.mmioWrite(reg(edu.EDU_DMA_CMD), START | TO_RAM, 4, 0);
    await write64(edu.EDU_DMA_DST, bad, 1);
    await write64(edu.EDU_DMA_COUNT, 1n << 40n, 1);
    expect(await read64(edu.EDU_DMA_DST)).toBe(bad);
    expect(await outcome(0)).toEqual({ cmd: TO_RAM, error: edu.DMA_ERROR_NONE });
    expect(ramBytes(good, 64)).toEqual(pattern.subarray(0, 64));
    await a.mmioWrite(reg(edu.EDU_DMA_CMD), START | TO_RAM, 4, 0);
    expect(await outcome(0)).toEqual({ cmd: u32(TO_RAM | edu.DMA_CMD_ERROR), error: edu.DMA_ERROR_DEVICE_RANGE });
    await write64(edu.EDU_DMA_COUNT, 64n, 1);
    await a.mmioWrite(reg(edu.EDU_DMA_CMD), START | TO_RAM, 4, 0);
    expect(await outcome(0)).toEqual({ cmd: u32(TO_RAM | edu.DMA_CMD_ERROR), error: edu.DMA_ERROR_GUEST_REFUSED });
    expect(ramBytes(bad, 8)).toEqual(tail);

    // Racing: vCPU 1 flips the destination between a good and a hostile address while vCPU 0
    // starts transfers, both at once. Every start sees one whole descriptor: it either moves
    // all 64 bytes to the good address or is refused; it never moves part of them, never
    // touches the hostile tail. Rounds go on until both outcomes were seen.
    await write64(edu.EDU_DMA_DST, good, 1);
    const seen = { ok: 0, refused: 0 };
    const statsBefore = { ...device.dma.stats };
    const eduBefore = model.stats();
    for (let round = 0; round < 40 && (seen.ok === 0 || seen.refused === 0); round++) {
      const flipper = (async () => {
        for (let i = 0; i < 25; i++) {
          await a.mmioWrite(reg(edu.EDU_DMA_DST), bad & 0xffff_ffffn, 4, 1);
          await a.mmioWrite(reg(edu.EDU_DMA_DST), good & 0xffff_ffffn, 4, 1);
        }
      })();
      const starter = (async () => {
        for (let i = 0; i < 25; i++) {
          k.backend.memory.write(good, new Uint8Array(64));
          await a.mmioWrite(reg(edu.EDU_DMA_CMD), START | TO_RAM, 4, 0);
          const result = await outcome(0);
          if (result.error === edu.DMA_ERROR_NONE) {
            expect(result.cmd).toBe(TO_RAM);
            expect(ramBytes(good, 64)).toEqual(pattern.subarray(0, 64));
            seen.ok++;
          } else {
            expect(result).toEqual({ cmd: u32(TO_RAM | edu.DMA_CMD_ERROR), error: edu.DMA_ERROR_GUEST_REFUSED });
            expect(ramBytes(good, 64)).toEqual(new Uint8Array(64));
            seen.refused++;
          }
        }
      })();
      await Promise.all([flipper, starter]);
    }
    expect(seen.ok).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    expect(ramBytes(bad, 8)).toEqual(tail);
    expect(device.dma.stats.bytesWritten - statsBefore.bytesWritten).toBe(64 * seen.ok);
    expect(model.stats().dmaTransfers - eduBefore.dmaTransfers).toBe(seen.ok);
    expect(model.stats().dmaErrors - eduBefore.dmaErrors).toBe(seen.refused);
    expect(device.broken).toBe(false);
    const end = await a.finish();
    expect(end.vcpus.map((v) => v.reason)).toEqual(['done', 'done']);
  });

  it('refuses host reads, writes and views at the edge of RAM before any copy', () => {
    const m = (kvm as KvmMediator).backend.memory;
    for (const [base, length] of [
      [HOLE_LAYOUT_END - 8n, 16],
      [4n * BigInt(MiB) - 8n, 16],
      [HOLE_LAYOUT_END, 1],
      [U64_MAX, 1],
    ] as const) {
      const dst = new Uint8Array(length).fill(0xee);
      const read = errorOf(() => m.read(base, dst));
      expect(isVmedError(read, 'Invalid')).toBe(true);
      expect((read as { bytesDone?: number }).bytesDone).toBe(0);
      expect(dst.every((b) => b === 0xee)).toBe(true);
      expect(isVmedError(errorOf(() => m.write(base, dst)), 'Invalid')).toBe(true);
      expect(isVmedError(errorOf(() => m.view(base, length, 'readwrite')), 'Invalid')).toBe(true);
      expect(isVmedError(errorOf(() => device.dma.read(base, length)), 'Invalid')).toBe(true);
    }
    // The last page itself is RAM, right up to the guard: readable and writable whole.
    const last = m.view(HOLE_LAYOUT_END - 4096n, 4096, 'readwrite');
    last.bytes.fill(0x11);
    expect(last.bytes[4095]).toBe(0x11);
    last.dispose();
  });
});
