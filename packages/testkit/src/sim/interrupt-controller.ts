/**
 * The sim guest's interrupt hardware: one LAPIC (APIC id 0) that counts how often each
 * vector's handler ran, and an IOAPIC whose pins the backend's line IRQs drive, with the
 * remote-IRR rule that makes level lines work: a level interrupt is not delivered again until
 * the guest's EOI, and the EOI re-delivers it while the line is still high.
 *
 * Simplification: every accepted MSI or edge is counted at once (the handler "runs"); a real
 * LAPIC would coalesce a vector already pending in IRR. The suite never relies on coalescing.
 */
import { InvalidError, hex, type LineTrigger, type MsiMessage } from '@vmed/core';

/** A line IRQ as the IOAPIC pin sees it. */
export interface LineSource {
  readonly trigger: LineTrigger;
  /** Whether a level source holds the line high. */
  readonly high: boolean;
  /** Called on each guest EOI of the pin's vector (level sources, when resample is offered). */
  noteResample(): void;
}

/** An MSI the LAPIC did not accept, with why. */
export interface StrayInterrupt {
  readonly address: bigint;
  readonly data: number;
  readonly reason: string;
}

/** Vector the sim guest programs for GSI 0 (the next pins follow). */
export const LINE_VECTOR_BASE = 0x20;

interface Pin {
  readonly sources: Set<LineSource>;
  remoteIrr: boolean;
}

interface Waiter {
  readonly vector: number;
  readonly count: number;
  readonly resolve: (reached: boolean) => void;
}

export class SimInterruptController {
  readonly #counts = new Array<number>(256).fill(0);
  readonly #pins: Pin[];
  readonly #waiters = new Set<Waiter>();
  readonly #pendingEois = new Set<NodeJS.Immediate>();
  readonly #autoEoi: boolean;
  readonly #resample: boolean;
  readonly #stray: StrayInterrupt[] = [];
  #stopped = false;

  constructor(pins: number, autoEoi: boolean, resample: boolean) {
    this.#pins = Array.from({ length: pins }, () => ({ sources: new Set<LineSource>(), remoteIrr: false }));
    this.#autoEoi = autoEoi;
    this.#resample = resample;
  }

  get pinCount(): number {
    return this.#pins.length;
  }

  /** MSIs the LAPIC refused (wrong address, destination, mode or an illegal vector); the last 64. */
  get stray(): readonly StrayInterrupt[] {
    return this.#stray;
  }

  /** How often the handler for `vector` ran. */
  count(vector: number): number {
    return this.#counts[checkVector(vector, 'guest.interruptCount')] as number;
  }

