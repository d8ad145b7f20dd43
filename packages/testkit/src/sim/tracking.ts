/**
 * Dirty logging and write-protect page tracking on the sim.
 *
 * `pull` (default): the sim logs every guest store that lands in RAM — including tracked
 * writes the handler applied, since the guest wrote them — and `pull()` returns and clears
 * the log; writes through views and `memory.write` are the device model's and are not logged
 * (the core marks them). `push` (to test callers written for Xen): `pull()` is `Unsupported`,
 * `push()` and guest stores go to a toolstack-side log the test reads with
 * `SimBackend.takeToolstackDirtyLog()`.
 */
import {
  ExistsError,
  InvalidError,
  StateError,
  UnsupportedError,
  formatRange,
  type AccessSize,
  type AddressRange,
  type DirtyBitmap,
  type DirtyLog,
  type PageTrack,
  type TrackedWrite,
  type TrackedWriteAction,
  type TrackedWriteHandler,
} from '@vmed/core';
import { checkFunction, checkPageAligned, checkRange, overlaps } from './checks.js';
import { SimHandle } from './handle.js';
import type { SimMachine } from './machine.js';

export class SimPageTrack extends SimHandle implements PageTrack {
  readonly kind = 'page-track';
  readonly range: AddressRange;
  readonly #handler: TrackedWriteHandler;

  constructor(machine: SimMachine, range: AddressRange, handler: TrackedWriteHandler) {
    super(machine.pageTracks);
    this.range = range;
    this.#handler = handler;
    machine.pageTracks.add(this);
  }

  touches(address: bigint, size: AccessSize): boolean {
    return overlaps(this.range.base, this.range.length, address, BigInt(size));
  }

  /** Runs the handler for a caught guest store and checks its answer. */
  handle(write: TrackedWrite): TrackedWriteAction {
    const action = this.#handler(Object.freeze({ ...write }));
    if (action !== 'apply' && action !== 'drop') throw new InvalidError('pageTrack.write', `handler returned ${String(action)}, not "apply" or "drop"`);
    return action;
  }

  protected release(): void {}
}

export function trackWrites(machine: SimMachine, rangeArg: AddressRange, handler: TrackedWriteHandler): SimPageTrack {
  const op = 'pageTrack.create';
  machine.guard(op);
  if (!machine.capabilities.pageTracking) throw new UnsupportedError(op, 'this session has no write-protect tracking');
  const range = checkRange(rangeArg, op);
  checkPageAligned(range, op);
  if (!machine.ram.contains(range.base, Number(range.length))) throw new InvalidError(op, `${formatRange(range)} is not all guest RAM`);
  checkFunction(handler, 'handler', op);
  for (const t of machine.pageTracks) {
    if (overlaps(t.range.base, t.range.length, range.base, range.length)) {
      throw new ExistsError(op, `${formatRange(range)} overlaps the tracked range ${formatRange(t.range)}`);
    }
  }
  return new SimPageTrack(machine, range, handler);
}

export class SimDirtyLog implements DirtyLog {
  readonly mode: 'pull' | 'push';
  readonly #machine: SimMachine;

  constructor(machine: SimMachine) {
    this.#machine = machine;
    const mode = machine.capabilities.dirtyTracking;
    this.mode = mode === false ? 'pull' : mode;
  }

  get active(): boolean {
    return this.#machine.dirtyActive;
  }

  /** Starts with a clean log (no `KVM_DIRTY_LOG_INITIALLY_SET`). Starting twice is harmless. */
  start(): void {
    this.#check('dirty.start');
    if (this.#machine.dirtyActive) return;
    this.#machine.ram.clearDirty();
    this.#machine.dirtyActive = true;
  }

  stop(): void {
    this.#check('dirty.stop');
    this.#machine.dirtyActive = false;
    this.#machine.ram.clearDirty();
  }

  pull(): DirtyBitmap[] {
    const op = 'dirty.pull';
    this.#check(op);
    if (this.mode === 'push') throw new UnsupportedError(op, 'in push mode the log belongs to the toolstack');
    if (!this.#machine.dirtyActive) throw new StateError(op, 'dirty logging is not started');
    return this.#machine.ram.takeDirty();
  }

  push(rangeArg: AddressRange): void {
    const op = 'dirty.push';
    this.#check(op);
    const range = checkRange(rangeArg, op);
    if (this.mode === 'pull') return;
    const length = Number(range.length);
    this.#machine.ram.pieces(range.base, length, op);
    if (this.#machine.dirtyActive) this.#machine.ram.markDirty(range.base, length);
  }

  #check(operation: string): void {
    this.#machine.guard(operation);
    if (this.#machine.capabilities.dirtyTracking === false) throw new UnsupportedError(operation, 'this session has no dirty tracking');
  }
}
