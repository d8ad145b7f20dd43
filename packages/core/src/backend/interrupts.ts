/**
 * Interrupt routes: what a device model's `raiseIrq()` turns into on each hypervisor.
 *
 * KVM: an eventfd bound with `KVM_IRQFD` to a GSI from a routing table grown on demand with
 * `KVM_SET_GSI_ROUTING` (4096 routes at most: one more is `NoSpace`); level lines get a
 * resample eventfd. Xen: `xendevicemodel_inject_msi`, `set_pci_intx_level`,
 * `set_isa_irq_level` (line interrupts are `Unsupported` on PVH guests, which have no
 * emulated PIC/IOAPIC), and event channels for Xen-aware guests.
 */
import type { PciAddress } from './io.js';

/** An MSI message as the guest programmed it into the MSI capability or MSI-X table. */
export interface MsiMessage {
  /** Message address (x86: 0xFEExxxxx, destination in bits 12..19). */
  readonly address: bigint;
  /** Message data (x86: vector in bits 0..7, delivery mode in 8..10). */
  readonly data: number;
}

/**
 * One MSI/MSI-X vector's path to the guest.
 *
 * Masking never loses an interrupt: {@link trigger} while masked sets {@link pending};
 * {@link unmask} with a pending interrupt delivers it exactly once and clears it. A route
 * with no message programmed yet behaves as masked.
 */
export interface MsiRoute extends Disposable {
  /** Backend route id (the GSI on KVM; a local index on Xen and `sim`). */
  readonly id: number;
  readonly masked: boolean;
  readonly pending: boolean;
  readonly disposed: boolean;
  /** The message last programmed, if any. */
  readonly message: MsiMessage | undefined;
  /** Programs the message. KVM: updates the GSI route (one `KVM_SET_GSI_ROUTING`). */
  setMsi(message: MsiMessage): void;
  mask(): void;
  /** Unmasks; delivers once if an interrupt is pending. */
  unmask(): void;
  /** Raises the interrupt (or marks it pending while masked). KVM: an 8-byte eventfd write. */
  trigger(): void;
  dispose(): void;
}

/** Trigger mode of a line interrupt. */
export type LineTrigger = 'edge' | 'level';

/**
 * Which line a {@link LineIrq} drives.
 * - `gsi`: a global system interrupt (ISA IRQ 0–15 or an IOAPIC pin). KVM: the GSI;
 *   Xen: `set_isa_irq_level` for ISA IRQs.
 * - `intx`: a PCI function's INTx pin. KVM: the GSI the platform routed it to (`line`);
 *   Xen: `set_pci_intx_level` with the function's address (segment 0, bus 0 only).
 */
export type LineTarget =
  | { readonly kind: 'gsi'; readonly line: number }
  | { readonly kind: 'intx'; readonly device: PciAddress; readonly pin: 1 | 2 | 3 | 4; readonly line: number };

/**
 * A wired interrupt line. Edge lines pulse on {@link assert}. Level lines stay asserted until
 * {@link deassert}; while asserted, each guest EOI re-raises the line (KVM: the irqfd's
 * resample eventfd; Xen: the emulated IOAPIC's own level tracking; `sim`: the scripted EOI).
 */
export interface LineIrq extends Disposable {
  readonly target: LineTarget;
  readonly trigger: LineTrigger;
  readonly asserted: boolean;
  readonly disposed: boolean;
  /** Number of guest EOIs seen for this line (level lines with resample; 0 otherwise). */
  readonly resamples: number;
  assert(): void;
  /** Lowers a level line; a no-op on an edge line. */
  deassert(): void;
  dispose(): void;
}

/** An interdomain event channel a Xen-aware guest driver binds (Xen only). */
export interface EventChannelRoute extends Disposable {
  /** The unbound port allocated for the guest. */
  readonly port: number;
  readonly disposed: boolean;
  /** Notifies the guest (`xenevtchn_notify`). */
  trigger(): void;
  dispose(): void;
}
