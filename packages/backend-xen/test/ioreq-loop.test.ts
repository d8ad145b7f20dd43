/**
 * Tests of OUR ioreq parser and state handling (src/ioreq/loop.ts) against shared and buffered
 * ioreq pages filled in memory by the test. No Xen is involved: these check that we decode the
 * `ioreq_t`/`buf_ioreq_t` layouts the ABI test verified, walk the state protocol, dispatch to
 * the sink, doorbells and tracked pages, and survive hostile requests. That Xen really behaves
 * this way is checked by the lab tests (xen-lab.test.ts).
 */
import fc from 'fast-check';
import { InvalidError, RangeSet, guestAddress, pciConfigAddress, type AccessSize, type IoSpace, type TrackedWriteAction, type VmedError } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import * as abi from '../src/abi/xen.js';
import { IoreqLoop, MAX_REPS, decodeBufferedIoreq, type DoorbellEntry, type IoreqTargets, type RamAccess, type TrackedRange } from '../src/ioreq/loop.js';

interface SlotInit {
  addr: bigint;
  data?: bigint;
  count?: number;
  size: number;
  type: number;
  read: boolean;
  dataIsPtr?: boolean;
  df?: boolean;
  state?: number;
  vpEport?: number;
}

function writeSlot(page: Uint8Array, vcpu: number, s: SlotInit): void {
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const off = vcpu * abi.IOREQ_SIZE;
  view.setBigUint64(off + abi.IOREQ_OFF_ADDR, s.addr, true);
  view.setBigUint64(off + abi.IOREQ_OFF_DATA, s.data ?? 0n, true);
  view.setUint32(off + abi.IOREQ_OFF_COUNT, s.count ?? 1, true);
  view.setUint32(off + abi.IOREQ_OFF_SIZE, s.size, true);
  view.setUint32(off + abi.IOREQ_OFF_VP_EPORT, s.vpEport ?? 40 + vcpu, true);
  const flags =
    (s.state ?? abi.STATE_IOREQ_READY) |
    (s.dataIsPtr === true ? abi.IOREQ_FLAG_DATA_IS_PTR : 0) |
    (s.read ? abi.IOREQ_FLAG_DIR_READ : 0) |
    (s.df === true ? abi.IOREQ_FLAG_DF : 0);
  page[off + abi.IOREQ_OFF_FLAGS] = flags;
  page[off + abi.IOREQ_OFF_TYPE] = s.type;
}

function slotState(page: Uint8Array, vcpu: number): number {
  return (page[vcpu * abi.IOREQ_SIZE + abi.IOREQ_OFF_FLAGS] as number) & abi.IOREQ_FLAG_STATE_MASK;
}

function slotData(page: Uint8Array, vcpu: number): bigint {
  return new DataView(page.buffer).getBigUint64(vcpu * abi.IOREQ_SIZE + abi.IOREQ_OFF_DATA, true);
}

type Access = { op: 'read' | 'write'; space: IoSpace; address: bigint; size: AccessSize; value?: bigint };

const RAM_BASE = 0x10000n;
const RAM_SIZE = 0x10000;

/** Guest RAM for rep buffers and tracked pages: 64 KiB at 0x10000, bounds-checked like the real one. */
function fakeRam(): RamAccess & { bytes: Uint8Array } {
  const bytes = new Uint8Array(RAM_SIZE);
  const ram = new RangeSet([{ base: guestAddress(RAM_BASE), length: BigInt(RAM_SIZE) }]);
  const check = (address: bigint, length: number) => {
    ram.split(address, BigInt(length), 'test.ram');
  };
  return {
    bytes,
    check,
    read(address, dst) {
      check(address, dst.length);
      dst.set(bytes.subarray(Number(address - RAM_BASE), Number(address - RAM_BASE) + dst.length));
    },
    write(address, src) {
      check(address, src.length);
      bytes.set(src, Number(address - RAM_BASE));
    },
  };
}

