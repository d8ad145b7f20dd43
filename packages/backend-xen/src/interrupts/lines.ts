/**
 * Wired interrupt lines on Xen HVM guests: `xendevicemodel_set_isa_irq_level` for ISA IRQs
 * 0..15 and `xendevicemodel_set_pci_intx_level` for a PCI function's INTx pin (segment 0, bus 0
 * only — what the DM op takes). Xen's emulated PIC/IOAPIC keep level lines asserted and
 * re-raise them after EOI themselves, so there is no resample to report (`resamples` stays 0).
 *
 * PVH guests have no emulated PIC or IOAPIC, and on Xen 4.17 these DM ops on a PVH guest were
 * followed by a hypervisor panic: the backend refuses line interrupts there before any of this
 * code runs (see `guest.ts`).
 */
import { BadHandleError, InvalidError, formatPciAddress, type LineIrq, type LineTarget, type LineTrigger } from '@vmed/core';

/** Drives the line's level in the hypervisor. */
export type LineDriver = (level: 0 | 1) => void;

/** Validates a target against what Xen's DM ops accept. */
export function checkLineTarget(operation: string, target: LineTarget): void {
  if (target.kind === 'gsi') {
    if (!Number.isInteger(target.line) || target.line < 0 || target.line > 15) {
      throw new InvalidError(operation, `GSI ${target.line}: Xen's set_isa_irq_level takes ISA IRQs 0..15`);
    }
    return;
  }
  const d = target.device;
  if ((d.segment ?? 0) !== 0 || d.bus !== 0) {
    throw new InvalidError(operation, `${formatPciAddress(d)}: Xen's set_pci_intx_level takes segment 0, bus 0 only`);
  }
  if (!Number.isInteger(d.device) || d.device < 0 || d.device > 31 || ![1, 2, 3, 4].includes(target.pin)) {
    throw new InvalidError(operation, `bad INTx target ${formatPciAddress(d)} pin ${target.pin}`);
  }
}

/** One wired line; see the module doc. */
export class XenLineIrq implements LineIrq {
  readonly target: LineTarget;
  readonly trigger: LineTrigger;
  readonly resamples = 0;
  #asserted = false;
  #disposed = false;
  readonly #drive: LineDriver;
  readonly #onDispose: (line: XenLineIrq) => void;

  constructor(target: LineTarget, trigger: LineTrigger, drive: LineDriver, onDispose: (line: XenLineIrq) => void) {
    this.target = target;
    this.trigger = trigger;
    this.#drive = drive;
    this.#onDispose = onDispose;
  }

  get asserted(): boolean {
    return this.#asserted;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  assert(): void {
    this.#open('line.assert');
    if (this.trigger === 'edge') {
      // An edge is a pulse: the emulated PIC/IOAPIC latch the rising edge.
      this.#drive(1);
      this.#drive(0);
      return;
    }
    if (this.#asserted) return;
    this.#drive(1);
    this.#asserted = true;
  }

  deassert(): void {
    this.#open('line.deassert');
    if (this.trigger === 'edge' || !this.#asserted) return;
    this.#drive(0);
    this.#asserted = false;
  }

  #open(operation: string): void {
    if (this.#disposed) throw new BadHandleError(operation, 'line is disposed');
  }

  /** Lowers a held level line, then releases it. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#asserted) {
      this.#asserted = false;
      try {
        this.#drive(0);
      } finally {
        this.#onDispose(this);
      }
      return;
    }
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
