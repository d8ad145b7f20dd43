import { describe, expect, it } from 'vitest';
import { MSI32, MSI_CAP, PLAIN, cap } from './definitions.js';
import { TEST_ADDRESS, harness } from './fakes.js';

const interruptStatus = (read: (r: number, s: 1 | 2 | 4) => number) => (read(0x06, 2) & 0x08) !== 0;

describe('INTx', () => {
  it('asserts the function\'s level line on raise and sets Interrupt Status; lower undoes both', () => {
    const h = harness(PLAIN);
    const { fn } = h;
    const status = () => interruptStatus((r, s) => fn.configRead(r, s));
    expect(fn.interrupts.mode).toBe('intx');
    expect(h.lines).toHaveLength(0); // created on first assertion
    fn.interrupts.raise();
    expect(h.lines).toHaveLength(1);
    expect(h.lines[0]?.target).toEqual({ kind: 'intx', device: TEST_ADDRESS, pin: 1, line: 11 });
    expect(h.lines[0]?.asserted).toBe(true);
    expect(status()).toBe(true);
    fn.interrupts.raise(); // already held: no second edge
    expect(h.lines[0]?.history).toEqual([true]);
    fn.interrupts.lower();
    expect(h.lines[0]?.asserted).toBe(false);
    expect(status()).toBe(false);
    fn.interrupts.lower();
    expect(h.lines[0]?.history).toEqual([true, false]);
  });

  it('Interrupt Disable deasserts a held line and clearing it re-asserts', () => {
    const h = harness(PLAIN);
    const { fn } = h;
    fn.interrupts.raise();
    fn.configWrite(0x04, 2, 0x0400);
    expect(h.lines[0]?.asserted).toBe(false);
    expect(interruptStatus((r, s) => fn.configRead(r, s))).toBe(true); // still requested by the device
    fn.configWrite(0x04, 2, 0x0000);
    expect(h.lines[0]?.asserted).toBe(true);
    expect(h.lines[0]?.history).toEqual([true, false, true]);
  });

  it('does not assert while disabled, and a lower while disabled leaves nothing to re-assert', () => {
    const h = harness(PLAIN);
    const { fn } = h;
    fn.configWrite(0x04, 2, 0x0400);
    fn.interrupts.raise();
    expect(h.lines).toHaveLength(0);
    expect(interruptStatus((r, s) => fn.configRead(r, s))).toBe(true);
    fn.interrupts.lower();
    fn.configWrite(0x04, 2, 0x0000);
    expect(h.lines).toHaveLength(0);
  });

  it('gives way to MSI: enabling it drops the line, disabling it brings the line back', () => {
    const h = harness(MSI32);
    const { fn } = h;
    const control = cap(fn, MSI_CAP) + 2;
    fn.interrupts.raise();
    expect(h.lines[0]?.asserted).toBe(true);
    fn.configWrite(control, 2, 0x0001);
    expect(fn.interrupts.mode).toBe('msi');
    expect(h.lines[0]?.asserted).toBe(false);
    fn.configWrite(control, 2, 0x0000);
    expect(h.lines[0]?.asserted).toBe(true);
  });

  it('reports a line the backend cannot provide once, without throwing', () => {
    const h = harness(PLAIN);
    h.lineUnsupported = true;
    expect(() => h.fn.interrupts.raise()).not.toThrow();
    h.fn.interrupts.lower();
    h.fn.interrupts.raise();
    expect(h.errors).toHaveLength(1);
    expect(interruptStatus((r, s) => h.fn.configRead(r, s))).toBe(true);
  });

  it('has mode none without a pin or enabled MSI, and raise does nothing', () => {
    const h = harness({ ...PLAIN, interruptPin: 0 });
    expect(h.fn.interrupts.mode).toBe('none');
    h.fn.interrupts.raise();
    expect(h.lines).toHaveLength(0);
    expect(interruptStatus((r, s) => h.fn.configRead(r, s))).toBe(false);
    expect(h.fn.configRead(0x3c, 1)).toBe(0);
  });
});