function harness(options: { vcpus?: number; ring?: boolean; read?: (space: IoSpace, address: bigint, size: AccessSize) => bigint } = {}) {
  const page = new Uint8Array(abi.XEN_PAGE_SIZE);
  const ring = options.ring === true ? new Uint8Array(abi.XEN_PAGE_SIZE) : undefined;
  const accesses: Access[] = [];
  const notified: number[] = [];
  const faults: VmedError[] = [];
  const doorbells: DoorbellEntry[] = [];
  const tracked: TrackedRange[] = [];
  let invalidations = 0;
  const ram = fakeRam();
  const targets: IoreqTargets = {
    sink: {
      read(space, address, size) {
        accesses.push({ op: 'read', space, address, size });
        return options.read?.(space, address, size) ?? 0x1122_3344_5566_7788n;
      },
      write(space, address, size, value) {
        accesses.push({ op: 'write', space, address, size, value });
      },
    },
    ram,
    doorbell: (space, address, size, value) =>
      doorbells.find((d) => d.space === space && d.address === address && d.length === size && (d.datamatch === undefined || d.datamatch === value)),
    tracked: (address) => tracked.find((t) => address >= t.base && address < t.end),
    invalidate: () => {
      invalidations++;
    },
    onFault: (e) => faults.push(e),
  };
  const loop = new IoreqLoop(page, options.vcpus ?? 4, ring, targets, (vcpu) => notified.push(vcpu));
  return { page, ring, loop, accesses, notified, faults, doorbells, tracked, ram, invalidations: () => invalidations };
}

