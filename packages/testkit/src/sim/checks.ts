/**
 * Argument checks shared by the sim's objects. Callers are host code, but many values come
 * from the guest (MSI messages, DMA addresses), so each is checked before it is used.
 */
import { InvalidError, PAGE_SIZE, hex, type AddressRange, type MemoryAccess, type MsiMessage, type PciAddress } from '@vmed/core';

const TOP = 1n << 64n;

/** A well-formed, non-empty range inside the 64-bit space (the brand is compile-time only). */
export function checkRange(range: AddressRange, operation: string): AddressRange {
  if (typeof range !== 'object' || range === null || typeof range.base !== 'bigint' || typeof range.length !== 'bigint') {
    throw new InvalidError(operation, 'range must be { base: bigint, length: bigint }');
  }
  if (range.length <= 0n) throw new InvalidError(operation, `zero or negative length at ${hex(range.base)}`);
  if (range.base < 0n || range.base + range.length > TOP) {
    throw new InvalidError(operation, `range ${hex(range.base)}+${hex(range.length)} leaves the 64-bit space`);
  }
  return { base: range.base, length: range.length } as AddressRange;
}

/** A port range: ports are 0..0xffff. */
export function checkPortRange(range: AddressRange, operation: string): void {
  if (range.base + range.length > 0x1_0000n) throw new InvalidError(operation, `port range ${hex(range.base)}+${hex(range.length)} passes 0xffff`);
}

export function checkPageAligned(range: AddressRange, operation: string): void {
  const page = BigInt(PAGE_SIZE);
  if (range.base % page !== 0n || range.length % page !== 0n) {
    throw new InvalidError(operation, `range ${hex(range.base)}+${hex(range.length)} is not page-aligned`);
  }
}

export function checkLength(length: number, operation: string): number {
  if (!Number.isSafeInteger(length) || length <= 0) throw new InvalidError(operation, `length ${length} is not a positive integer`, { bytesDone: 0 });
  return length;
}

export function checkAccess(access: MemoryAccess, operation: string): MemoryAccess {
  if (access !== 'read' && access !== 'readwrite') throw new InvalidError(operation, `access must be "read" or "readwrite", got ${String(access)}`);
  return access;
}

export function checkBytes(buffer: Uint8Array, operation: string): void {
  if (!(buffer instanceof Uint8Array)) throw new InvalidError(operation, 'buffer must be a Uint8Array', { bytesDone: 0 });
}

/** An MSI message: any 64-bit address and 32-bit data the guest may have programmed. */
export function checkMsiMessage(message: MsiMessage, operation: string): MsiMessage {
  if (typeof message !== 'object' || message === null) throw new InvalidError(operation, 'message must be { address, data }');
  const { address, data } = message;
  if (typeof address !== 'bigint' || address < 0n || address >= TOP) throw new InvalidError(operation, `MSI address ${String(address)} is not a 64-bit value`);
  if (!Number.isInteger(data) || data < 0 || data > 0xffff_ffff) throw new InvalidError(operation, `MSI data ${String(data)} is not a 32-bit value`);
  return Object.freeze({ address, data });
}

/** Bus 0..255, device 0..31, function 0..7, segment 0 (all the sim has). */
export function checkPciAddress(device: PciAddress, operation: string): void {
  if (typeof device !== 'object' || device === null) throw new InvalidError(operation, 'device must be { bus, device, function }');
  const ok = (v: unknown, max: number) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;
  if (!ok(device.bus, 255) || !ok(device.device, 31) || !ok(device.function, 7) || !ok(device.segment ?? 0, 0)) {
    throw new InvalidError(operation, `PCI address ${JSON.stringify(device)} is out of range (segment 0, bus 0..255, device 0..31, function 0..7)`);
  }
}

export function checkFunction(fn: unknown, what: string, operation: string): void {
  if (typeof fn !== 'function') throw new InvalidError(operation, `${what} must be a function`);
}

export function overlaps(aBase: bigint, aLength: bigint, bBase: bigint, bLength: bigint): boolean {
  return aBase < bBase + bLength && bBase < aBase + aLength;
}
