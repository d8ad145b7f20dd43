import { describe, expect, it } from 'vitest';
import { isVmedError } from '@vmed/core';
import { LINE_VECTOR_BASE, createSimBackend } from '../../src/index.js';

const noWait = 0;

describe('the sim guest LAPIC', () => {
  it('counts MSIs per vector and refuses what a LAPIC would not take', async () => {
    const sim = await createSimBackend();
    const g = sim.guest;
    sim.signalMsi({ address: 0xfee0_0000n, data: 0x50 });
    sim.signalMsi({ address: 0xfee0_0000n | (1n << 12n) | 0x4n, data: 0x51 }); // logical, CPU 0's bit
    sim.signalMsi({ address: 0xfee0_0000n | (0xffn << 12n), data: 0x52 }); // broadcast
    sim.signalMsi({ address: 0xfee0_0000n | (1n << 12n), data: 0x53 }); // physical APIC id 1: not us
    sim.signalMsi({ address: 0xfed0_0000n, data: 0x54 }); // not the LAPIC window
    sim.signalMsi({ address: 0xfee0_0000n, data: 0x0400 | 0x55 }); // NMI delivery mode
    sim.signalMsi({ address: 0xfee0_0000n, data: 0x05 }); // reserved vector
    expect(await Promise.all([0x50, 0x51, 0x52, 0x53, 0x54, 0x55].map((v) => g.interruptCount(v)))).toEqual([1, 1, 1, 0, 0, 0]);
    expect(g.strayInterrupts.map((s) => s.reason.split(' ')[0])).toEqual(['destination', 'address', 'delivery', 'vector']);
    expect(() => sim.signalMsi({ address: -1n, data: 0x50 })).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => sim.signalMsi({ address: 0xfee0_0000n, data: 2 ** 32 })).toThrow(expect.objectContaining({ code: 'Invalid' }));
    await sim.close();
  });

  it('holds a level line in service until the script EOIs it (autoEoi off)', async () => {
    const sim = await createSimBackend({ autoEoi: false });
    const g = sim.guest;
    const v = LINE_VECTOR_BASE + 5;
    const line = sim.createLineIrq({ kind: 'gsi', line: 5 }, 'level');
    line.assert();
    line.deassert();
    line.assert();
    expect(await g.interruptCount(v)).toBe(1);
    g.eoi(v);
    expect(line.resamples).toBe(1);
    expect(await g.interruptCount(v)).toBe(2);
    line.deassert();
    g.eoi(v);
    expect(line.resamples).toBe(2);
    expect(await g.interruptCount(v)).toBe(2);
    g.eoi(v);
    expect(line.resamples).toBe(2);
    expect(await g.waitForInterrupts(v, 3, noWait)).toBe(false);
    await sim.close();
  });

  it('wires shared level sources as an OR and refuses mixing triggers on one pin', async () => {
    const sim = await createSimBackend({ autoEoi: false });
    const g = sim.guest;
    const v = LINE_VECTOR_BASE + 7;
    const a = sim.createLineIrq({ kind: 'gsi', line: 7 }, 'level');
    const b = sim.createLineIrq({ kind: 'intx', device: { bus: 0, device: 3, function: 0 }, pin: 1, line: 7 }, 'level');
    let err: unknown;
    try {
      sim.createLineIrq({ kind: 'gsi', line: 7 }, 'edge');
    } catch (e) {
      err = e;
    }
    expect(isVmedError(err, 'Exists')).toBe(true);
    a.assert();
    b.assert();
    a.deassert();
    g.eoi(v);
    expect(await g.interruptCount(v)).toBe(2); // b still holds the line high
    expect([a.resamples, b.resamples]).toEqual([1, 1]);
    b.dispose();
    g.eoi(v);
    expect(await g.interruptCount(v)).toBe(2);
    await sim.close();
  });

  it('stops a level storm when the backend closes', async () => {
    const sim = await createSimBackend();
    const v = LINE_VECTOR_BASE + 2;
    const line = sim.createLineIrq({ kind: 'gsi', line: 2 }, 'level');
    line.assert();
    expect(await sim.guest.waitForInterrupts(v, 10, 5_000)).toBe(true);
    const waiting = sim.guest.waitForInterrupts(v, 1e9, 60_000);
    await sim.close();
    expect(await waiting).toBe(false);
    expect(line.disposed).toBe(true);
  });

  it('routes reuse the ids of disposed routes', async () => {
    const sim = await createSimBackend();
    const [a, b] = [sim.createMsiRoute(), sim.createMsiRoute()];
    expect([a.id, b.id]).toEqual([0, 1]);
    a.dispose();
    expect(sim.createMsiRoute().id).toBe(0);
    await sim.close();
  });
});