describe('ioreq loop parser: synchronous slots (pages filled in memory; tests our decoding, not Xen)', () => {
  it('MMIO read: READY → INPROCESS during the access → IORESP_READY, data written, vCPU notified, flag bits kept', () => {
    let stateDuringAccess = -1;
    const h = harness({
      read: () => {
        stateDuringAccess = slotState(h.page, 1);
        return 0xdead_beefn;
      },
    });
    writeSlot(h.page, 1, { addr: 0xfebf_0010n, size: 4, type: abi.IOREQ_TYPE_COPY, read: true });
    expect(h.loop.serveSlot(1)).toBe(true);
    expect(stateDuringAccess).toBe(abi.STATE_IOREQ_INPROCESS);
    expect(h.accesses).toEqual([{ op: 'read', space: 'mmio', address: 0xfebf_0010n, size: 4 }]);
    expect(slotData(h.page, 1)).toBe(0xdead_beefn);
    expect(slotState(h.page, 1)).toBe(abi.STATE_IORESP_READY);
    expect((h.page[abi.IOREQ_SIZE + abi.IOREQ_OFF_FLAGS] as number) & abi.IOREQ_FLAG_DIR_READ).toBe(abi.IOREQ_FLAG_DIR_READ);
    expect(h.notified).toEqual([1]);
    expect(h.loop.stats.mmio).toBe(1);
  });

  it('a read value wider than the access is cut to its size', () => {
    const h = harness({ read: () => 0xffff_ffff_ffffn });
    writeSlot(h.page, 0, { addr: 0x1000n, size: 2, type: abi.IOREQ_TYPE_COPY, read: true });
    h.loop.serveSlot(0);
    expect(slotData(h.page, 0)).toBe(0xffffn);
  });

  it('MMIO write: the sink gets the value masked to the size, the write is answered and notified too', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0xfebf_0000n, size: 2, type: abi.IOREQ_TYPE_COPY, read: false, data: 0xaaaa_1234n });
    h.loop.serveSlot(0);
    expect(h.accesses).toEqual([{ op: 'write', space: 'mmio', address: 0xfebf_0000n, size: 2, value: 0x1234n }]);
    expect(slotState(h.page, 0)).toBe(abi.STATE_IORESP_READY);
    expect(slotData(h.page, 0)).toBe(0xaaaa_1234n); // a write's data is left as Xen wrote it
    expect(h.notified).toEqual([0]);
  });

  it('8-byte MMIO accesses', () => {
    const h = harness({ read: () => 0x0102_0304_0506_0708n });
    writeSlot(h.page, 0, { addr: 0x2000n, size: 8, type: abi.IOREQ_TYPE_COPY, read: true });
    writeSlot(h.page, 1, { addr: 0x2008n, size: 8, type: abi.IOREQ_TYPE_COPY, read: false, data: 0xffff_0000_ffff_0000n });
    h.loop.serveAll();
    expect(slotData(h.page, 0)).toBe(0x0102_0304_0506_0708n);
    expect(h.accesses[1]).toEqual({ op: 'write', space: 'mmio', address: 0x2008n, size: 8, value: 0xffff_0000_ffff_0000n });
  });

  it('port I/O reads and writes go to the pio space', () => {
    const h = harness({ read: () => 0xabn });
    writeSlot(h.page, 0, { addr: 0xc010n, size: 1, type: abi.IOREQ_TYPE_PIO, read: true });
    writeSlot(h.page, 1, { addr: 0xc014n, size: 4, type: abi.IOREQ_TYPE_PIO, read: false, data: 0x8765_4321n });
    expect(h.loop.serveAll()).toBe(2);
    expect(h.accesses).toEqual([
      { op: 'read', space: 'pio', address: 0xc010n, size: 1 },
      { op: 'write', space: 'pio', address: 0xc014n, size: 4, value: 0x8765_4321n },
    ]);
    expect(slotData(h.page, 0)).toBe(0xabn);
    expect(h.notified).toEqual([0, 1]);
    expect(h.loop.stats.pio).toBe(2);
  });

  it('PCI config: addr = SBDF << 32 | register becomes the sink pci space (ECAM offset)', () => {
    const h = harness({ read: () => 0x1234_1af4n });
    const sbdf = (0 << 16) | (0 << 8) | (3 << 3) | 1; // 0000:00:03.1
    writeSlot(h.page, 0, { addr: (BigInt(sbdf) << 32n) | 0x0n, size: 4, type: abi.IOREQ_TYPE_PCI_CONFIG, read: true });
    writeSlot(h.page, 2, { addr: (BigInt(sbdf) << 32n) | 0x104n, size: 2, type: abi.IOREQ_TYPE_PCI_CONFIG, read: false, data: 0x0006n });
    h.loop.serveAll();
    const bdf = { segment: 0, bus: 0, device: 3, function: 1 };
    expect(h.accesses).toEqual([
      { op: 'read', space: 'pci', address: pciConfigAddress(bdf, 0), size: 4 },
      { op: 'write', space: 'pci', address: pciConfigAddress(bdf, 0x104), size: 2, value: 6n },
    ]);
    expect(slotData(h.page, 0)).toBe(0x1234_1af4n);
    expect(h.loop.stats.pci).toBe(2);
  });

  it('PCI config on another segment and bus keeps them', () => {
    const h = harness();
    const sbdf = (2 << 16) | (0x41 << 8) | (0x1f << 3) | 7;
    writeSlot(h.page, 0, { addr: (BigInt(sbdf) << 32n) | 0x3cn, size: 1, type: abi.IOREQ_TYPE_PCI_CONFIG, read: true });
    h.loop.serveSlot(0);
    expect(h.accesses[0]?.address).toBe(pciConfigAddress({ segment: 2, bus: 0x41, device: 0x1f, function: 7 }, 0x3c));
  });

  it('PCI config register past 4 KiB or a bad size: answered all-ones, never reaches the sink', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: (8n << 32n) | 0xffen, size: 4, type: abi.IOREQ_TYPE_PCI_CONFIG, read: true });
    writeSlot(h.page, 1, { addr: (8n << 32n) | 0x10n, size: 8, type: abi.IOREQ_TYPE_PCI_CONFIG, read: true });
    writeSlot(h.page, 2, { addr: (8n << 32n) | 0x10000n, size: 4, type: abi.IOREQ_TYPE_PCI_CONFIG, read: true });
    h.loop.serveAll();
    expect(h.accesses).toEqual([]);
    for (const v of [0, 1, 2]) {
      expect(slotState(h.page, v)).toBe(abi.STATE_IORESP_READY);
      expect(slotData(h.page, v)).toBe((1n << 64n) - 1n);
    }
    expect(h.faults).toHaveLength(3);
    expect(h.faults.every((f) => f.code === 'Invalid')).toBe(true);
  });

  it('slots not READY are left alone and nobody is notified', () => {
    const h = harness();
    for (const [v, state] of [
      [0, abi.STATE_IOREQ_NONE],
      [1, abi.STATE_IOREQ_INPROCESS],
      [2, abi.STATE_IORESP_READY],
    ] as const) {
      writeSlot(h.page, v, { addr: 0x1000n, size: 4, type: abi.IOREQ_TYPE_COPY, read: true, state });
    }
    const before = h.page.slice();
    expect(h.loop.serveAll()).toBe(0);
    expect(h.page).toEqual(before);
    expect(h.notified).toEqual([]);
    expect(h.accesses).toEqual([]);
  });

  it('only the first `vcpus` slots are served', () => {
    const h = harness({ vcpus: 2 });
    writeSlot(h.page, 2, { addr: 0x1000n, size: 4, type: abi.IOREQ_TYPE_COPY, read: true });
    expect(h.loop.serveAll()).toBe(0);
    expect(slotState(h.page, 2)).toBe(abi.STATE_IOREQ_READY);
  });

  it('INVALIDATE drops mappings and is answered; TIMEOFFSET is answered', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0n, size: 0, type: abi.IOREQ_TYPE_INVALIDATE, read: false });
    writeSlot(h.page, 1, { addr: 0n, size: 8, type: abi.IOREQ_TYPE_TIMEOFFSET, read: false, data: 1234n });
    h.loop.serveAll();
    expect(h.invalidations()).toBe(1);
    expect(slotState(h.page, 0)).toBe(abi.STATE_IORESP_READY);
    expect(slotState(h.page, 1)).toBe(abi.STATE_IORESP_READY);
    expect(h.notified).toEqual([0, 1]);
    expect(h.accesses).toEqual([]);
    expect(h.faults).toEqual([]);
  });

  it('an unknown type is answered (reads all-ones) and reported', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0x10n, size: 4, type: 5, read: true });
    h.loop.serveSlot(0);
    expect(slotState(h.page, 0)).toBe(abi.STATE_IORESP_READY);
    expect(slotData(h.page, 0)).toBe((1n << 64n) - 1n);
    expect(h.faults[0]).toBeInstanceOf(InvalidError);
    expect(h.loop.stats.unknown).toBe(1);
  });

  it('a sink that throws still gets the vCPU answered (all-ones) and the error reported', () => {
    const h = harness({
      read: () => {
        throw new Error('model bug');
      },
    });
    writeSlot(h.page, 0, { addr: 0x10n, size: 2, type: abi.IOREQ_TYPE_COPY, read: true });
    h.loop.serveSlot(0);
    expect(slotData(h.page, 0)).toBe(0xffffn);
    expect(slotState(h.page, 0)).toBe(abi.STATE_IORESP_READY);
    expect(h.faults).toHaveLength(1);
    expect(h.notified).toEqual([0]);
  });

  it('port accesses outside the 64 KiB port space or of 8 bytes are refused', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0xffffn, size: 2, type: abi.IOREQ_TYPE_PIO, read: true });
    writeSlot(h.page, 1, { addr: 0x60n, size: 8, type: abi.IOREQ_TYPE_PIO, read: true });
    writeSlot(h.page, 2, { addr: 0x60n, size: 3, type: abi.IOREQ_TYPE_PIO, read: false });
    h.loop.serveAll();
    expect(h.accesses).toEqual([]);
    expect(h.faults).toHaveLength(3);
    expect(slotData(h.page, 0)).toBe((1n << 64n) - 1n);
  });
});

