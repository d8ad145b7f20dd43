/**
 * The device migration state machine, after Linux VFIO migration v2
 * (`enum vfio_device_mig_state` in `include/uapi/linux/vfio.h`, `vfio_mig_get_next_state()` in
 * `drivers/vfio/vfio_main.c`).
 *
 * A device is always in one state. The user asks for a target; the request is walked as a chain
 * of single arcs, each of which is the device's own work (quiesce, stop, open the save stream,
 * load the resume stream…). Which chain is walked is decided exactly as the kernel decides it,
 * so a VMM that drives a vmed device sees the same intermediate states as with a kernel VFIO
 * driver: the shortest path, with no state of the saving group (`PRE_COPY`, `PRE_COPY_P2P`,
 * `STOP_COPY`) in its interior unless the whole path stays inside that group (one data session,
 * e.g. PRE_COPY → PRE_COPY_P2P → STOP_COPY). Under that rule every path is unique; the tests
 * check the kernel's table against it.
 *
 * Two features are optional, as in VFIO: `p2p` adds the P2P-quiescent states (`RUNNING_P2P`,
 * `PRE_COPY_P2P`), `preCopy` adds the pre-copy states (`PRE_COPY`, and `PRE_COPY_P2P` when P2P is
 * there too). A device without a feature never passes through its states, and asking for one of
 * them is refused. `ERROR` is never a target: a device lands there only when an arc fails, and
 * leaves it only by reset.
 *
 * The machine itself is hypervisor-neutral: on KVM and on Xen alike, the dirty pages of guest RAM
 * are the VMM's business; this is only the device's part of migration.
 */
import { EventEmitter } from 'eventemitter3';
import { InvalidError, StateError, UnsupportedError, VmedError } from '../errors.js';
import type { VmedErrorCode, VmedErrorDetails } from '../errors.js';

/** The migration states, named as in VFIO (`VFIO_DEVICE_STATE_*`). */
export const MigrationState = {
  /** The device runs normally. */
  RUNNING: 'RUNNING',
  /** The device does not change its internal or external state (no DMA, no interrupts). */
  STOP: 'STOP',
  /** Stopped, and its internal state is being read out through the save stream. */
  STOP_COPY: 'STOP_COPY',
  /** Stopped, and loading a new internal state from the resume stream. */
  RESUMING: 'RESUMING',
  /** Running, except that the device starts no new peer-to-peer DMA (feature `p2p`). */
  RUNNING_P2P: 'RUNNING_P2P',
  /** Running, and streaming its state ahead of the stop (feature `preCopy`). */
  PRE_COPY: 'PRE_COPY',
  /** `PRE_COPY` in the P2P-quiescent state (features `p2p` and `preCopy`). */
  PRE_COPY_P2P: 'PRE_COPY_P2P',
  /** An arc failed and the device could not return to a valid state; only reset leaves it. */
  ERROR: 'ERROR',
} as const;

/** One of the {@link MigrationState} values. */
export type MigrationState = (typeof MigrationState)[keyof typeof MigrationState];

/** Every state, in the order of their VFIO uAPI numbers. */
export const MIGRATION_STATES: readonly MigrationState[] = [
  'ERROR',
  'STOP',
  'RUNNING',
  'STOP_COPY',
  'RESUMING',
  'RUNNING_P2P',
  'PRE_COPY',
  'PRE_COPY_P2P',
];

/** The optional migration features of a device (VFIO's `VFIO_MIGRATION_P2P`, `VFIO_MIGRATION_PRE_COPY`). */
export interface MigrationFeatures {
  /** The device has the P2P-quiescent states `RUNNING_P2P` (and `PRE_COPY_P2P` with `preCopy`). */
  readonly p2p?: boolean;
  /** The device can stream its state while running: `PRE_COPY` (and `PRE_COPY_P2P` with `p2p`). */
  readonly preCopy?: boolean;
}

/** One single step of the machine. */
export interface MigrationArc {
  readonly from: MigrationState;
  readonly to: MigrationState;
}

const OPERATION = 'migration.transition';

/** True for strings naming a state; guards values that come from outside TypeScript. */
export function isMigrationState(value: unknown): value is MigrationState {
  return typeof value === 'string' && (MIGRATION_STATES as readonly string[]).includes(value);
}

/** The number of a state in the VFIO uAPI (`enum vfio_device_mig_state`), for wire protocols such as vfio-user. */
export function vfioDeviceStateNumber(state: MigrationState): number {
  return MIGRATION_STATES.indexOf(state);
}