  /** An MSI write reaching the LAPIC window (or not). Returns whether a handler ran. */
  deliverMsi(message: MsiMessage): boolean {
    if (this.#stopped) return false;
    const reason = refuseMsi(message);
    if (reason !== undefined) {
      this.#stray.push({ address: message.address, data: message.data, reason });
      if (this.#stray.length > 64) this.#stray.shift();
      return false;
    }
    this.#run(message.data & 0xff);
    return true;
  }

  /** The trigger mode a pin is wired for, if any source is attached. */
  pinTrigger(line: number): LineTrigger | undefined {
    const first = this.#pin(line).sources.values().next();
    return first.done === true ? undefined : first.value.trigger;
  }

  attach(line: number, source: LineSource): void {
    this.#pin(line).sources.add(source);
  }

  detach(line: number, source: LineSource): void {
    this.#pin(line).sources.delete(source);
  }

  /** An edge on the pin: the handler runs once. */
  pulse(line: number): void {
    if (!this.#stopped) this.#run(LINE_VECTOR_BASE + line);
  }

  /** A level source changed: deliver if the line is high and not already awaiting EOI. */
  levelChanged(line: number): void {
    const pin = this.#pin(line);
    if (this.#stopped || pin.remoteIrr || !isHigh(pin)) return;
    this.#raiseLevel(line, pin);
  }

  /**
   * The guest's EOI for `vector`. For a level pin awaiting EOI this clears remote IRR,
   * signals resample to the pin's level sources and re-delivers while the line is high.
   */
  eoi(vector: number): void {
    checkVector(vector, 'guest.eoi');
    if (this.#stopped) return;
    const line = vector - LINE_VECTOR_BASE;
    const pin = this.#pins[line];
    if (pin === undefined || !pin.remoteIrr) return;
    pin.remoteIrr = false;
    if (this.#resample) for (const s of [...pin.sources]) if (s.trigger === 'level') s.noteResample();
    if (isHigh(pin)) this.#raiseLevel(line, pin);
  }

  /** Waits until `vector`'s handler has run `count` times; false on timeout or guest stop. */
  waitFor(vector: number, count: number, timeoutMs: number): Promise<boolean> {
    checkVector(vector, 'guest.waitForInterrupts');
    if (this.count(vector) >= count) return Promise.resolve(true);
    if (this.#stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), Math.max(0, timeoutMs));
      const waiter: Waiter = { vector, count, resolve: (reached) => finish(reached) };
      const finish = (reached: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve(reached);
      };
      this.#waiters.add(waiter);
    });
  }

  /** The guest stops: no more deliveries, queued EOIs dropped, waiters told. */
  stop(): void {
    this.#stopped = true;
    for (const i of this.#pendingEois) clearImmediate(i);
    this.#pendingEois.clear();
    for (const w of [...this.#waiters]) w.resolve(false);
  }

  #raiseLevel(line: number, pin: Pin): void {
    pin.remoteIrr = true;
    const vector = LINE_VECTOR_BASE + line;
    this.#run(vector);
    if (this.#autoEoi) {
      // The handler's EOI comes after the guest returns to the event loop, so a line left
      // high storms at loop speed as on hardware, without starving timers and I/O.
      const handle = setImmediate(() => {
        this.#pendingEois.delete(handle);
        this.eoi(vector);
      });
      this.#pendingEois.add(handle);
    }
  }

  #run(vector: number): void {
    this.#counts[vector] = (this.#counts[vector] as number) + 1;
    const now = this.#counts[vector] as number;
    for (const w of [...this.#waiters]) if (w.vector === vector && now >= w.count) w.resolve(true);
  }

  #pin(line: number): Pin {
    const pin = this.#pins[line];
    if (pin === undefined) throw new InvalidError('guest.ioapic', `GSI ${line} is not one of the sim IOAPIC's ${this.#pins.length} pins`);
    return pin;
  }
}

function isHigh(pin: Pin): boolean {
  for (const s of pin.sources) if (s.trigger === 'level' && s.high) return true;
  return false;
}

/** Why the sim guest's LAPIC refuses an MSI (x86 MSI address/data format), or undefined. */
function refuseMsi(m: MsiMessage): string | undefined {
  if (m.address >> 32n !== 0n || (m.address & 0xfff0_0000n) !== 0xfee0_0000n) return `address ${hex(m.address)} is not in the LAPIC window 0xfee00000`;
  const destination = Number((m.address >> 12n) & 0xffn);
  const logical = (m.address & 0x4n) !== 0n;
  // APIC id 0; in flat logical mode its logical id is bit 0.
  const forUs = logical ? (destination & 1) !== 0 : destination === 0 || destination === 0xff;
  if (!forUs) return `destination ${hex(destination)} (${logical ? 'logical' : 'physical'}) is not this guest's APIC`;
  const mode = (m.data >>> 8) & 7;
  if (mode !== 0 && mode !== 1) return `delivery mode ${mode} is not modelled (fixed and lowest-priority are)`;
  const vector = m.data & 0xff;
  if (vector < 16) return `vector ${vector} is illegal (0..15 are reserved)`;
  return undefined;
}

function checkVector(vector: number, operation: string): number {
  if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new InvalidError(operation, `vector ${vector} is not 0..255`);
  return vector;
}