describe('ioreq loop parser: rep requests (data_is_ptr, count, direction flag)', () => {
  it('rep outsw: elements read from the guest buffer in order, all to the same port', () => {
    const h = harness();
    const buffer = RAM_BASE + 0x100n;
    h.ram.bytes.set([0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 0x100);
    writeSlot(h.page, 0, { addr: 0x3f8n, size: 2, count: 3, type: abi.IOREQ_TYPE_PIO, read: false, dataIsPtr: true, data: buffer });
    h.loop.serveSlot(0);
    expect(h.accesses).toEqual([
      { op: 'write', space: 'pio', address: 0x3f8n, size: 2, value: 0x2211n },
      { op: 'write', space: 'pio', address: 0x3f8n, size: 2, value: 0x4433n },
      { op: 'write', space: 'pio', address: 0x3f8n, size: 2, value: 0x6655n },
    ]);
    expect(slotState(h.page, 0)).toBe(abi.STATE_IORESP_READY);
  });

  it('rep outsw with DF=1 walks the buffer downwards from data', () => {
    const h = harness();
    h.ram.bytes.set([0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 0x100);
    writeSlot(h.page, 0, { addr: 0x3f8n, size: 2, count: 3, type: abi.IOREQ_TYPE_PIO, read: false, dataIsPtr: true, df: true, data: RAM_BASE + 0x104n });
    h.loop.serveSlot(0);
    expect(h.accesses.map((a) => a.value)).toEqual([0x6655n, 0x4433n, 0x2211n]);
  });

  it('rep insb: device values land in guest RAM', () => {
    let n = 0;
    const h = harness({ read: () => BigInt(0xa0 + n++) });
    writeSlot(h.page, 0, { addr: 0x60n, size: 1, count: 4, type: abi.IOREQ_TYPE_PIO, read: true, dataIsPtr: true, data: RAM_BASE + 0x200n });
    h.loop.serveSlot(0);
    expect([...h.ram.bytes.subarray(0x200, 0x204)]).toEqual([0xa0, 0xa1, 0xa2, 0xa3]);
    expect(h.accesses.every((a) => a.address === 0x60n)).toBe(true);
  });

  it('rep movsd from MMIO with DF=1: device and buffer addresses both walk down', () => {
    const h = harness({ read: (_s, address) => address & 0xffffn });
    writeSlot(h.page, 0, { addr: 0xfebf_0008n, size: 4, count: 3, type: abi.IOREQ_TYPE_COPY, read: true, dataIsPtr: true, df: true, data: RAM_BASE + 0x308n });
    h.loop.serveSlot(0);
    expect(h.accesses.map((a) => a.address)).toEqual([0xfebf_0008n, 0xfebf_0004n, 0xfebf_0000n]);
    const view = new DataView(h.ram.bytes.buffer);
    expect([view.getUint32(0x300, true), view.getUint32(0x304, true), view.getUint32(0x308, true)]).toEqual([0x0000, 0x0004, 0x0008]);
  });

  it('rep stosd to MMIO without a buffer writes the same value to successive addresses', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0xfebf_0000n, size: 4, count: 3, type: abi.IOREQ_TYPE_COPY, read: false, data: 0x5a5a_5a5an });
    h.loop.serveSlot(0);
    expect(h.accesses).toEqual([0n, 4n, 8n].map((o) => ({ op: 'write', space: 'mmio', address: 0xfebf_0000n + o, size: 4, value: 0x5a5a_5a5an })));
  });

  it('a rep buffer outside guest RAM: no device access at all (reads have side effects), answered, reported', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0x60n, size: 1, count: 4, type: abi.IOREQ_TYPE_PIO, read: true, dataIsPtr: true, data: RAM_BASE + BigInt(RAM_SIZE) - 2n });
    writeSlot(h.page, 1, { addr: 0x60n, size: 4, count: 2, type: abi.IOREQ_TYPE_PIO, read: false, dataIsPtr: true, data: 0x8000_0000n });
    h.loop.serveAll();
    expect(h.accesses).toEqual([]);
    expect(slotState(h.page, 0)).toBe(abi.STATE_IORESP_READY);
    expect(slotState(h.page, 1)).toBe(abi.STATE_IORESP_READY);
    expect(h.faults).toHaveLength(2);
  });

  it('a DF=1 buffer that would wrap below address 0 is refused', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0x60n, size: 4, count: 8, type: abi.IOREQ_TYPE_PIO, read: false, dataIsPtr: true, df: true, data: 8n });
    h.loop.serveSlot(0);
    expect(h.accesses).toEqual([]);
    expect(h.faults[0]?.code).toBe('Invalid');
  });

  it('counts above MAX_REPS are refused; count 0 is a no-op', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0x60n, size: 1, count: MAX_REPS + 1, type: abi.IOREQ_TYPE_PIO, read: false, dataIsPtr: true, data: RAM_BASE });
    writeSlot(h.page, 1, { addr: 0x60n, size: 1, count: 0, type: abi.IOREQ_TYPE_PIO, read: false, dataIsPtr: true, data: RAM_BASE });
    writeSlot(h.page, 2, { addr: 0x1000n, size: 4, count: 0xffff_ffff, type: abi.IOREQ_TYPE_COPY, read: false, data: 1n });
    h.loop.serveAll();
    expect(h.accesses).toEqual([]);
    expect(h.faults).toHaveLength(2);
    expect([0, 1, 2].map((v) => slotState(h.page, v))).toEqual([abi.STATE_IORESP_READY, abi.STATE_IORESP_READY, abi.STATE_IORESP_READY]);
  });

  it('an MMIO rep that would wrap past 2^64 is refused', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: (1n << 64n) - 8n, size: 4, count: 4, type: abi.IOREQ_TYPE_COPY, read: false, data: 0n });
    h.loop.serveSlot(0);
    expect(h.accesses).toEqual([]);
    expect(h.faults).toHaveLength(1);
  });
});

