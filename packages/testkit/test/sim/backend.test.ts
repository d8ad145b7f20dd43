import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, bitmapPages, isVmedError, type AddressRange, type TrackedWrite } from '@vmed/core';
import type { SimBackend} from '../../src/index.js';
import { RELEASE_ORDER, RecordingSink, createBackend, createSimBackend } from '../../src/index.js';

const range = (base: bigint, length: number) => ({ base, length: BigInt(length) }) as AddressRange;
const MMIO = 0xc000_0000n;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isVmedError(e) ? e.code : String(e);
  }
  return undefined;
}

describe('sim close', () => {
  it('releases everything it handed out in the contract order, then the RAM', async () => {
    const sim = await createSimBackend();
    sim.attach(new RecordingSink());
    const shared = sim.allocateSharedMemory(PAGE_SIZE);
    const pin = sim.memory.pin(0x4_0000n, PAGE_SIZE);
    const held = [
      sim.registerIoEvent({ space: 'pio', address: 0xc000n, length: 1 }, () => {}),
      sim.claimIo('mmio', range(MMIO, 0x100)),
      sim.createMsiRoute(),
      sim.createLineIrq({ kind: 'gsi', line: 3 }, 'level'),
      sim.trackWrites(range(0x5_0000n, PAGE_SIZE), () => 'apply'),
      sim.memory.view(0x4_0000n, 8, 'read'),
      pin,
      pin.view('readwrite'),
      sim.mapDirect(range(MMIO + 0x1_0000n, PAGE_SIZE), shared),
      shared,
    ];
    sim.dirty.start();
    await sim.close();
    expect(held.every((h) => h.disposed)).toBe(true);
    expect(sim.dirty.active).toBe(false);
    const order = sim.releaseLog.map((k) => RELEASE_ORDER.indexOf(k));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(new Set(sim.releaseLog)).toEqual(new Set(RELEASE_ORDER));
    expect(sim.releaseLog.at(-1)).toBe('ram');
    expect(Object.values(sim.resources()).every((n) => n === 0)).toBe(true);
    await sim.close();
    expect(sim.releaseLog.filter((k) => k === 'ram')).toHaveLength(1);
    await expect(sim.guest.mmioRead(0n, 4)).rejects.toMatchObject({ code: 'BadHandle' });
  });
});

