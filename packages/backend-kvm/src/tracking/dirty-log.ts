/**
 * `pull`-mode dirty tracking on KVM: `KVM_MEM_LOG_DIRTY_PAGES` on every RAM slot and
 * `KVM_GET_DIRTY_LOG` per slot, assembled into one bitmap per RAM region. Writes the device
 * model makes through host views are not in KVM's log (the core keeps its own bitmap), but
 * guest writes vmed applies for write-tracked pages are added here.
 */
import {
  StateError,
  UnsupportedError,
  addressRange,
  type AddressRange,
  type DirtyBitmap,
  type DirtyLog,
} from '@vmed/core';
import { assertOpen } from '../errors.js';
import type { HostRam } from '../memory/host-ram.js';
import type { SlotTable } from '../memory/slots.js';

export class KvmDirtyLog implements DirtyLog {
  readonly mode = 'pull' as const;
  readonly #ram: HostRam | undefined;
  readonly #slots: SlotTable | undefined;
  readonly #isClosed: () => boolean;
  readonly #unsupportedReason: string | undefined;

  /** `unsupportedReason` set: every method throws `Unsupported` with it. */
  constructor(ram: HostRam | undefined, slots: SlotTable | undefined, isClosed: () => boolean, unsupportedReason?: string) {
    this.#ram = ram;
    this.#slots = slots;
    this.#isClosed = isClosed;
    this.#unsupportedReason = unsupportedReason;
  }

  get active(): boolean {
    return this.#slots?.dirtyLogging ?? false;
  }

  /** Sets `KVM_MEM_LOG_DIRTY_PAGES` on every RAM slot (pages written from now on are logged). */
  start(): void {
    this.#usable('kvm.dirty.start').setDirtyLogging(true);
  }

  /** Clears the flag; bits not yet pulled are discarded. */
  stop(): void {
    this.#usable('kvm.dirty.stop').setDirtyLogging(false);
  }

  /** Fetches and clears the log: one bitmap per RAM region. `State` when logging is off. */
  pull(): DirtyBitmap[] {
    const slots = this.#usable('kvm.dirty.pull');
    if (!slots.dirtyLogging) throw new StateError('kvm.dirty.pull', 'dirty logging is not started');
    const ram = this.#ram as HostRam;
    return ram.ram.ranges.map((region) => ({
      base: region.base,
      pages: Number(region.length / 4096n),
      bits: slots.pullDirty(region),
    }));
  }

  /** `pull` mode: device-model writes stay in the core's own bitmap; only the range is checked. */
  push(range: AddressRange): void {
    this.#usable('kvm.dirty.push');
    addressRange(range.base, range.length, 'kvm.dirty.push');
  }

  #usable(operation: string): SlotTable {
    assertOpen(this.#isClosed(), operation);
    if (this.#unsupportedReason !== undefined || this.#slots === undefined) {
      throw new UnsupportedError(operation, this.#unsupportedReason ?? 'no dirty tracking');
    }
    return this.#slots;
  }
}