/** The state with VFIO uAPI number `value`; an unknown number (it comes off the wire) is `Invalid`. */
export function migrationStateFromVfio(value: number): MigrationState {
  const state = Number.isInteger(value) ? MIGRATION_STATES[value] : undefined;
  if (state === undefined) throw new InvalidError('migration.fromVfio', `${value} is not a VFIO device migration state`);
  return state;
}

/** The features a state needs; ERROR needs one no device has, so it is never a valid target. */
function missingFeature(state: MigrationState, features: MigrationFeatures): string | undefined {
  switch (state) {
    case 'RUNNING_P2P':
      return features.p2p === true ? undefined : 'p2p';
    case 'PRE_COPY':
      return features.preCopy === true ? undefined : 'preCopy';
    case 'PRE_COPY_P2P':
      if (features.p2p !== true) return 'p2p';
      return features.preCopy === true ? undefined : 'preCopy';
    default:
      return undefined;
  }
}

/** True when a device with `features` has `state` (ERROR counts as present: any device can fail). */
export function hasMigrationState(state: MigrationState, features: MigrationFeatures = {}): boolean {
  return missingFeature(state, features) === undefined;
}

/**
 * The kernel's next-step table for a device with every feature: `NEXT[from][to]` is the first
 * state on the way from `from` to `to`. ERROR as a next step means "no way" (STOP_COPY cannot go
 * back to pre-copy). Devices without a feature skip its states by reading the table again from
 * the skipped state, which is how the kernel derives the smaller machines from this one.
 */
const NEXT: Readonly<Record<MigrationState, Readonly<Record<MigrationState, MigrationState>>>> = {
  STOP: {
    STOP: 'STOP',
    RUNNING: 'RUNNING_P2P',
    PRE_COPY: 'RUNNING_P2P',
    PRE_COPY_P2P: 'RUNNING_P2P',
    STOP_COPY: 'STOP_COPY',
    RESUMING: 'RESUMING',
    RUNNING_P2P: 'RUNNING_P2P',
    ERROR: 'ERROR',
  },
  RUNNING: {
    STOP: 'RUNNING_P2P',
    RUNNING: 'RUNNING',
    PRE_COPY: 'PRE_COPY',
    PRE_COPY_P2P: 'RUNNING_P2P',
    STOP_COPY: 'RUNNING_P2P',
    RESUMING: 'RUNNING_P2P',
    RUNNING_P2P: 'RUNNING_P2P',
    ERROR: 'ERROR',
  },
  PRE_COPY: {
    STOP: 'RUNNING',
    RUNNING: 'RUNNING',
    PRE_COPY: 'PRE_COPY',
    PRE_COPY_P2P: 'PRE_COPY_P2P',
    STOP_COPY: 'PRE_COPY_P2P',
    RESUMING: 'RUNNING',
    RUNNING_P2P: 'RUNNING',
    ERROR: 'ERROR',
  },
  PRE_COPY_P2P: {
    STOP: 'RUNNING_P2P',
    RUNNING: 'RUNNING_P2P',
    PRE_COPY: 'PRE_COPY',
    PRE_COPY_P2P: 'PRE_COPY_P2P',
    STOP_COPY: 'STOP_COPY',
    RESUMING: 'RUNNING_P2P',
    RUNNING_P2P: 'RUNNING_P2P',
    ERROR: 'ERROR',
  },
  STOP_COPY: {
    STOP: 'STOP',
    RUNNING: 'STOP',
    PRE_COPY: 'ERROR',
    PRE_COPY_P2P: 'ERROR',
    STOP_COPY: 'STOP_COPY',
    RESUMING: 'STOP',
    RUNNING_P2P: 'STOP',
    ERROR: 'ERROR',
  },
  RESUMING: {
    STOP: 'STOP',
    RUNNING: 'STOP',
    PRE_COPY: 'STOP',
    PRE_COPY_P2P: 'STOP',
    STOP_COPY: 'STOP',
    RESUMING: 'RESUMING',
    RUNNING_P2P: 'STOP',
    ERROR: 'ERROR',
  },
  RUNNING_P2P: {
    STOP: 'STOP',
    RUNNING: 'RUNNING',
    PRE_COPY: 'RUNNING',
    PRE_COPY_P2P: 'PRE_COPY_P2P',
    STOP_COPY: 'STOP',
    RESUMING: 'STOP',
    RUNNING_P2P: 'RUNNING_P2P',
    ERROR: 'ERROR',
  },
  ERROR: {
    STOP: 'ERROR',
    RUNNING: 'ERROR',
    PRE_COPY: 'ERROR',
    PRE_COPY_P2P: 'ERROR',
    STOP_COPY: 'ERROR',
    RESUMING: 'ERROR',
    RUNNING_P2P: 'ERROR',
    ERROR: 'ERROR',
  },
};