describe('ioreq loop parser: doorbells and tracked pages', () => {
  it('a matching doorbell write skips the sink and rings after the vCPU was answered', () => {
    const h = harness();
    const seen: Array<{ state: number; notified: number }> = [];
    h.doorbells.push({ space: 'mmio', address: 0xfebf_1000n, length: 4, datamatch: undefined, ring: () => seen.push({ state: slotState(h.page, 0), notified: h.notified.length }) });
    writeSlot(h.page, 0, { addr: 0xfebf_1000n, size: 4, type: abi.IOREQ_TYPE_COPY, read: false, data: 7n });
    h.loop.serveSlot(0);
    expect(h.accesses).toEqual([]);
    expect(seen).toEqual([{ state: abi.STATE_IORESP_READY, notified: 1 }]);
    expect(h.loop.stats.doorbells).toBe(1);
  });

  it('datamatch: only the matching value rings; others and reads reach the sink', () => {
    const h = harness();
    let rings = 0;
    h.doorbells.push({ space: 'pio', address: 0xc000n, length: 2, datamatch: 5n, ring: () => rings++ });
    writeSlot(h.page, 0, { addr: 0xc000n, size: 2, type: abi.IOREQ_TYPE_PIO, read: false, data: 5n });
    writeSlot(h.page, 1, { addr: 0xc000n, size: 2, type: abi.IOREQ_TYPE_PIO, read: false, data: 6n });
    writeSlot(h.page, 2, { addr: 0xc000n, size: 2, type: abi.IOREQ_TYPE_PIO, read: true });
    writeSlot(h.page, 3, { addr: 0xc000n, size: 4, type: abi.IOREQ_TYPE_PIO, read: false, data: 5n });
    h.loop.serveAll();
    expect(rings).toBe(1);
    expect(h.accesses.map((a) => [a.op, a.size, a.value])).toEqual([
      ['write', 2, 6n],
      ['read', 2, undefined],
      ['write', 4, 5n],
    ]);
  });

  it.each<[TrackedWriteAction, number[]]>([
    ['apply', [0x78, 0x56, 0x34, 0x12]],
    ['drop', [0, 0, 0, 0]],
  ])('a write to a tracked page reaches the handler and is %s-ed', (action, expected) => {
    const h = harness();
    const writes: unknown[] = [];
    h.tracked.push({ base: RAM_BASE + 0x1000n, end: RAM_BASE + 0x2000n, handler: (w) => (writes.push(w), action) });
    writeSlot(h.page, 0, { addr: RAM_BASE + 0x1010n, size: 4, type: abi.IOREQ_TYPE_COPY, read: false, data: 0x1234_5678n });
    h.loop.serveSlot(0);
    expect(writes).toEqual([{ address: RAM_BASE + 0x1010n, size: 4, value: 0x1234_5678n }]);
    expect([...h.ram.bytes.subarray(0x1010, 0x1014)]).toEqual(expected);
    expect(h.accesses).toEqual([]);
    expect(h.loop.stats.trackedWrites).toBe(1);
  });

  it('a read Xen sends for a tracked page is served from guest RAM', () => {
    const h = harness();
    h.ram.bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 0x1000);
    h.tracked.push({ base: RAM_BASE + 0x1000n, end: RAM_BASE + 0x2000n, handler: () => 'apply' });
    writeSlot(h.page, 0, { addr: RAM_BASE + 0x1000n, size: 8, type: abi.IOREQ_TYPE_COPY, read: true });
    h.loop.serveSlot(0);
    expect(slotData(h.page, 0)).toBe(0x0807_0605_0403_0201n);
    expect(h.accesses).toEqual([]);
  });
});

