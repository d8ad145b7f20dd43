/**
 * MSI routes and wired lines, delivered to the sim guest's interrupt controller.
 *
 * An MSI route is effectively masked while `masked` or while no message is programmed; a
 * trigger then sets `pending`, and the step that makes it deliverable (unmask, or the first
 * `setMsi` on an unmasked route) delivers it once and clears it.
 */
import {
  ExistsError,
  InvalidError,
  NoSpaceError,
  UnsupportedError,
  type LineIrq,
  type LineTarget,
  type LineTrigger,
  type MsiMessage,
  type MsiRoute,
} from '@vmed/core';
import { checkMsiMessage, checkPciAddress } from './checks.js';
import { SimHandle } from './handle.js';
import type { LineSource } from './interrupt-controller.js';
import type { SimMachine } from './machine.js';

export class SimMsiRoute extends SimHandle implements MsiRoute {
  readonly kind = 'msi-route';
  readonly id: number;
  readonly #machine: SimMachine;
  #masked = true;
  #pending = false;
  #message: MsiMessage | undefined;

  constructor(machine: SimMachine) {
    super(machine.routes);
    this.#machine = machine;
    this.id = machine.allocateRouteId();
    machine.routes.add(this);
  }

  get masked(): boolean {
    return this.#masked;
  }

  get pending(): boolean {
    return this.#pending;
  }

  get message(): MsiMessage | undefined {
    return this.#message;
  }

  setMsi(message: MsiMessage): void {
    const op = 'msi.setMsi';
    this.guard(op);
    this.#message = checkMsiMessage(message, op);
    this.#deliverPending();
  }

  mask(): void {
    this.guard('msi.mask');
    this.#masked = true;
  }

  unmask(): void {
    this.guard('msi.unmask');
    this.#masked = false;
    this.#deliverPending();
  }

  trigger(): void {
    this.guard('msi.trigger');
    if (this.#masked || this.#message === undefined) this.#pending = true;
    else this.#machine.interrupts.deliverMsi(this.#message);
  }

  #deliverPending(): void {
    if (!this.#pending || this.#masked || this.#message === undefined) return;
    this.#pending = false;
    this.#machine.interrupts.deliverMsi(this.#message);
  }

  protected release(): void {
    this.#pending = false;
    this.#machine.freeRouteId(this.id);
  }
}

export class SimLineIrq extends SimHandle implements LineIrq, LineSource {
  readonly kind = 'line';
  readonly target: LineTarget;
  readonly trigger: LineTrigger;
  readonly #machine: SimMachine;
  #asserted = false;
  #resamples = 0;

  constructor(machine: SimMachine, target: LineTarget, trigger: LineTrigger) {
    super(machine.lines);
    this.#machine = machine;
    this.target = target;
    this.trigger = trigger;
    machine.interrupts.attach(target.line, this);
    machine.lines.add(this);
  }

  get asserted(): boolean {
    return this.#asserted;
  }

  get high(): boolean {
    return this.#asserted;
  }

  get resamples(): number {
    return this.#resamples;
  }

  noteResample(): void {
    this.#resamples++;
  }

  assert(): void {
    this.guard('line.assert');
    if (this.trigger === 'edge') {
      this.#machine.interrupts.pulse(this.target.line);
    } else if (!this.#asserted) {
      this.#asserted = true;
      this.#machine.interrupts.levelChanged(this.target.line);
    }
  }

  deassert(): void {
    this.guard('line.deassert');
    if (this.trigger === 'level') this.#asserted = false;
  }

  protected release(): void {
    this.#asserted = false;
    this.#machine.interrupts.detach(this.target.line, this);
  }
}

export function createMsiRoute(machine: SimMachine): SimMsiRoute {
  const op = 'msi.createRoute';
  machine.guard(op);
  const limit = machine.faults.routeLimit(machine.capabilities.maxMsiRoutes);
  if (machine.routes.size >= limit) throw new NoSpaceError(op, `all ${limit} MSI routes are in use`, { errno: 'ENOSPC' });
  return new SimMsiRoute(machine);
}

export function signalMsi(machine: SimMachine, message: MsiMessage): void {
  const op = 'msi.signal';
  machine.guard(op);
  if (!machine.capabilities.signalMsi) throw new UnsupportedError(op, 'this session cannot signal an MSI without a route');
  machine.interrupts.deliverMsi(checkMsiMessage(message, op));
}

export function createLineIrq(machine: SimMachine, targetArg: LineTarget, trigger: LineTrigger): SimLineIrq {
  const op = 'line.create';
  machine.guard(op);
  const caps = machine.capabilities.lineIrq;
  if (caps === false) throw new UnsupportedError(op, 'this guest has no wired interrupt lines');
  if (trigger !== 'edge' && trigger !== 'level') throw new InvalidError(op, `trigger must be "edge" or "level", got ${String(trigger)}`);
  if (!caps[trigger]) throw new UnsupportedError(op, `this guest has no ${trigger}-triggered lines`);
  const target = checkLineTarget(machine, targetArg, op);
  const wired = machine.interrupts.pinTrigger(target.line);
  if (wired !== undefined && wired !== trigger) throw new ExistsError(op, `GSI ${target.line} is already wired ${wired}-triggered`);
  return new SimLineIrq(machine, target, trigger);
}

function checkLineTarget(machine: SimMachine, target: LineTarget, op: string): LineTarget {
  if (typeof target !== 'object' || target === null) throw new InvalidError(op, 'target must be a LineTarget');
  const pins = machine.interrupts.pinCount;
  if (!Number.isInteger(target.line) || target.line < 0 || target.line >= pins) {
    throw new InvalidError(op, `line ${String(target.line)} is not a GSI of this guest (0..${pins - 1})`);
  }
  if (target.kind === 'gsi') return Object.freeze({ kind: 'gsi', line: target.line });
  if (target.kind === 'intx') {
    checkPciAddress(target.device, op);
    if (target.pin !== 1 && target.pin !== 2 && target.pin !== 3 && target.pin !== 4) throw new InvalidError(op, `INTx pin ${String(target.pin)} is not 1..4`);
    return Object.freeze({ kind: 'intx', device: Object.freeze({ ...target.device }), pin: target.pin, line: target.line });
  }
  throw new InvalidError(op, `target kind ${String((target as { kind: unknown }).kind)} is not "gsi" or "intx"`);
}
