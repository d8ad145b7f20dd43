/**
 * One fuzz session: a mediator on the instrumented `sim` backend, the fuzz guest, and the
 * bookkeeping every invariant needs — the violations found, the trace of decoded operations,
 * which guest memory the device under test may touch right now, and the MSI deliveries seen
 * since they were last taken.
 */
import { createMediator, isVmedError, type DeviceDefinition, type Mediator, type MemoryAccess, type MsiMessage } from '@vmed/core';
import type { SimBackendOptions } from '../sim/options.js';
import { FUZZ_RAM, FUZZ_SCRATCH, InstrumentedBackend, type BackendObserver, type DmaKind } from './backend.js';
import { FuzzGuest } from './guest.js';
import type { InvariantName, Violation } from './types.js';

/** A range of guest memory a device may touch, and how. */
export interface DmaWindow {
  readonly base: bigint;
  /** Exclusive end (may exceed 2^64 for a range the device must then refuse). */
  readonly end: bigint;
  readonly read: boolean;
  readonly write: boolean;
  /** Why the device owning this window may not DMA right now (bus mastering off…), if so. */
  readonly gate?: () => string | undefined;
}

export interface SessionOptions {
  readonly types: ReadonlyArray<DeviceDefinition<never>>;
  readonly sim?: Omit<SimBackendOptions, 'ram' | 'scratch'>;
  readonly trace: boolean;
}

export class FuzzSession implements BackendObserver {
  readonly backend: InstrumentedBackend;
  readonly guest: FuzzGuest;
  readonly violations: Violation[] = [];
  readonly trace: string[] | undefined;
  /** Index of the operation being run (for violation reports). */
  step = 0;
  /** Guest memory the device may touch during the current operation; empty: none. */
  allowedDma: readonly DmaWindow[] = [];
  /** MSIs delivered since {@link takeDeliveries}. */
  private deliveries: MsiMessage[] = [];
  /** Whether a route may drop a pending interrupt now (reset, close, remove, state load). */
  dropAllowed = false;
  private current: { kind: DmaKind; address: bigint; length: number; inRam: boolean } | undefined;
  private mediatorRef: Mediator | undefined;

  private constructor(options: SessionOptions) {
    this.trace = options.trace ? [] : undefined;
    this.backend = new InstrumentedBackend({ ...options.sim, ram: FUZZ_RAM, scratch: FUZZ_SCRATCH }, this);
    this.guest = new FuzzGuest(this.backend, (invariant, message) => this.fail(invariant, message));
  }

  /** A fresh session with `types` registered and no device yet. */
  static async open(options: SessionOptions): Promise<FuzzSession> {
    const session = new FuzzSession(options);
    session.mediatorRef = await createMediator({ hypervisor: 'sim' }, { backend: session.backend, deviceTypes: options.types });
    return session;
  }

  get mediator(): Mediator {
    return this.mediatorRef as Mediator;
  }

  /** Records a violation at the current step. */
  fail(invariant: InvariantName, message: string): void {
    // One program rarely needs more than a few to be understood; keep memory bounded.
    if (this.violations.length < 32) this.violations.push({ invariant, message, step: this.step });
  }

  /** Whether a trace is kept (callers skip building trace lines otherwise: they cost). */
  get tracing(): boolean {
    return this.trace !== undefined;
  }

  /** Adds a line to the trace (only when tracing). */
  note(line: string): void {
    this.trace?.push(`${this.step}: ${line}`);
  }

  /** The MSIs delivered since the last call, and forgets them. */
  takeDeliveries(): MsiMessage[] {
    const d = this.deliveries;
    this.deliveries = [];
    return d;
  }

  /** Runs `f` with `windows` as the DMA the device may do, then allows none again. */
  withDma<T>(windows: readonly DmaWindow[], f: () => T): T {
    this.allowedDma = windows;
    try {
      return f();
    } finally {
      this.allowedDma = [];
    }
  }

  /** Runs `f` where a route may drop its pending interrupt (reset, close, state load). */
  dropping<T>(f: () => T): T {
    const was = this.dropAllowed;
    this.dropAllowed = true;
    try {
      return f();
    } finally {
      this.dropAllowed = was;
    }
  }

