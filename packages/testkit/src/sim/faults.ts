/**
 * Fault injection: the failures real hypervisors produce only rarely (a pin over
 * `RLIMIT_MEMLOCK`, a failed foreign mapping, a routing table full because another user took
 * the GSIs, a slow I/O context), on demand. An injected failure leaves no trace: nothing is
 * counted in `resources()` and no state changes.
 */
import { InvalidError, IoError, NoSpaceError, type VmedError } from '@vmed/core';

/** Error a failed pin is reported with: KVM's `mlock` over the limit, or a Xen mapping failure. */
export type PinFaultCode = 'NoSpace' | 'Io';

export interface SimFaults {
  /**
   * The next `count` pins fail: `NoSpace` with `ENOMEM` (KVM's `mlock` over `RLIMIT_MEMLOCK`)
   * or `Io` with `EFAULT` (a Xen foreign mapping of the frames failing).
   */
  failPins(count: number, code?: PinFaultCode): void;
  /**
   * The next `count` host mappings fail with `Io`/`ENOMEM`: views, views of pins, shared
   * memory allocations and direct mappings.
   */
  failMaps(count: number): void;
  /**
   * Caps the routes this session can hold below `capabilities.maxMsiRoutes` (the irqchip's
   * table is shared); `undefined` lifts the cap. Routes already held are kept.
   */
  limitRoutes(max: number | undefined): void;
  /**
   * Each guest access that reaches the sink waits `delayMs` (an `await`, the I/O context
   * being busy) before the sink is called and the guest sees the result. `count` limits it
   * to the next N requests; default: until cleared. `0` clears.
   */
  slowRequests(delayMs: number, count?: number): void;
  /** Lifts every injected fault. */
  clear(): void;
  /** What is armed right now. */
  readonly armed: {
    readonly pins: number;
    readonly maps: number;
    readonly routeLimit: number | undefined;
    readonly slowRequests: { readonly delayMs: number; readonly remaining: number } | undefined;
  };
}

const OP = 'sim.faults';

/** The sim's fault plan; the backend consumes armed faults through the `take*` methods. */
export class FaultPlan implements SimFaults {
  #pins = 0;
  #pinCode: PinFaultCode = 'NoSpace';
  #maps = 0;
  #routeLimit: number | undefined;
  #slow: { delayMs: number; remaining: number } | undefined;
  readonly #guard: (operation: string) => void;

  constructor(guard: (operation: string) => void) {
    this.#guard = guard;
  }

  failPins(count: number, code: PinFaultCode = 'NoSpace'): void {
    this.#guard(`${OP}.failPins`);
    if (code !== 'NoSpace' && code !== 'Io') throw new InvalidError(`${OP}.failPins`, `unknown code ${String(code)}`);
    this.#pins = count_(count);
    this.#pinCode = code;
  }

  failMaps(count: number): void {
    this.#guard(`${OP}.failMaps`);
    this.#maps = count_(count);
  }

  limitRoutes(max: number | undefined): void {
    this.#guard(`${OP}.limitRoutes`);
    this.#routeLimit = max === undefined ? undefined : count_(max);
  }

  slowRequests(delayMs: number, count = Number.POSITIVE_INFINITY): void {
    this.#guard(`${OP}.slowRequests`);
    if (!Number.isFinite(delayMs) || delayMs < 0) throw new InvalidError(`${OP}.slowRequests`, `delay ${delayMs} must be a non-negative number of ms`);
    if (count !== Number.POSITIVE_INFINITY) count_(count);
    this.#slow = delayMs === 0 || count === 0 ? undefined : { delayMs, remaining: count };
  }

  clear(): void {
    this.#guard(`${OP}.clear`);
    this.#pins = 0;
    this.#maps = 0;
    this.#routeLimit = undefined;
    this.#slow = undefined;
  }

  get armed(): SimFaults['armed'] {
    return {
      pins: this.#pins,
      maps: this.#maps,
      routeLimit: this.#routeLimit,
      slowRequests: this.#slow === undefined ? undefined : { ...this.#slow },
    };
  }

  /** The error to throw for this pin, if one is armed. */
  takePinFailure(operation: string): VmedError | undefined {
    if (this.#pins === 0) return undefined;
    this.#pins--;
    return this.#pinCode === 'NoSpace'
      ? new NoSpaceError(operation, 'pin refused (injected fault: over RLIMIT_MEMLOCK)', { errno: 'ENOMEM', bytesDone: 0 })
      : new IoError(operation, 'pin refused (injected fault: mapping the frames failed)', { errno: 'EFAULT', bytesDone: 0 });
  }

  /** The error to throw for this host mapping, if one is armed. */
  takeMapFailure(operation: string): VmedError | undefined {
    if (this.#maps === 0) return undefined;
    this.#maps--;
    return new IoError(operation, 'host mapping failed (injected fault)', { errno: 'ENOMEM', bytesDone: 0 });
  }

  /** The route cap in force. */
  routeLimit(max: number): number {
    return this.#routeLimit === undefined ? max : Math.min(max, this.#routeLimit);
  }

  /** How long the next sink call waits; 0 when no slowdown is armed. */
  takeRequestDelay(): number {
    const slow = this.#slow;
    if (slow === undefined) return 0;
    slow.remaining--;
    if (slow.remaining <= 0) this.#slow = undefined;
    return slow.delayMs;
  }
}

function count_(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidError(OP, `count ${n} must be a non-negative integer`);
  return n;
}