describe('sim options', () => {
  it('refuses malformed RAM maps and limits', async () => {
    await expect(createSimBackend({ ram: [{ base: 0x800, length: 0x1000 }] })).rejects.toMatchObject({ code: 'Invalid' });
    await expect(createSimBackend({ ram: [] })).rejects.toMatchObject({ code: 'Invalid' });
    await expect(
      createSimBackend({
        ram: [
          { base: 0, length: 0x2000 },
          { base: 0x1000, length: 0x1000 },
        ],
      }),
    ).rejects.toMatchObject({ code: 'Invalid' });
    await expect(createSimBackend({ ram: [{ base: 0, length: 2 ** 31 }] })).rejects.toMatchObject({ code: 'Invalid' });
    await expect(createSimBackend({ maxMsiRoutes: 0 })).rejects.toMatchObject({ code: 'Invalid' });
    await expect(createSimBackend({ scratch: { address: 0x10_0000n, length: 16 } })).rejects.toMatchObject({ code: 'Invalid' });
  });

  it('createBackend reads a config section (hex strings, numbers) and refuses unknown keys', async () => {
    const b = (await createBackend({ ram: [{ base: '0x0', length: '0x10000' }], maxMsiRoutes: 2, scratch: { address: '0x1000', length: 4096 } })) as SimBackend;
    expect(b.memory.ram.ranges.map((r) => [r.base, r.length])).toEqual([[0n, 0x1_0000n]]);
    expect(b.capabilities.maxMsiRoutes).toBe(2);
    expect(b.capabilities.hypervisor).toBe('sim');
    await b.close();
    await expect(createBackend({ rams: [] })).rejects.toMatchObject({ code: 'Invalid' });
    await expect(createBackend({ capabilities: { dirtyTracking: 'sometimes' } })).rejects.toMatchObject({ code: 'Invalid' });
  });

  it('packs adjacent regions contiguously by default, and maps them apart with hostGaps', async () => {
    const packed = await createSimBackend();
    const span = packed.memory.view(0x8_0000n - 8n, 16, 'read');
    expect(span.length).toBe(16);
    span.dispose();
    await packed.close();
    const gapped = await createSimBackend({ hostGaps: true });
    expect(codeOf(() => gapped.memory.view(0x8_0000n - 8n, 16, 'read'))).toBe('Invalid');
    // Copies still span: only zero-copy views need host contiguity.
    gapped.memory.write(0x8_0000n - 4n, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    expect(await gapped.guest.mmioRead(0x8_0000n - 4n, 8)).toBe(0x0807_0605_0403_0201n);
    await gapped.close();
  });
});

describe('sim I/O', () => {
  it('needs one sink before claims', async () => {
    const sim = await createSimBackend();
    expect(codeOf(() => sim.claimIo('mmio', range(MMIO, 0x10)))).toBe('State');
    sim.attach(new RecordingSink());
    expect(codeOf(() => sim.attach(new RecordingSink()))).toBe('State');
    expect(codeOf(() => sim.attach({} as RecordingSink))).toBe('Invalid');
    await sim.close();
  });

  it('refuses claims and doorbells over RAM or a direct region', async () => {
    const sim = await createSimBackend();
    sim.attach(new RecordingSink());
    expect(codeOf(() => sim.claimIo('mmio', range(0x7_f000n, 0x2000)))).toBe('Exists');
    const shared = sim.allocateSharedMemory(PAGE_SIZE);
    sim.mapDirect(range(MMIO, PAGE_SIZE), shared);
    expect(codeOf(() => sim.claimIo('mmio', range(MMIO + 0x100n, 4)))).toBe('Exists');
    expect(codeOf(() => sim.registerIoEvent({ space: 'mmio', address: MMIO + 8n, length: 4 }, () => {}))).toBe('Exists');
    expect(codeOf(() => sim.registerIoEvent({ space: 'mmio', address: 0x1000n, length: 4 }, () => {}))).toBe('Exists');
    // Ports and memory are separate spaces: port 0x1000 is not RAM.
    sim.registerIoEvent({ space: 'pio', address: 0x1000n, length: 4 }, () => {}).dispose();
    await sim.close();
  });

  it('stops delivering to the sink once a claim is disposed', async () => {
    const sim = await createSimBackend();
    const sink = new RecordingSink();
    sim.attach(sink);
    const claim = sim.claimIo('mmio', range(MMIO, 0x10));
    await sim.guest.mmioWrite(MMIO, 4, 1n);
    claim.dispose();
    await sim.guest.mmioWrite(MMIO, 4, 2n);
    expect(await sim.guest.mmioRead(MMIO, 4)).toBe(0xffff_ffffn);
    expect(sink.log.map((r) => r.value)).toEqual([1n]);
    await sim.close();
  });

  it('refuses guest accesses it does not model, and bad guest arguments', async () => {
    const sim = await createSimBackend();
    await expect(sim.guest.mmioRead(0x10_0000n - 2n, 4)).rejects.toMatchObject({ code: 'Invalid' });
    await expect(sim.guest.mmioRead(0n, 3 as 4)).rejects.toMatchObject({ code: 'Invalid' });
    await expect(sim.guest.mmioWrite(0n, 1, 0x100n)).rejects.toMatchObject({ code: 'Invalid' });
    await expect(sim.guest.pioRead(0xffff, 2)).rejects.toMatchObject({ code: 'Invalid' });
    await expect(sim.guest.configRead({ bus: 0, device: 1, function: 0 }, 0x100, 4)).rejects.toMatchObject({ code: 'Invalid' });
    await expect(sim.guest.configRead({ bus: 0, device: 1, function: 0 }, 3, 2)).rejects.toMatchObject({ code: 'Invalid' });
    await expect(sim.guest.configWrite({ bus: 0, device: 1, function: 0 }, 0, 1, 0x100)).rejects.toMatchObject({ code: 'Invalid' });
    await sim.close();
  });
});

describe('sim memory and tracking', () => {
  it('counts pins per page', async () => {
    const sim = await createSimBackend();
    const a = sim.memory.pin(0x4_0000n, 2 * PAGE_SIZE);
    const b = sim.memory.pin(0x4_1000n, 2 * PAGE_SIZE);
    expect(sim.resources().pinnedPages).toBe(3);
    a.dispose();
    expect(sim.resources().pinnedPages).toBe(2);
    b.dispose();
    expect(sim.resources().pinnedPages).toBe(0);
    await sim.close();
  });

  it('splits a guest block store into aligned pieces, each seen by page tracking', async () => {
    const sim = await createSimBackend();
    const seen: TrackedWrite[] = [];
    sim.trackWrites(range(0x4_0000n, PAGE_SIZE), (w) => (seen.push(w), 'apply'));
    await sim.guest.writeRam(0x4_0001n, Uint8Array.from({ length: 16 }, (_, i) => i + 1));
    expect(seen.map((w) => [Number(w.address - 0x4_0000n), w.size])).toEqual([
      [1, 1],
      [2, 2],
      [4, 4],
      [8, 8],
      [16, 1],
    ]);
    expect([...(await sim.guest.readRam(0x4_0001n, 16))]).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    await sim.close();
  });

  it('refuses a pull before dirty logging starts', async () => {
    const sim = await createSimBackend();
    expect(codeOf(() => sim.dirty.pull())).toBe('State');
    await sim.close();
  });

  it('in push mode, keeps a toolstack-side log of guest stores and pushed ranges', async () => {
    const sim = await createSimBackend({ capabilities: { dirtyTracking: 'push' } });
    expect(sim.dirty.mode).toBe('push');
    sim.dirty.start();
    await sim.guest.mmioWrite(0x4_0000n, 4, 1n);
    sim.dirty.push(range(0x4_2000n, 1));
    expect(codeOf(() => sim.dirty.push(range(0x10_0000n, 1)))).toBe('Invalid');
    expect(codeOf(() => sim.dirty.pull())).toBe('Unsupported');
    expect(bitmapPages(sim.takeToolstackDirtyLog())).toEqual([0x4_0000n, 0x4_2000n]);
    expect(bitmapPages(sim.takeToolstackDirtyLog())).toEqual([]);
    await sim.close();
    const pull = await createSimBackend();
    expect(codeOf(() => pull.takeToolstackDirtyLog())).toBe('Unsupported');
    await pull.close();
  });

  it('unmaps a direct region when its shared memory is disposed', async () => {
    const sim = await createSimBackend();
    const shared = sim.allocateSharedMemory(PAGE_SIZE);
    const mapping = sim.mapDirect(range(MMIO, PAGE_SIZE), shared);
    shared.bytes[0] = 7;
    expect(await sim.guest.mmioRead(MMIO, 1)).toBe(7n);
    shared.dispose();
    expect(mapping.disposed).toBe(true);
    expect(sim.resources()).toMatchObject({ directMappings: 0, sharedMemory: 0, mappings: 1 });
    expect(await sim.guest.mmioRead(MMIO, 1)).toBe(0xffn);
    await sim.close();
  });
});
