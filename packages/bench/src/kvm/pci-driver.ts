/**
 * What a guest's driver does through config space before it uses a device, done by the
 * benchmarks on the guest's behalf (the bench guests do not enumerate PCI): decoding and bus
 * mastering on, the MSI capability programmed and enabled.
 */
import {
  PCI_CAP_ID_MSI,
  PCI_CAPABILITY_LIST,
  PCI_COMMAND,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_ENABLE,
  type PciFunction,
} from '@vmed/core';

/** The LAPIC's MSI address (destination APIC 0, fixed delivery). */
export const MSI_ADDRESS = 0xfee0_0000n;

/** Sets the command register. */
export function setCommand(fn: PciFunction, bits: number): void {
  fn.configWrite(PCI_COMMAND, 2, bits);
}

/** Programs and enables MSI (64-bit address) with `vector` in the message data. */
export function enableMsi(fn: PciFunction, vector: number): void {
  const cap = findCapability(fn, PCI_CAP_ID_MSI);
  fn.configWrite(cap + PCI_MSI_ADDRESS_LO, 4, Number(MSI_ADDRESS & 0xffff_ffffn));
  fn.configWrite(cap + PCI_MSI_ADDRESS_HI, 4, Number(MSI_ADDRESS >> 32n));
  fn.configWrite(cap + PCI_MSI_DATA_64, 2, vector);
  fn.configWrite(cap + PCI_MSI_FLAGS, 2, fn.configRead(cap + PCI_MSI_FLAGS, 2) | PCI_MSI_FLAGS_ENABLE);
}

/** Walks the capability list through config reads, as a driver does. */
export function findCapability(fn: PciFunction, id: number): number {
  const seen = new Set<number>();
  let offset = fn.configRead(PCI_CAPABILITY_LIST, 1) & ~3;
  while (offset >= 0x40 && !seen.has(offset)) {
    seen.add(offset);
    if (fn.configRead(offset, 1) === id) return offset;
    offset = fn.configRead(offset + 1, 1) & ~3;
  }
  throw new Error(`the function has no capability 0x${id.toString(16)}`);
}