function checkState(value: unknown, role: string, operation: string): asserts value is MigrationState {
  if (!isMigrationState(value)) throw new InvalidError(operation, `${role} ${String(value)} is not a migration state`);
}

/**
 * The next single step from `from` towards `to` for a device with `features`, as
 * `vfio_mig_get_next_state()` computes it; `from` itself when `from === to`.
 *
 * @throws StateError when `from` is ERROR (only reset leaves it).
 * @throws InvalidError when `to` is ERROR, or the kernel forbids the move (STOP_COPY → PRE_COPY,
 *   STOP_COPY → PRE_COPY_P2P), or a value is not a state.
 * @throws UnsupportedError when `from` or `to` needs a feature the device lacks.
 */
export function migrationNextState(
  from: MigrationState,
  to: MigrationState,
  features: MigrationFeatures = {},
  operation = 'migration.nextState',
): MigrationState {
  checkRequest(from, to, features, operation);
  return nextStep(from, to, features, operation);
}

/**
 * The chain of single steps from `from` to `to`: every state entered, in order, ending with
 * `to`; empty when `from === to`. Throws as {@link migrationNextState} for a refused request.
 */
export function migrationPath(
  from: MigrationState,
  to: MigrationState,
  features: MigrationFeatures = {},
  operation = 'migration.path',
): MigrationState[] {
  checkRequest(from, to, features, operation);
  const path: MigrationState[] = [];
  for (let at = from; at !== to; ) {
    // Every step lands nearer the target; the bound only guards against a bad table edit.
    if (path.length >= MIGRATION_STATES.length) {
      throw new VmedError('State', operation, `no path from ${from} to ${to}: the transition table loops`);
    }
    at = nextStep(at, to, features, operation);
    path.push(at);
  }
  return path;
}

/** The kernel's checks on a request, before any step: both ends valid, present, and not ERROR. */
function checkRequest(from: MigrationState, to: MigrationState, features: MigrationFeatures, operation: string): void {
  checkState(from, 'current state', operation);
  checkState(to, 'target', operation);
  if (from === 'ERROR') throw new StateError(operation, 'the device is in ERROR: only reset leaves it');
  if (to === 'ERROR') throw new InvalidError(operation, 'ERROR cannot be requested: a device enters it only when an arc fails');
  const fromMissing = missingFeature(from, features);
  if (fromMissing !== undefined) {
    throw new UnsupportedError(operation, `current state ${from} needs feature ${fromMissing}, which the device lacks`);
  }
  const toMissing = missingFeature(to, features);
  if (toMissing !== undefined) throw new UnsupportedError(operation, `${to} needs feature ${toMissing}, which the device lacks`);
}

function nextStep(from: MigrationState, to: MigrationState, features: MigrationFeatures, operation: string): MigrationState {
  const next = tableStep(from, to, features);
  if (next === 'ERROR') throw new InvalidError(operation, `${from} → ${to} is not permitted`);
  return next;
}

/** The first step from `from` towards `to` on this device, ERROR when there is no way. */
function tableStep(from: MigrationState, to: MigrationState, features: MigrationFeatures): MigrationState {
  // Skipping a state the device lacks means asking the table again from that state. An ERROR
  // entry means "no way" and ends the search (the kernel's loop has no such stop).
  let next = NEXT[from][to];
  while (next !== 'ERROR' && !hasMigrationState(next, features)) next = NEXT[next][to];
  return next;
}

/**
 * Every single arc a device with `features` may be asked to perform: exactly the arcs that
 * {@link migrationPath} can produce. A device implements one handler case per arc.
 */
export function migrationArcs(features: MigrationFeatures = {}): MigrationArc[] {
  const arcs: MigrationArc[] = [];
  const present = MIGRATION_STATES.filter((s) => s !== 'ERROR' && hasMigrationState(s, features));
  for (const from of present) {
    const seen = new Set<MigrationState>();
    for (const to of present) {
      if (from === to) continue;
      const next = tableStep(from, to, features);
      if (next !== 'ERROR' && !seen.has(next)) {
        seen.add(next);
        arcs.push({ from, to: next });
      }
    }
  }
  return arcs;
}

/** True when `from → to` is one single arc for a device with `features`. */
export function isMigrationArc(from: MigrationState, to: MigrationState, features: MigrationFeatures = {}): boolean {
  return migrationArcs(features).some((a) => a.from === from && a.to === to);
}

/** The device's work for one arc; the machine enters `to` only after it returns (or resolves). */
export type MigrationArcHandler = (from: MigrationState, to: MigrationState) => void | Promise<void>;

/** A handler failed: the arc it was performing, and the target the transition was heading for. */
export class MigrationArcError extends VmedError {
  override readonly name = 'MigrationArcError';
  /** The state the failed arc started from. */
  readonly from: MigrationState;
  /** The state the failed arc was entering. */
  readonly to: MigrationState;
  /** The target of the whole transition. */
  readonly target: MigrationState;