/** Writes a buffered request at ring position `pointer` (one slot, or two for 8 bytes). */
function writeBuffered(ring: Uint8Array, pointer: number, r: { type: number; size: 1 | 2 | 4 | 8; addr: number; data: bigint; read?: boolean }): number {
  const view = new DataView(ring.buffer, ring.byteOffset);
  const sizeCode = { 1: 0, 2: 1, 4: 2, 8: 3 }[r.size];
  const word = (r.type | ((r.read === true ? 1 : 0) << abi.BUF_IOREQ_DIR_SHIFT) | (sizeCode << abi.BUF_IOREQ_SIZE_SHIFT) | (r.addr << abi.BUF_IOREQ_ADDR_SHIFT)) >>> 0;
  const slot = (p: number) => abi.BUFIOREQ_OFF_SLOTS + (p % abi.IOREQ_BUFFER_SLOT_NUM) * abi.BUF_IOREQ_SIZE;
  view.setUint32(slot(pointer), word, true);
  view.setUint32(slot(pointer) + abi.BUF_IOREQ_OFF_DATA, Number(r.data & 0xffff_ffffn), true);
  if (r.size !== 8) return 1;
  view.setUint32(slot(pointer + 1), word, true);
  view.setUint32(slot(pointer + 1) + abi.BUF_IOREQ_OFF_DATA, Number(r.data >> 32n), true);
  return 2;
}

