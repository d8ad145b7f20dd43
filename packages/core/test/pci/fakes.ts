/**
 * Small stand-ins for the backend's interrupt objects, implementing the contract's semantics
 * (a masked or unprogrammed route keeps the interrupt pending; unmask delivers it once) and
 * recording every delivery and line transition, so tests assert what the guest would see.
 */
import {
  BadHandleError,
  NoSpaceError,
  type LineIrq,
  type LineTarget,
  type MsiMessage,
  type MsiRoute,
  type PciAddress,
  type PciFunctionDefinition,
} from '../../src/index.js';
import { PciFunction, type BarLocation } from '../../src/pci/index.js';

export interface Delivery {
  readonly route: number;
  readonly message: MsiMessage;
}

export class FakeMsiRoute implements MsiRoute {
  masked = true;
  pending = false;
  disposed = false;
  message: MsiMessage | undefined;
  /** Calls in order, to check mask/program/unmask ordering. */
  readonly calls: string[] = [];

  constructor(
    readonly id: number,
    private readonly deliveries: Delivery[],
  ) {}

  setMsi(message: MsiMessage): void {
    this.live('setMsi');
    this.calls.push('setMsi');
    this.message = message;
  }

  mask(): void {
    this.live('mask');
    this.calls.push('mask');
    this.masked = true;
  }

  unmask(): void {
    this.live('unmask');
    this.calls.push('unmask');
    this.masked = false;
    if (this.pending && this.message !== undefined) {
      this.pending = false;
      this.deliver();
    }
  }

  trigger(): void {
    this.live('trigger');
    this.calls.push('trigger');
    if (this.masked || this.message === undefined) this.pending = true;
    else this.deliver();
  }

  dispose(): void {
    this.disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private deliver(): void {
    this.deliveries.push({ route: this.id, message: this.message as MsiMessage });
  }

  private live(op: string): void {
    if (this.disposed) throw new BadHandleError(`fake.route.${op}`);
  }
}

export class FakeLineIrq implements LineIrq {
  readonly trigger = 'level' as const;
  asserted = false;
  disposed = false;
  readonly resamples = 0;
  /** Every level change, in order. */
  readonly history: boolean[] = [];

  constructor(readonly target: LineTarget) {}

  assert(): void {
    if (this.disposed) throw new BadHandleError('fake.line.assert');
    this.asserted = true;
    this.history.push(true);
  }

  deassert(): void {
    if (this.disposed) throw new BadHandleError('fake.line.deassert');
    this.asserted = false;
    this.history.push(false);
  }

  dispose(): void {
    this.disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export interface BarChange {
  readonly index: number;
  readonly before: BarLocation | undefined;
  readonly after: BarLocation | undefined;
}

/** A function wired to fakes, with everything it did recorded. */
export interface Harness {
  readonly fn: PciFunction;
  readonly routes: FakeMsiRoute[];
  readonly deliveries: Delivery[];
  readonly lines: FakeLineIrq[];
  readonly barChanges: BarChange[];
  readonly errors: unknown[];
  /** Routes alive now. */
  liveRoutes(): FakeMsiRoute[];
  /** Most routes that may be alive at once (for NoSpace); mutable. */
  routeLimit: number;
  /** Makes line creation fail (Xen PVH has no lines). */
  lineUnsupported: boolean;
}

export const TEST_ADDRESS: PciAddress = { segment: 0, bus: 0, device: 3, function: 0 };

export function harness(definition: PciFunctionDefinition, address: PciAddress = TEST_ADDRESS, intxLine = 11): Harness {
  const h = {
    routes: [] as FakeMsiRoute[],
    deliveries: [] as Delivery[],
    lines: [] as FakeLineIrq[],
    barChanges: [] as BarChange[],
    errors: [] as unknown[],
    routeLimit: Number.POSITIVE_INFINITY,
    lineUnsupported: false,
    liveRoutes(): FakeMsiRoute[] {
      return this.routes.filter((r) => !r.disposed);
    },
  };
  const fn: PciFunction = new PciFunction(definition, {
    address,
    intxLine,
    createMsiRoute: () => {
      if (h.liveRoutes().length >= h.routeLimit) throw new NoSpaceError('fake.createMsiRoute', 'route table full');
      const route = new FakeMsiRoute(h.routes.length, h.deliveries);
      h.routes.push(route);
      return route;
    },
    createLineIrq: (target) => {
      if (h.lineUnsupported) throw new NoSpaceError('fake.createLineIrq', 'no lines');
      const line = new FakeLineIrq(target);
      h.lines.push(line);
      return line;
    },
    onBarChange: (index, before, after) => h.barChanges.push({ index, before, after }),
    onError: (e) => h.errors.push(e),
  });
  return Object.assign(h, { fn });
}