  /** The code is the handler's own when it threw a {@link VmedError} (a bad stream stays `Invalid`), else `Io`. */
  constructor(arc: MigrationArc, target: MigrationState, cause: unknown, details: VmedErrorDetails = {}) {
    const code: VmedErrorCode = cause instanceof VmedError ? cause.code : 'Io';
    const reason = cause instanceof Error ? cause.message : String(cause);
    const via = target === arc.to ? '' : ` (on the way to ${target})`;
    super(code, OPERATION, `arc ${arc.from} → ${arc.to}${via} failed, device is now in ERROR: ${reason}`, {
      ...details,
      cause,
    });
    this.from = arc.from;
    this.to = arc.to;
    this.target = target;
  }
}

/** Events of a {@link MigrationStateMachine}; listeners run synchronously, after the state changed. */
export interface MigrationStateMachineEvents {
  /** One arc's handler finished and the machine entered `to`. */
  step: [from: MigrationState, to: MigrationState];
  /** A requested transition reached its target; `path` lists the states entered (empty for a no-op). */
  transitioned: [from: MigrationState, to: MigrationState, path: readonly MigrationState[]];
  /** An arc's handler threw; the machine is now in ERROR and `error` is what `transition` rejects with. */
  failed: [error: MigrationArcError];
  /** `reset()` took the machine from `from` back to RUNNING. */
  reset: [from: MigrationState];
}

/** How a {@link MigrationStateMachine} is built. */
export interface MigrationStateMachineOptions {
  /** The device's work for each arc (see {@link migrationArcs} for the arcs it will be asked for). */
  readonly handler: MigrationArcHandler;
  /** Optional features of the device; none by default. */
  readonly features?: MigrationFeatures;
}

/**
 * One device's migration state, starting in RUNNING. `transition(target)` walks the kernel's
 * chain of arcs, calling the handler for each; one transition at a time. If a handler throws,
 * the machine goes to ERROR and stays there until `reset()`.
 */
export class MigrationStateMachine extends EventEmitter<MigrationStateMachineEvents> {
  readonly features: Readonly<Required<MigrationFeatures>>;
  private current: MigrationState = 'RUNNING';
  private busy = false;
  private readonly handler: MigrationArcHandler;

  constructor(options: MigrationStateMachineOptions) {
    super();
    if (typeof options.handler !== 'function') throw new InvalidError('migration.create', 'handler must be a function');
    this.handler = options.handler;
    this.features = Object.freeze({ p2p: options.features?.p2p === true, preCopy: options.features?.preCopy === true });
  }

  /** The current state; during a transition, the last state entered. */
  get state(): MigrationState {
    return this.current;
  }

  /** True while a transition is being walked. */
  get transitioning(): boolean {
    return this.busy;
  }

  /**
   * Moves to `target` through the kernel's chain of arcs and resolves with the states entered.
   * A refused target changes nothing. If an arc's handler throws, the machine is left in ERROR
   * (the states before it were entered) and the promise rejects with a {@link MigrationArcError}.
   *
   * @throws StateError when another transition is in progress, or the machine is in ERROR.
   * @throws InvalidError / UnsupportedError for a refused target (see {@link migrationNextState}).
   * @throws MigrationArcError when a handler fails.
   */
  async transition(target: MigrationState): Promise<MigrationState[]> {
    if (this.busy) throw new StateError(OPERATION, `a transition is already in progress (at ${this.current})`);
    const start = this.current;
    // Computed whole before the first arc, so that a refused target runs no handler at all.
    const path = migrationPath(start, target, this.features, OPERATION);
    this.busy = true;
    try {
      for (const to of path) {
        const from = this.current;
        try {
          await this.handler(from, to);
        } catch (cause) {
          const error = new MigrationArcError({ from, to }, target, cause);
          this.current = 'ERROR';
          this.emit('failed', error);
          throw error;
        }
        this.current = to;
        this.emit('step', from, to);
      }
    } finally {
      this.busy = false;
    }
    this.emit('transitioned', start, target, path);
    return path;
  }

  /**
   * Returns the machine to RUNNING from any state, ERROR included: the migration half of a
   * device reset (VFIO_DEVICE_RESET). The device's own reset is the caller's; any save or
   * resume stream in flight is abandoned.
   *
   * @throws StateError while a transition is in progress.
   */
  reset(): void {
    if (this.busy) throw new StateError('migration.reset', `a transition is in progress (at ${this.current})`);
    const from = this.current;
    this.current = 'RUNNING';
    this.emit('reset', from);
  }
}