function setPointers(ring: Uint8Array, read: number, write: number): void {
  const view = new DataView(ring.buffer, ring.byteOffset);
  view.setUint32(abi.BUFIOREQ_OFF_READ_POINTER, read, true);
  view.setUint32(abi.BUFIOREQ_OFF_WRITE_POINTER, write, true);
}

function readPointer(ring: Uint8Array): number {
  return new DataView(ring.buffer, ring.byteOffset).getUint32(abi.BUFIOREQ_OFF_READ_POINTER, true);
}

describe('ioreq loop parser: the buffered ring', () => {
  it('decodes the buf_ioreq_t bitfields', () => {
    const ring = new Uint8Array(abi.XEN_PAGE_SIZE);
    writeBuffered(ring, 0, { type: abi.IOREQ_TYPE_COPY, size: 2, addr: 0xb8000, data: 0x0741n });
    const r = decodeBufferedIoreq(new DataView(ring.buffer), 0, 1);
    expect(r).toEqual({ type: abi.IOREQ_TYPE_COPY, read: false, size: 2, addr: 0xb8000, data: 0x0741n, slots: 1 });
  });

  it('drains writes in order, 8-byte writes taking two slots (high half second), across the wrap', () => {
    const h = harness({ ring: true });
    const ring = h.ring as Uint8Array;
    let p = 509;
    p += writeBuffered(ring, p, { type: abi.IOREQ_TYPE_PIO, size: 1, addr: 0x3c4, data: 0x02n });
    p += writeBuffered(ring, p, { type: abi.IOREQ_TYPE_COPY, size: 8, addr: 0xa0000, data: 0x1122_3344_5566_7788n }); // slots 510, 0
    p += writeBuffered(ring, p, { type: abi.IOREQ_TYPE_COPY, size: 4, addr: 0xa0008, data: 0xcafe_f00dn });
    setPointers(ring, 509, p);
    expect(h.loop.drainBuffered()).toBe(3);
    expect(h.accesses).toEqual([
      { op: 'write', space: 'pio', address: 0x3c4n, size: 1, value: 2n },
      { op: 'write', space: 'mmio', address: 0xa0000n, size: 8, value: 0x1122_3344_5566_7788n },
      { op: 'write', space: 'mmio', address: 0xa0008n, size: 4, value: 0xcafe_f00dn },
    ]);
    expect(readPointer(ring)).toBe(p);
    expect(h.notified).toEqual([]); // Xen does not wait for buffered writes
    expect(h.loop.stats.buffered).toBe(3);
  });

  it('an 8-byte write whose second slot is not published yet is left for later', () => {
    const h = harness({ ring: true });
    const ring = h.ring as Uint8Array;
    writeBuffered(ring, 0, { type: abi.IOREQ_TYPE_COPY, size: 8, addr: 0xa0000, data: 1n });
    setPointers(ring, 0, 1);
    expect(h.loop.drainBuffered()).toBe(0);
    expect(readPointer(ring)).toBe(0);
    setPointers(ring, 0, 2);
    expect(h.loop.drainBuffered()).toBe(1);
    expect(readPointer(ring)).toBe(2);
  });

  it('inconsistent pointers (more than a ring apart) consume nothing and are reported', () => {
    const h = harness({ ring: true });
    const ring = h.ring as Uint8Array;
    setPointers(ring, 10, 10 + abi.IOREQ_BUFFER_SLOT_NUM + 1);
    expect(h.loop.drainBuffered()).toBe(0);
    expect(readPointer(ring)).toBe(10);
    expect(h.faults).toHaveLength(1);
  });

  it('buffered reads cannot be answered: skipped, reported, the ring moves on', () => {
    const h = harness({ ring: true });
    const ring = h.ring as Uint8Array;
    writeBuffered(ring, 0, { type: abi.IOREQ_TYPE_PIO, size: 1, addr: 0x60, data: 0n, read: true });
    writeBuffered(ring, 1, { type: abi.IOREQ_TYPE_PIO, size: 1, addr: 0x61, data: 9n });
    setPointers(ring, 0, 2);
    expect(h.loop.drainBuffered()).toBe(2);
    expect(h.accesses).toEqual([{ op: 'write', space: 'pio', address: 0x61n, size: 1, value: 9n }]);
    expect(h.faults).toHaveLength(1);
  });
});

