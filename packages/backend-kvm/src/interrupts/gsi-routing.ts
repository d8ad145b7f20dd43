/**
 * The VM's GSI routing table, kept here because KVM has no "get": the irqchip's routes (GSIs
 * 0–23 to the PIC and IOAPIC pins, as `KVM_CREATE_IRQCHIP` installs them, or the embedding
 * VMM's routes in adopt mode) plus one MSI entry per programmed MSI route. Every change
 * rewrites the whole table with `KVM_SET_GSI_ROUTING`.
 *
 * Capacity: KVM takes at most `KVM_CAP_IRQ_ROUTING` (4096) entries, each with a GSI below 4096.
 * MSI routes take GSIs from `firstMsiGsi` (24) up, so at most
 * min(4096 − firstMsiGsi, 4096 − base entries) routes exist at once (4056 with the kernel
 * irqchip's 40 default entries). One more is `NoSpace`, refused before anything is allocated.
 */
import { NoSpaceError } from '@vmed/core';
import {
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_IOAPIC_NUM_PINS,
} from '../abi/kvm.js';
import type { GsiRoute, KvmVm } from '../ioctls/vm.js';

/** The routes `KVM_CREATE_IRQCHIP` installs on x86: each GSI 0–15 to its IOAPIC and PIC pin, 16–23 to the IOAPIC. */
export function defaultIrqchipRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < KVM_IOAPIC_NUM_PINS; gsi++) {
    routes.push({ gsi, kind: 'irqchip', chip: KVM_IRQCHIP_IOAPIC, pin: gsi });
    if (gsi < 16) routes.push({ gsi, kind: 'irqchip', chip: gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, pin: gsi % 8 });
  }
  return routes;
}

export class GsiRoutingTable {
  readonly #vm: KvmVm;
  readonly #base: readonly GsiRoute[];
  readonly #firstMsiGsi: number;
  readonly #maxEntries: number;
  /** Allocated MSI GSIs; the value is the programmed message, if any. */
  readonly #msi = new Map<number, { address: bigint; data: number } | undefined>();
  #deferred = 0;
  #dirty = false;

  constructor(vm: KvmVm, options: { base: readonly GsiRoute[]; firstMsiGsi: number; maxEntries: number }) {
    this.#vm = vm;
    this.#base = options.base;
    this.#firstMsiGsi = options.firstMsiGsi;
    this.#maxEntries = options.maxEntries;
  }

  /** Most MSI routes this table can hold. */
  get capacity(): number {
    return Math.max(0, Math.min(this.#maxEntries - this.#firstMsiGsi, this.#maxEntries - this.#base.length));
  }

  get allocated(): number {
    return this.#msi.size;
  }

  /** Takes the lowest free MSI GSI. */
  allocate(operation: string): number {
    if (this.#msi.size >= this.capacity) {
      throw new NoSpaceError(operation, `all ${this.capacity} MSI routes are in use (KVM allows ${this.#maxEntries} routing entries)`);
    }
    for (let gsi = this.#firstMsiGsi; gsi < this.#maxEntries; gsi++) {
      if (!this.#msi.has(gsi)) {
        this.#msi.set(gsi, undefined);
        return gsi;
      }
    }
    throw new NoSpaceError(operation, 'no free GSI');
  }

  /** Programs `gsi`'s MSI entry and commits; on failure the previous entry is kept. */
  setMsi(gsi: number, address: bigint, data: number): void {
    const previous = this.#msi.get(gsi);
    if (previous !== undefined && previous.address === address && previous.data === data) return;
    this.#msi.set(gsi, { address, data });
    try {
      this.#commit();
    } catch (error) {
      this.#msi.set(gsi, previous);
      throw error;
    }
  }

  /** Releases `gsi`, committing if it had an entry. */
  free(gsi: number): void {
    const had = this.#msi.get(gsi) !== undefined;
    this.#msi.delete(gsi);
    if (had) this.#commit();
  }

  /** Runs `fn` with commits collected into one at the end (close releases many routes). */
  batch(fn: () => void): void {
    this.#deferred++;
    try {
      fn();
    } finally {
      this.#deferred--;
      if (this.#deferred === 0 && this.#dirty) this.#commit();
    }
  }

  #commit(): void {
    if (this.#deferred > 0) {
      this.#dirty = true;
      return;
    }
    this.#dirty = false;
    const routes: GsiRoute[] = [...this.#base];
    for (const [gsi, msg] of [...this.#msi].sort((a, b) => a[0] - b[0])) {
      if (msg !== undefined) routes.push({ gsi, kind: 'msi', address: msg.address, data: msg.data });
    }
    this.#vm.setGsiRouting(routes);
  }
}
