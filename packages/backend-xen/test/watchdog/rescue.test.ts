/**
 * The rescue of a dead process's IOREQ server, on an ioreq page filled in memory: waiting
 * vCPUs are answered (reads all-ones) and woken before the server is destroyed, and a failed
 * step does not stop the others.
 */
import { describe, expect, it } from 'vitest';
import {
  IOREQ_FLAG_DATA_IS_PTR,
  IOREQ_FLAG_DIR_READ,
  IOREQ_OFF_DATA,
  IOREQ_OFF_FLAGS,
  IOREQ_OFF_VP_EPORT,
  IOREQ_SIZE,
  STATE_IOREQ_INPROCESS,
  STATE_IOREQ_NONE,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  XEN_PAGE_SIZE,
} from '../../src/abi/xen.js';
import { answerWaitingSlots, rescueServer, type RescueOps } from '../../src/watchdog/rescue.js';

function slot(page: Uint8Array, vcpu: number, state: number, flags: number, port: number, data = 0x1234n): void {
  const view = new DataView(page.buffer);
  view.setBigUint64(vcpu * IOREQ_SIZE + IOREQ_OFF_DATA, data, true);
  view.setUint32(vcpu * IOREQ_SIZE + IOREQ_OFF_VP_EPORT, port, true);
  page[vcpu * IOREQ_SIZE + IOREQ_OFF_FLAGS] = state | flags;
}

const state = (page: Uint8Array, vcpu: number) => (page[vcpu * IOREQ_SIZE + IOREQ_OFF_FLAGS] as number) & 0xf;
const data = (page: Uint8Array, vcpu: number) => new DataView(page.buffer).getBigUint64(vcpu * IOREQ_SIZE + IOREQ_OFF_DATA, true);

describe('answerWaitingSlots', () => {
  it('answers READY and INPROCESS slots, reads with all-ones, and leaves the rest alone', () => {
    const page = new Uint8Array(XEN_PAGE_SIZE);
    slot(page, 0, STATE_IOREQ_READY, IOREQ_FLAG_DIR_READ, 11);
    slot(page, 1, STATE_IOREQ_INPROCESS, 0, 12, 0x77n);
    slot(page, 2, STATE_IOREQ_NONE, IOREQ_FLAG_DIR_READ, 13);
    slot(page, 3, STATE_IORESP_READY, IOREQ_FLAG_DIR_READ, 14);
    slot(page, 4, STATE_IOREQ_READY, IOREQ_FLAG_DIR_READ | IOREQ_FLAG_DATA_IS_PTR, 15, 0x9000n);
    expect(answerWaitingSlots(page, 5)).toEqual([11, 12, 15]);
    expect([0, 1, 2, 3, 4].map((v) => state(page, v))).toEqual([STATE_IORESP_READY, STATE_IORESP_READY, STATE_IOREQ_NONE, STATE_IORESP_READY, STATE_IORESP_READY]);
    expect(data(page, 0)).toBe(0xffff_ffff_ffff_ffffn);
    // A write keeps its data; a data_is_ptr read's data is a guest address, not a value.
    expect(data(page, 1)).toBe(0x77n);
    expect(data(page, 4)).toBe(0x9000n);
    // The other flag bits survive.
    expect((page[4 * IOREQ_SIZE + IOREQ_OFF_FLAGS] as number) & 0xf0).toBe(IOREQ_FLAG_DIR_READ | IOREQ_FLAG_DATA_IS_PTR);
  });

  it('looks only at the vCPUs the domain has, and refuses a short page', () => {
    const page = new Uint8Array(XEN_PAGE_SIZE);
    slot(page, 1, STATE_IOREQ_READY, 0, 21);
    expect(answerWaitingSlots(page, 1)).toEqual([]);
    expect(answerWaitingSlots(page, -3)).toEqual([]);
    expect(answerWaitingSlots(page, 10_000)).toEqual([21]);
    expect(() => answerWaitingSlots(new Uint8Array(64), 1)).toThrow(RangeError);
  });
});

function recordingOps(page: Uint8Array, vcpus: number, fail: Partial<Record<keyof RescueOps, Error>> = {}) {
  const calls: string[] = [];
  const step = <T>(name: keyof RescueOps, value: () => T): T => {
    calls.push(name);
    const error = fail[name];
    if (error !== undefined) throw error;
    return value();
  };
  const ops: RescueOps = {
    disable: () => step('disable', () => undefined),
    vcpus: () => step('vcpus', () => vcpus),
    mapIoreqPage: () => step('mapIoreqPage', () => ({ bytes: page, release: () => calls.push('release') })),
    notify: (port) => step('notify', () => calls.push(`port ${port}`)),
    destroy: () => step('destroy', () => undefined),
  };
  return { ops, calls };
}

describe('rescueServer', () => {
  it('disables, answers and wakes the waiting vCPUs, unmaps, then destroys', () => {
    const page = new Uint8Array(XEN_PAGE_SIZE);
    slot(page, 0, STATE_IOREQ_INPROCESS, IOREQ_FLAG_DIR_READ, 5);
    const { ops, calls } = recordingOps(page, 2);
    const report = rescueServer(ops);
    expect(report).toEqual({ answered: 1, destroyed: true, errors: [] });
    expect(calls).toEqual(['disable', 'vcpus', 'mapIoreqPage', 'notify', 'port 5', 'release', 'destroy']);
    expect(state(page, 0)).toBe(STATE_IORESP_READY);
  });

  it('still destroys when the page cannot be mapped or a vCPU cannot be woken, and says so', () => {
    const page = new Uint8Array(XEN_PAGE_SIZE);
    slot(page, 0, STATE_IOREQ_READY, IOREQ_FLAG_DIR_READ, 5);
    slot(page, 1, STATE_IOREQ_READY, IOREQ_FLAG_DIR_READ, 6);
    const unmappable = recordingOps(page, 2, { mapIoreqPage: new Error('no resource mapping') });
    expect(rescueServer(unmappable.ops)).toMatchObject({ answered: 0, destroyed: true, errors: [expect.objectContaining({ message: 'no resource mapping' })] });
    expect(unmappable.calls.at(-1)).toBe('destroy');

    const deaf = recordingOps(page, 2, { notify: new Error('bind failed') });
    const report = rescueServer(deaf.ops);
    expect(report.answered).toBe(2);
    expect(report.destroyed).toBe(true);
    expect(report.errors).toHaveLength(2);
    expect(deaf.calls).toEqual(['disable', 'vcpus', 'mapIoreqPage', 'notify', 'notify', 'release', 'destroy']);
  });

  it('reports a server it could not destroy (the domain is gone, or the id was never made)', () => {
    const { ops } = recordingOps(new Uint8Array(XEN_PAGE_SIZE), 1, { disable: new Error('ESRCH'), destroy: new Error('ESRCH') });
    const report = rescueServer(ops);
    expect(report.destroyed).toBe(false);
    expect(report.errors).toHaveLength(2);
  });
});
