/**
 * What the watchdog helper does for an IOREQ server whose process died: make sure no vCPU waits
 * on it any more, then destroy it.
 *
 * Destroying alone is not enough. A vCPU whose access was in a slot (`IOREQ_READY`, or
 * `INPROCESS` when the dead process had picked it up) sleeps in Xen until its event channel
 * fires, and `destroy_ioreq_server` frees that channel without firing it (Xen 4.17,
 * `ioreq_server_remove_all_vcpus`): the vCPU would sleep forever. So, as the serving process's
 * own teardown does: disable the server (Xen routes nothing new to it), answer every waiting
 * slot — reads get all-ones, what Xen answers for unclaimed accesses — and notify its vCPU
 * through a port bound for the purpose (the dead process's ports closed with it, leaving Xen's
 * end unbound and bindable again), then destroy. Claims, memory types and everything else the
 * server held go with it in Xen; nothing else is touched.
 */
import {
  IOREQ_FLAG_DATA_IS_PTR,
  IOREQ_FLAG_DIR_READ,
  IOREQ_FLAG_STATE_MASK,
  IOREQ_MAX_VCPUS,
  IOREQ_OFF_DATA,
  IOREQ_OFF_FLAGS,
  IOREQ_OFF_VP_EPORT,
  IOREQ_SIZE,
  STATE_IOREQ_INPROCESS,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  XEN_PAGE_SIZE,
} from '../abi/xen.js';

/** The Xen operations a rescue needs, on one server of one domain. */
export interface RescueOps {
  /** `set_ioreq_server_state(0)`. */
  disable(): void;
  /** The domain's vCPU count (`xendevicemodel_nr_vcpus`). */
  vcpus(): number;
  /** The server's shared ioreq page, mapped read-write (resource mapping). */
  mapIoreqPage(): { readonly bytes: Uint8Array; release(): void };
  /** Fires the guest's event channel `remotePort` once (bind interdomain, notify, unbind). */
  notify(remotePort: number): void;
  /** `destroy_ioreq_server`. */
  destroy(): void;
}

/** What a rescue did; `errors` holds each step that failed (the others still ran). */
export interface RescueReport {
  /** vCPUs found waiting and answered. */
  readonly answered: number;
  readonly destroyed: boolean;
  readonly errors: readonly unknown[];
}

const ALL_ONES_64 = 0xffff_ffff_ffff_ffffn;

/**
 * Answers every slot of `page` that a vCPU waits on: data all-ones for reads (not for
 * `data_is_ptr` transfers, whose data lives in guest memory), state `IORESP_READY`. Returns
 * the remote event-channel port of each answered vCPU, to be notified.
 */
export function answerWaitingSlots(page: Uint8Array, vcpus: number): number[] {
  if (page.byteLength < XEN_PAGE_SIZE) throw new RangeError(`an ioreq page is ${XEN_PAGE_SIZE} bytes, got ${page.byteLength}`);
  const count = Math.min(Math.max(0, Math.trunc(vcpus)), IOREQ_MAX_VCPUS);
  const view = new DataView(page.buffer, page.byteOffset, XEN_PAGE_SIZE);
  const ports: number[] = [];
  for (let vcpu = 0; vcpu < count; vcpu++) {
    const flagsAt = vcpu * IOREQ_SIZE + IOREQ_OFF_FLAGS;
    const flags = Atomics.load(page, flagsAt);
    const state = flags & IOREQ_FLAG_STATE_MASK;
    if (state !== STATE_IOREQ_READY && state !== STATE_IOREQ_INPROCESS) continue;
    if ((flags & IOREQ_FLAG_DIR_READ) !== 0 && (flags & IOREQ_FLAG_DATA_IS_PTR) === 0) {
      view.setBigUint64(vcpu * IOREQ_SIZE + IOREQ_OFF_DATA, ALL_ONES_64, true);
    }
    // Sequentially consistent: the data above is visible before Xen sees the new state.
    Atomics.store(page, flagsAt, (flags & ~IOREQ_FLAG_STATE_MASK) | STATE_IORESP_READY);
    ports.push(view.getUint32(vcpu * IOREQ_SIZE + IOREQ_OFF_VP_EPORT, true));
  }
  return ports;
}

/** Runs the rescue of the module doc. Never throws: every failed step is in the report. */
export function rescueServer(ops: RescueOps): RescueReport {
  const errors: unknown[] = [];
  const attempt = <T>(step: () => T): T | undefined => {
    try {
      return step();
    } catch (error) {
      errors.push(error);
      return undefined;
    }
  };
  attempt(() => ops.disable());
  let answered = 0;
  const vcpus = attempt(() => ops.vcpus());
  const page = vcpus === undefined ? undefined : attempt(() => ops.mapIoreqPage());
  if (page !== undefined && vcpus !== undefined) {
    try {
      const ports = attempt(() => answerWaitingSlots(page.bytes, vcpus)) ?? [];
      answered = ports.length;
      for (const port of ports) attempt(() => ops.notify(port));
    } finally {
      attempt(() => page.release());
    }
  }
  const destroyed = attempt(() => {
    ops.destroy();
    return true;
  });
  return { answered, destroyed: destroyed === true, errors };
}
