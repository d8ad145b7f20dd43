/**
 * The common life of everything the sim hands out: registered in its kind's table when made,
 * refused with `BadHandle` once disposed, removed from the table (so `resources()` stays
 * exact) when disposed by its user or by the backend's close.
 */
import { BadHandleError } from '@vmed/core';

/** Kinds of held objects, in the order `close()` releases them (the contract's order). */
export const RELEASE_ORDER = [
  'doorbell',
  'claim',
  'msi-route',
  'line',
  'page-track',
  'dirty-log',
  'view',
  'pin',
  'direct-mapping',
  'shared-memory',
  'ram',
] as const;

export type SimHandleKind = (typeof RELEASE_ORDER)[number];

/** Where a handle lives while it is held. */
export interface HandleHome {
  delete(handle: SimHandle): boolean;
}

export abstract class SimHandle implements Disposable {
  abstract readonly kind: SimHandleKind;
  #disposed = false;
  readonly #home: HandleHome;

  protected constructor(home: HandleHome) {
    this.#home = home;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Idempotent, as `Symbol.dispose` callers expect; only other methods refuse a disposed handle. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#home.delete(this);
    this.release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Every public method but `dispose` starts here. */
  protected guard(operation: string): void {
    if (this.#disposed) throw new BadHandleError(operation, `${this.kind} is disposed`);
  }

  /** Undoes what the handle held; runs once. */
  protected abstract release(): void;
}
