import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, isVmedError, type AddressRange } from '@vmed/core';
import { RecordingSink, createSimBackend } from '../../src/index.js';

const range = (base: bigint, length: number) => ({ base, length: BigInt(length) }) as AddressRange;
const nextImmediate = () => new Promise((resolve) => setImmediate(resolve));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isVmedError(e) ? `${e.code}/${e.errno ?? ''}` : String(e);
  }
  return undefined;
}

describe('sim fault injection', () => {
  it('fails the next N pins with NoSpace/ENOMEM and leaves no trace', async () => {
    const sim = await createSimBackend();
    const before = sim.resources();
    sim.faults.failPins(2);
    expect(sim.faults.armed.pins).toBe(2);
    expect(codeOf(() => sim.memory.pin(0x4_0000n, PAGE_SIZE))).toBe('NoSpace/ENOMEM');
    expect(codeOf(() => sim.memory.pin(0x4_0000n, PAGE_SIZE))).toBe('NoSpace/ENOMEM');
    expect(sim.resources()).toEqual(before);
    const pin = sim.memory.pin(0x4_0000n, PAGE_SIZE);
    expect(sim.resources().pins).toBe(1);
    expect(sim.resources().pinnedPages).toBe(1);
    pin.dispose();
    await sim.close();
  });

  it('can fail pins as Io/EFAULT (a Xen mapping failure)', async () => {
    const sim = await createSimBackend();
    sim.faults.failPins(1, 'Io');
    expect(codeOf(() => sim.memory.pin(0x4_0000n, PAGE_SIZE))).toBe('Io/EFAULT');
    expect(codeOf(() => sim.memory.pin(0x4_0000n, PAGE_SIZE))).toBeUndefined();
    await sim.close();
  });

  it('a bad-input pin does not use up an armed fault', async () => {
    const sim = await createSimBackend();
    sim.faults.failPins(1);
    expect(codeOf(() => sim.memory.pin(0x10_0000n, PAGE_SIZE))).toBe('Invalid/');
    expect(sim.faults.armed.pins).toBe(1);
    await sim.close();
  });

  it('fails the next N host mappings: views, pin views, shared memory, direct mappings', async () => {
    const sim = await createSimBackend();
    const shared = sim.allocateSharedMemory(PAGE_SIZE);
    const pin = sim.memory.pin(0x4_0000n, PAGE_SIZE);
    const before = sim.resources();
    sim.faults.failMaps(4);
    expect(codeOf(() => sim.memory.view(0x4_0000n, 16, 'read'))).toBe('Io/ENOMEM');
    expect(codeOf(() => pin.view('read'))).toBe('Io/ENOMEM');
    expect(codeOf(() => sim.allocateSharedMemory(PAGE_SIZE))).toBe('Io/ENOMEM');
    expect(codeOf(() => sim.mapDirect(range(0xc000_0000n, PAGE_SIZE), shared))).toBe('Io/ENOMEM');
    expect(sim.faults.armed.maps).toBe(0);
    expect(sim.resources()).toEqual(before);
    sim.memory.view(0x4_0000n, 16, 'read').dispose();
    sim.mapDirect(range(0xc000_0000n, PAGE_SIZE), shared).dispose();
    await sim.close();
  });

  it('limits routes below maxMsiRoutes, keeps those held, and lifts the limit', async () => {
    const sim = await createSimBackend({ maxMsiRoutes: 8 });
    const held = [sim.createMsiRoute(), sim.createMsiRoute(), sim.createMsiRoute()];
    sim.faults.limitRoutes(2);
    expect(held.every((r) => !r.disposed)).toBe(true);
    expect(codeOf(() => sim.createMsiRoute())).toBe('NoSpace/ENOSPC');
    held.pop()?.dispose();
    held.pop()?.dispose();
    held.push(sim.createMsiRoute());
    expect(codeOf(() => sim.createMsiRoute())).toBe('NoSpace/ENOSPC');
    sim.faults.limitRoutes(undefined);
    for (let i = 0; i < 6; i++) held.push(sim.createMsiRoute());
    expect(codeOf(() => sim.createMsiRoute())).toBe('NoSpace/ENOSPC');
    expect(sim.capabilities.maxMsiRoutes).toBe(8);
    await sim.close();
  });

  it('slows requests: the sink is called, and the guest answered, only after the delay', async () => {
    const sim = await createSimBackend();
    const sink = new RecordingSink();
    sink.serve('mmio', 0xc000_0000n, 0x10n, () => 0x42n);
    sim.attach(sink);
    sim.claimIo('mmio', range(0xc000_0000n, 0x10));
    sim.faults.slowRequests(30, 1);
    let answered = false;
    const read = sim.guest.mmioRead(0xc000_0000n, 4).then((v) => {
      answered = true;
      return v;
    });
    // An immediate runs before a 30 ms timer on any machine: this is order, not timing.
    await nextImmediate();
    expect(sink.log).toHaveLength(0);
    expect(answered).toBe(false);
    expect(await read).toBe(0x42n);
    expect(sink.log).toHaveLength(1);
    expect(sim.faults.armed.slowRequests).toBeUndefined();

    // Once the count is used up, requests are served before the next turn of the loop.
    let fast = false;
    void sim.guest.mmioWrite(0xc000_0000n, 4, 1n).then(() => (fast = true));
    await nextImmediate();
    expect(fast).toBe(true);
    await sim.close();
  });

  it('a session closed during a slow request fails the guest access and never calls the sink', async () => {
    const sim = await createSimBackend();
    const sink = new RecordingSink();
    sim.attach(sink);
    sim.claimIo('pio', range(0xc000n, 4));
    sim.faults.slowRequests(20);
    const read = sim.guest.pioRead(0xc000, 1);
    await sim.close();
    await expect(read).rejects.toMatchObject({ code: 'BadHandle' });
    expect(sink.log).toHaveLength(0);
  });

  it('clear() lifts every fault; bad arguments are Invalid; a closed backend refuses', async () => {
    const sim = await createSimBackend();
    sim.faults.failPins(1);
    sim.faults.failMaps(1);
    sim.faults.limitRoutes(0);
    sim.faults.slowRequests(5);
    sim.faults.clear();
    expect(sim.faults.armed).toEqual({ pins: 0, maps: 0, routeLimit: undefined, slowRequests: undefined });
    expect(codeOf(() => sim.faults.failPins(-1))).toBe('Invalid/');
    expect(codeOf(() => sim.faults.failMaps(1.5))).toBe('Invalid/');
    expect(codeOf(() => sim.faults.slowRequests(-1))).toBe('Invalid/');
    expect(codeOf(() => sim.faults.failPins(1, 'Nope' as 'Io'))).toBe('Invalid/');
    expect(sim.faults.armed.pins).toBe(0);
    await sim.close();
    expect(codeOf(() => sim.faults.failPins(1))).toBe('BadHandle/');
  });
});
