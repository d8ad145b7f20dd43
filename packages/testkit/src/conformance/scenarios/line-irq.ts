/**
 * Wired lines: edge lines pulse once per assert; a level line stays asserted and each guest
 * EOI re-raises it until deasserted (KVM's resample eventfd, Xen's IOAPIC, sim's scripted EOI).
 */
import assert from 'node:assert/strict';
import type { LineTarget, LineTrigger } from '@vmed/core';
import type { ConformanceSession } from '../target.js';
import {
  expectCode,
  expectInterrupts,
  expectNoMoreInterrupts,
  expectUnsupported,
  settledCount,
  waitUntil,
} from '../helpers.js';
import { scenario } from '../scenario.js';

/** The line and its vector, or undefined after checking the trigger is refused as Unsupported. */
function lineFor(session: ConformanceSession, trigger: LineTrigger): { line: number; vector: number } | undefined {
  const caps = session.backend.capabilities.lineIrq;
  const line = session.freeLine ?? 0;
  if (caps === false || !caps[trigger]) {
    expectUnsupported(() => session.backend.createLineIrq({ kind: 'gsi', line }, trigger), `a ${trigger} line without the capability`);
    return undefined;
  }
  assert.ok(session.freeLine !== undefined, 'the target offers line IRQs but names no freeLine');
  const vector = session.guest.vectorForLine(line);
  assert.ok(vector !== undefined, `the guest has no vector for GSI ${line}`);
  return { line, vector };
}

export const lineIrqScenarios = [
  scenario('line-irq.edge', 'each assert of an edge line runs the handler once; deassert is a no-op', async (session) => {
    const { backend, guest } = session;
    const l = lineFor(session, 'edge');
    if (l === undefined) return;
    const irq = backend.createLineIrq({ kind: 'gsi', line: l.line }, 'edge');
    assert.equal(irq.trigger, 'edge');
    assert.deepEqual(irq.target, { kind: 'gsi', line: l.line });
    assert.equal(irq.asserted, false);
    const base = await guest.interruptCount(l.vector);
    irq.assert();
    await expectInterrupts(guest, l.vector, base + 1, 'an edge');
    assert.equal(irq.asserted, false, 'an edge line does not stay asserted');
    irq.assert();
    await expectInterrupts(guest, l.vector, base + 2, 'a second edge');
    irq.deassert();
    await expectNoMoreInterrupts(guest, l.vector, base + 2, 'an edge line');
    assert.equal(irq.resamples, 0, 'edge lines count no resamples');
    irq.dispose();
    expectCode(() => irq.assert(), 'BadHandle', 'assert on a disposed line');
  }),

  scenario('line-irq.level-resample', 'a level line re-raises at each EOI while asserted and goes quiet once deasserted', async (session) => {
    const { backend, guest } = session;
    const l = lineFor(session, 'level');
    if (l === undefined) return;
    const caps = backend.capabilities.lineIrq;
    const irq = backend.createLineIrq({ kind: 'gsi', line: l.line }, 'level');
    assert.equal(irq.trigger, 'level');
    const base = await guest.interruptCount(l.vector);
    irq.assert();
    assert.equal(irq.asserted, true, 'a level line stays asserted');
    await expectInterrupts(guest, l.vector, base + 1, 'the first delivery');
    // The guest's handler EOIs; the line is still high, so it comes again, and again.
    await expectInterrupts(guest, l.vector, base + 3, 're-raised at EOI while asserted');
    if (caps !== false && caps.resample) await waitUntil(() => irq.resamples >= 2, 'the backend to count the guest EOIs (resamples)');
    else assert.equal(irq.resamples, 0);

    irq.deassert();
    assert.equal(irq.asserted, false);
    const settled = await settledCount(guest, l.vector);
    await expectNoMoreInterrupts(guest, l.vector, settled, 'a deasserted level line');

    irq.assert();
    await expectInterrupts(guest, l.vector, settled + 1, 'asserting the line again');
    irq.deassert();
    irq.dispose();
    expectCode(() => irq.deassert(), 'BadHandle', 'deassert on a disposed line');
  }),

  scenario('line-irq.invalid-target', 'lines that do not exist and malformed INTx targets are Invalid', async (session) => {
    const { backend } = session;
    const caps = backend.capabilities.lineIrq;
    if (caps === false) {
      expectUnsupported(() => backend.createLineIrq({ kind: 'gsi', line: 0 }, 'edge'), 'a line without line IRQs');
      return;
    }
    const trigger: LineTrigger = caps.edge ? 'edge' : 'level';
    const line = session.freeLine ?? 0;
    const bad: Array<[LineTarget, string]> = [
      [{ kind: 'gsi', line: -1 }, 'GSI -1'],
      [{ kind: 'gsi', line: 1.5 }, 'GSI 1.5'],
      [{ kind: 'gsi', line: 100_000 }, 'GSI 100000'],
      [{ kind: 'intx', device: { bus: 0, device: 3, function: 0 }, pin: 5 as 1, line }, 'INTx pin 5'],
      [{ kind: 'intx', device: { bus: 0, device: 32, function: 0 }, pin: 1, line }, 'device 32'],
    ];
    for (const [target, what] of bad) expectCode(() => backend.createLineIrq(target, trigger), 'Invalid', what);
    expectCode(() => backend.createLineIrq({ kind: 'gsi', line }, 'pulse' as LineTrigger), 'Invalid', 'trigger "pulse"');
  }),
];
