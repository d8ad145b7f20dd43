/**
 * MSI routes on Xen. There is no routing table to fill (unlike KVM's GSI routes): a route is a
 * message and a mask, and `trigger` is one `xendevicemodel_inject_msi`. The route keeps the
 * contract's masking rule: a trigger while masked (or before a message is programmed) sets
 * `pending`, and `unmask` — or, on an unmasked route, the first `setMsi` — delivers it exactly
 * once.
 */
import { BadHandleError, InvalidError, hex, type MsiMessage, type MsiRoute } from '@vmed/core';

/** True for an x86 MSI address (0xFEExxxxx): anything else would be a DMA write on real hardware. */
export function isX86MsiAddress(address: bigint): boolean {
  return address >> 20n === 0xfeen;
}

/** Injects one message (the backend's `inject_msi`); `dropped` counts messages that are not MSIs. */
export interface MsiInjector {
  inject(message: MsiMessage): void;
  /** A message with a non-MSI address was triggered and not delivered. */
  dropped(message: MsiMessage): void;
}

/** Checks a message's fields fit their registers (an `Invalid` is a device-model bug, not guest input). */
export function checkMsiMessage(operation: string, message: MsiMessage): void {
  if (typeof message.address !== 'bigint' || message.address < 0n || message.address >= 1n << 64n) {
    throw new InvalidError(operation, `MSI address ${String(message.address)} is not a 64-bit value`);
  }
  if (!Number.isInteger(message.data) || message.data < 0 || message.data > 0xffff_ffff) {
    throw new InvalidError(operation, `MSI data ${message.data} is not a 32-bit value`);
  }
}

/** One MSI vector's route; see the module doc. */
export class XenMsiRoute implements MsiRoute {
  readonly id: number;
  #masked = true;
  #pending = false;
  #message: MsiMessage | undefined;
  #disposed = false;
  readonly #injector: MsiInjector;
  readonly #onDispose: (route: XenMsiRoute) => void;

  constructor(id: number, injector: MsiInjector, onDispose: (route: XenMsiRoute) => void) {
    this.id = id;
    this.#injector = injector;
    this.#onDispose = onDispose;
  }

  get masked(): boolean {
    return this.#masked;
  }

  get pending(): boolean {
    return this.#pending;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  get message(): MsiMessage | undefined {
    return this.#message;
  }

  setMsi(message: MsiMessage): void {
    this.#open('msi.setMsi');
    checkMsiMessage('msi.setMsi', message);
    this.#message = { address: message.address, data: message.data };
    // An unmasked route without a message behaved as masked: its pending interrupt goes now.
    if (!this.#masked && this.#pending) {
      this.#pending = false;
      this.#deliver(this.#message);
    }
  }

  mask(): void {
    this.#open('msi.mask');
    this.#masked = true;
  }

  unmask(): void {
    this.#open('msi.unmask');
    this.#masked = false;
    if (this.#pending && this.#message !== undefined) {
      // Cleared before delivery: if injection throws, the interrupt is reported, not replayed twice.
      this.#pending = false;
      this.#deliver(this.#message);
    }
  }

  trigger(): void {
    this.#open('msi.trigger');
    const message = this.#message;
    if (this.#masked || message === undefined) {
      this.#pending = true;
      return;
    }
    this.#deliver(message);
  }

  #deliver(message: MsiMessage): void {
    if (!isX86MsiAddress(message.address)) {
      this.#injector.dropped(message);
      return;
    }
    this.#injector.inject(message);
  }

  #open(operation: string): void {
    if (this.#disposed) throw new BadHandleError(operation, `MSI route ${this.id} is disposed`);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#pending = false;
    this.#onDispose(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Formats a message for errors. */
export function formatMsi(message: MsiMessage): string {
  return `address ${hex(message.address)} data ${hex(message.data)}`;
}