describe('ioreq loop parser: teardown and hostile slots', () => {
  it('answerPending answers READY and INPROCESS slots (reads all-ones) without touching the sink', () => {
    const h = harness();
    writeSlot(h.page, 0, { addr: 0x10n, size: 4, type: abi.IOREQ_TYPE_COPY, read: true });
    writeSlot(h.page, 1, { addr: 0x10n, size: 4, type: abi.IOREQ_TYPE_COPY, read: false, state: abi.STATE_IOREQ_INPROCESS, data: 3n });
    writeSlot(h.page, 2, { addr: 0x10n, size: 4, type: abi.IOREQ_TYPE_COPY, read: true, state: abi.STATE_IOREQ_NONE });
    expect(h.loop.pendingSlots()).toEqual([0, 1]);
    expect(h.loop.answerPending()).toBe(2);
    expect([0, 1, 2].map((v) => slotState(h.page, v))).toEqual([abi.STATE_IORESP_READY, abi.STATE_IORESP_READY, abi.STATE_IOREQ_NONE]);
    expect(slotData(h.page, 0)).toBe((1n << 64n) - 1n);
    expect(slotData(h.page, 1)).toBe(3n);
    expect(h.notified).toEqual([0, 1]);
    expect(h.accesses).toEqual([]);
  });

  it('any 32 bytes in a READY slot: never throws, always answered once, state only moves forward', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.integer({ min: 0, max: 3 }), (bytes, vcpu) => {
        const h = harness();
        h.page.set(bytes, vcpu * abi.IOREQ_SIZE);
        const off = vcpu * abi.IOREQ_SIZE + abi.IOREQ_OFF_FLAGS;
        h.page[off] = ((h.page[off] as number) & ~abi.IOREQ_FLAG_STATE_MASK) | abi.STATE_IOREQ_READY;
        const otherBits = (h.page[off] as number) & ~abi.IOREQ_FLAG_STATE_MASK;
        expect(h.loop.serveSlot(vcpu)).toBe(true);
        expect(slotState(h.page, vcpu)).toBe(abi.STATE_IORESP_READY);
        expect((h.page[off] as number) & ~abi.IOREQ_FLAG_STATE_MASK).toBe(otherBits);
        expect(h.notified).toEqual([vcpu]);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses pages that are not pages and vCPU counts one page cannot hold', () => {
    const targets = harness().loop;
    expect(targets).toBeInstanceOf(IoreqLoop);
    const t = {} as IoreqTargets;
    expect(() => new IoreqLoop(new Uint8Array(100), 1, undefined, t, () => {})).toThrow(InvalidError);
    expect(() => new IoreqLoop(new Uint8Array(abi.XEN_PAGE_SIZE), 0, undefined, t, () => {})).toThrow(InvalidError);
    expect(() => new IoreqLoop(new Uint8Array(abi.XEN_PAGE_SIZE), abi.IOREQ_MAX_VCPUS + 1, undefined, t, () => {})).toThrow(InvalidError);
    expect(() => new IoreqLoop(new Uint8Array(abi.XEN_PAGE_SIZE), abi.IOREQ_MAX_VCPUS, undefined, t, () => {})).not.toThrow();
  });
});
