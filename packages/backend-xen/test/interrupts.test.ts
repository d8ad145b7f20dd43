/**
 * MSI routes and wired lines with recording injectors (the DM calls behind them are made in the
 * lab). What is tested is the contract's semantics: masking never loses an interrupt, unmask
 * replays a pending one exactly once, level lines are held, disposal lowers them.
 */
import { BadHandleError, InvalidError, type MsiMessage } from '@vmed/core';
import { describe, expect, it } from 'vitest';
import { XenLineIrq, checkLineTarget } from '../src/interrupts/lines.js';
import { XenMsiRoute, isX86MsiAddress } from '../src/interrupts/msi.js';

function route() {
  const injected: MsiMessage[] = [];
  const dropped: MsiMessage[] = [];
  let disposed = 0;
  const r = new XenMsiRoute(7, { inject: (m) => injected.push(m), dropped: (m) => dropped.push(m) }, () => disposed++);
  return { r, injected, dropped, disposed: () => disposed };
}

const MSG = { address: 0xfee0_0000n, data: 0x41 };

describe('XenMsiRoute', () => {
  it('starts masked with no message: a trigger is pending, not delivered', () => {
    const { r, injected } = route();
    expect(r.masked).toBe(true);
    r.trigger();
    expect(r.pending).toBe(true);
    expect(injected).toEqual([]);
  });

  it('unmask with a pending interrupt and a message delivers exactly once', () => {
    const { r, injected } = route();
    r.trigger();
    r.trigger();
    r.setMsi(MSG);
    r.unmask();
    expect(injected).toEqual([MSG]);
    expect(r.pending).toBe(false);
    r.mask();
    r.unmask();
    expect(injected).toHaveLength(1);
  });

  it('unmasked without a message it pends; programming the message delivers it once', () => {
    const { r, injected } = route();
    r.unmask();
    r.trigger();
    expect(r.pending).toBe(true);
    expect(injected).toEqual([]);
    r.setMsi(MSG);
    expect(injected).toEqual([MSG]);
    expect(r.pending).toBe(false);
    r.setMsi(MSG);
    r.mask();
    r.unmask();
    expect(injected).toEqual([MSG]);
  });

  it('programming a masked route delivers nothing', () => {
    const { r, injected } = route();
    r.trigger();
    r.setMsi(MSG);
    expect(injected).toEqual([]);
    expect(r.pending).toBe(true);
  });

  it('unmasked with a message: each trigger injects the current message', () => {
    const { r, injected } = route();
    r.setMsi(MSG);
    r.unmask();
    r.trigger();
    r.setMsi({ address: 0xfee0_1000n, data: 0x42 });
    r.trigger();
    expect(injected).toEqual([MSG, { address: 0xfee0_1000n, data: 0x42 }]);
  });

  it('a message outside 0xFEExxxxx is dropped and counted, not injected', () => {
    const { r, injected, dropped } = route();
    r.setMsi({ address: 0x1000n, data: 1 });
    r.unmask();
    r.trigger();
    expect(injected).toEqual([]);
    expect(dropped).toHaveLength(1);
    expect(isX86MsiAddress(0xfee0_0000n)).toBe(true);
    expect(isX86MsiAddress(0x1_fee0_0000n)).toBe(false);
  });

  it('refuses malformed messages and everything after dispose', () => {
    const { r, disposed } = route();
    expect(() => r.setMsi({ address: -1n, data: 0 })).toThrow(InvalidError);
    expect(() => r.setMsi({ address: 0xfee0_0000n, data: 2 ** 32 })).toThrow(InvalidError);
    r.trigger();
    r.dispose();
    r.dispose();
    expect(disposed()).toBe(1);
    expect(r.pending).toBe(false);
    for (const call of [() => r.trigger(), () => r.unmask(), () => r.mask(), () => r.setMsi(MSG)]) expect(call).toThrow(BadHandleError);
  });
});

describe('XenLineIrq', () => {
  it('edge lines pulse 1 then 0 on each assert', () => {
    const levels: number[] = [];
    const l = new XenLineIrq({ kind: 'gsi', line: 5 }, 'edge', (v) => levels.push(v), () => {});
    l.assert();
    l.assert();
    l.deassert();
    expect(levels).toEqual([1, 0, 1, 0]);
    expect(l.asserted).toBe(false);
  });

  it('level lines are held until deassert; repeated asserts do not re-drive', () => {
    const levels: number[] = [];
    const l = new XenLineIrq({ kind: 'gsi', line: 10 }, 'level', (v) => levels.push(v), () => {});
    l.assert();
    l.assert();
    expect(l.asserted).toBe(true);
    l.deassert();
    l.deassert();
    expect(levels).toEqual([1, 0]);
    expect(l.resamples).toBe(0);
  });

  it('disposing an asserted level line lowers it first', () => {
    const levels: number[] = [];
    let released = 0;
    const l = new XenLineIrq({ kind: 'gsi', line: 9 }, 'level', (v) => levels.push(v), () => released++);
    l.assert();
    l.dispose();
    expect(levels).toEqual([1, 0]);
    expect(released).toBe(1);
    expect(() => l.assert()).toThrow(BadHandleError);
  });

  it('targets: ISA IRQs 0..15, INTx on segment 0 bus 0 only', () => {
    expect(() => checkLineTarget('t', { kind: 'gsi', line: 15 })).not.toThrow();
    expect(() => checkLineTarget('t', { kind: 'gsi', line: 16 })).toThrow(InvalidError);
    expect(() => checkLineTarget('t', { kind: 'intx', device: { bus: 0, device: 3, function: 0 }, pin: 1, line: 11 })).not.toThrow();
    expect(() => checkLineTarget('t', { kind: 'intx', device: { bus: 1, device: 3, function: 0 }, pin: 1, line: 11 })).toThrow(/bus 0/);
    expect(() => checkLineTarget('t', { kind: 'intx', device: { segment: 1, bus: 0, device: 3, function: 0 }, pin: 1, line: 11 })).toThrow(/segment 0/);
  });
});