  async droppingAsync<T>(f: () => Promise<T>): Promise<T> {
    const was = this.dropAllowed;
    this.dropAllowed = true;
    try {
      return await f();
    } finally {
      this.dropAllowed = was;
    }
  }

  /** Removes every device and closes the mediator; checks that nothing is left behind. */
  async close(check: boolean): Promise<void> {
    const mediator = this.mediatorRef;
    if (mediator === undefined || mediator.closed) return;
    await this.droppingAsync(async () => {
      try {
        for (const d of mediator.list()) d.remove();
      } catch (e) {
        this.fail('lifecycle', `removing the devices threw ${String(e)}`);
      }
      if (check) {
        const r = this.backend.resources();
        // The mediator's own claims: the 0xCF8 ports and the ECAM window.
        const left = { claims: r.claims - 2, msiRoutes: r.msiRoutes, lineIrqs: r.lineIrqs, doorbells: r.doorbells, views: r.views, pins: r.pins, sharedMemory: r.sharedMemory, directMappings: r.directMappings };
        const leaked = Object.entries(left).filter(([, n]) => n !== 0);
        if (leaked.length > 0) this.fail('resources-baseline', `after removing every device the backend still holds ${leaked.map(([k, n]) => `${k} ${n}`).join(', ')}`);
      }
      await mediator.close();
    });
  }

  // ---- BackendObserver ----------------------------------------------------------------------

  dma(kind: DmaKind, address: bigint, length: number, access: MemoryAccess | undefined): void {
    const end = address + BigInt(length);
    const inRam = this.ramCovers(address, end);
    this.current = { kind, address, length, inRam };
    // Whatever the range, the core must not even ask the backend for a device that may not DMA.
    const owners = this.allowedDma.filter((w) => w.gate !== undefined);
    const reasons = owners.map((w) => (w.gate as () => string | undefined)());
    if (owners.length > 0 && reasons.every((reason) => reason !== undefined)) {
      this.fail('dma-gating', `${kind} of ${length} bytes at 0x${address.toString(16)} reached the backend while ${reasons[0]}`);
    }
    if (length === 0 || !inRam) return; // the backend must refuse it (checked in dmaDone)
    const writing = kind === 'write' || (kind === 'view' && access === 'readwrite');
    const ok = this.allowedDma.some((w) => address >= w.base && end <= w.end && (!writing || w.write) && (w.read || w.write));
    if (!ok) {
      const allowed = this.allowedDma.map((w) => `[0x${w.base.toString(16)}, 0x${w.end.toString(16)})${w.write ? 'w' : ''}${w.read ? 'r' : ''}`).join(' ') || 'none';
      this.fail('dma-bounds', `${kind}${access === undefined ? '' : `(${access})`} of ${length} bytes at 0x${address.toString(16)}: the guest allowed ${allowed}`);
    }
  }

  dmaDone(kind: DmaKind, address: bigint, length: number): void {
    const c = this.current;
    this.current = undefined;
    if (c !== undefined && !c.inRam && length > 0) {
      this.fail('dma-bounds', `${kind} of ${length} bytes at 0x${address.toString(16)} outside guest RAM was carried out instead of refused`);
    }
  }

  delivered(message: MsiMessage): void {
    this.deliveries.push(message);
  }

  droppedPending(message: MsiMessage | undefined): void {
    if (!this.dropAllowed) {
      const m = message === undefined ? 'no message' : `0x${message.address.toString(16)}/0x${message.data.toString(16)}`;
      this.fail('msi-pending-lost', `a route holding a pending interrupt (${m}) was disposed outside reset, close or state load`);
    }
  }

  private ramCovers(base: bigint, end: bigint): boolean {
    if (base < 0n || end > 1n << 64n) return false;
    let cursor = base;
    while (cursor < end) {
      const r = this.backend.memory.ram.find(cursor);
      if (r === undefined) return false;
      cursor = r.base + r.length;
    }
    return true;
  }
}

/** True for errors a host API may legitimately throw (typed vmed errors). */
export function isExpectedError(e: unknown): boolean {
  return isVmedError(e);
}
