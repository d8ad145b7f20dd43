/**
 * The MSI routes behind one function's MSI or MSI-X vectors: one route per vector, created
 * lazily — when the guest's programming makes a vector deliverable (enabled and unmasked), or
 * when the device raises it while masked so that the route can hold it pending.
 *
 * Each route follows what the guest programmed: masked from the effective mask, its message
 * kept equal to the guest's. The order matters (the classic bug): a vector is masked before
 * its message changes, and unmasked only after, so no interrupt leaves with a half-written
 * message. A pending interrupt is kept by the route while masked and delivered once on unmask.
 *
 * A route that cannot be created (`NoSpace` when KVM's GSI table is full) makes its vector
 * undeliverable; the error is reported once, and creation is tried again only after
 * {@link VectorRoutes.clearFailures} (the guest disabling MSI/MSI-X). Nothing here throws:
 * backend failures go to the reporter, because these calls run on guest writes.
 */
import type { MsiMessage, MsiRoute } from '../backend/interrupts.js';

/** What the guest programmed for a vector. */
export interface VectorProgram {
  readonly message: MsiMessage;
  /** Effective mask: function mask, vector mask, or not enabled. */
  readonly masked: boolean;
}

/** Routes of one MSI or MSI-X capability. */
export class VectorRoutes {
  private readonly routes: Array<MsiRoute | undefined>;
  private readonly failed: boolean[];

  constructor(
    readonly count: number,
    private readonly createRoute: () => MsiRoute,
    private readonly report: (error: unknown) => void,
  ) {
    this.routes = new Array<MsiRoute | undefined>(count).fill(undefined);
    this.failed = new Array<boolean>(count).fill(false);
  }

  /** The route of `vector`, if one exists. */
  route(vector: number): MsiRoute | undefined {
    return this.routes[vector];
  }

  /** Whether `vector` holds an interrupt back while masked. */
  pending(vector: number): boolean {
    return this.routes[vector]?.pending ?? false;
  }

  /** Whether creating `vector`'s route failed since the last {@link clearFailures}. */
  failedVector(vector: number): boolean {
    return this.failed[vector] === true;
  }

  /**
   * Brings `vector`'s route in line with `program`. Creates the route when `create` is set
   * and none exists (and creation has not failed). Returns the route, if there is one.
   */
  sync(vector: number, program: VectorProgram, create: boolean): MsiRoute | undefined {
    let route = this.routes[vector];
    if (route === undefined) {
      if (!create || this.failed[vector] === true) return undefined;
      route = this.tryCreate(vector);
      if (route === undefined) return undefined;
    }
    this.apply(route, program);
    return route;
  }

  /** Signals `vector`: delivered now, or left pending by its masked route. */
  trigger(vector: number, program: VectorProgram): void {
    const route = this.sync(vector, program, true);
    if (route === undefined) return;
    try {
      route.trigger();
    } catch (e) {
      this.report(e);
    }
  }

  /** Recreates a pending interrupt (state load): raised while masked, then `program` applied. */
  restorePending(vector: number, program: VectorProgram): void {
    const route = this.sync(vector, { message: program.message, masked: true }, true);
    if (route === undefined) return;
    try {
      route.trigger();
    } catch (e) {
      this.report(e);
    }
    this.apply(route, program);
  }

  /** Lets vectors whose route creation failed try again. */
  clearFailures(): void {
    this.failed.fill(false);
  }

  /** Disposes every route (pending interrupts are dropped) and forgets failures. */
  disposeAll(): void {
    for (let v = 0; v < this.count; v++) {
      const route = this.routes[v];
      if (route === undefined) continue;
      this.routes[v] = undefined;
      try {
        route.dispose();
      } catch (e) {
        this.report(e);
      }
    }
    this.clearFailures();
  }

  private tryCreate(vector: number): MsiRoute | undefined {
    try {
      const route = this.createRoute();
      this.routes[vector] = route;
      return route;
    } catch (e) {
      this.failed[vector] = true;
      this.report(e);
      return undefined;
    }
  }

  private apply(route: MsiRoute, program: VectorProgram): void {
    try {
      if (program.masked && !route.masked) route.mask();
      const current = route.message;
      if (current === undefined || current.address !== program.message.address || current.data !== program.message.data) {
        route.setMsi(program.message);
      }
      if (!program.masked && route.masked) route.unmask();
    } catch (e) {
      this.report(e);
    }
  }
}
