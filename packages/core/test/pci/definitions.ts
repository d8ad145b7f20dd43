/** Function definitions and small config helpers shared by the PCI tests. */
import type { PciFunctionDefinition } from '../../src/index.js';
import type { PciFunction } from '../../src/pci/index.js';

/** Everything at once: PCIe, PM, 64-bit MSI with masking, MSI-X in BAR 0, an I/O BAR, a 64-bit BAR. */
export const FULL: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0x11e8,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  revision: 0x10,
  classCode: 0x00ff00,
  interruptPin: 1,
  bars: [
    { kind: 'memory32', size: 0x1000 },
    { kind: 'io', size: 8 },
    { kind: 'memory64', size: 0x100000, prefetchable: true },
    undefined,
    { kind: 'memory32', size: 0x10000, backing: 'direct' },
  ],
  msi: { vectors: 4, address64: true, perVectorMask: true },
  msix: { vectors: 8, tableBar: 0, tableOffset: 0x800, pbaBar: 0, pbaOffset: 0xc00 },
  pcie: true,
  powerManagement: true,
};

/** A conventional function with one BAR and INTx only (no capabilities). */
export const PLAIN: PciFunctionDefinition = {
  vendorId: 0x1b36,
  deviceId: 0x0002,
  classCode: 0x070002,
  interruptPin: 1,
  bars: [{ kind: 'io', size: 8 }],
};

/** MSI without per-vector masking, 32-bit address, 8 vectors. */
export const MSI32: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0x0001,
  classCode: 0x00ff00,
  interruptPin: 1,
  msi: { vectors: 8, address64: false, perVectorMask: false },
};

/** MSI-X only, 70 vectors (a PBA of two QWORDs), table and PBA in a 64-bit BAR 2. */
export const MSIX70: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0x0002,
  classCode: 0x00ff00,
  bars: [undefined, undefined, { kind: 'memory64', size: 0x4000 }],
  msix: { vectors: 70, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x2000 },
};

/** The capability list as a guest walks it: id → offset. */
export function capabilities(fn: PciFunction): Map<number, number> {
  const found = new Map<number, number>();
  if ((fn.configRead(0x06, 2) & 0x10) === 0) return found;
  let at = fn.configRead(0x34, 1);
  const seen = new Set<number>();
  while (at !== 0 && !seen.has(at)) {
    seen.add(at);
    found.set(fn.configRead(at, 1), at);
    at = fn.configRead(at + 1, 1);
  }
  return found;
}

/** The config space as the guest reads it, dword by dword. */
export function readAll(fn: PciFunction, size = 256): Uint8Array {
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  for (let r = 0; r < size; r += 4) view.setUint32(r, fn.configRead(r, 4), true);
  return out;
}

export const MSI_CAP = 0x05;
export const MSIX_CAP = 0x11;
export const PM_CAP = 0x01;
export const EXP_CAP = 0x10;

/** Offset of capability `id`; fails the test if absent. */
export function cap(fn: PciFunction, id: number): number {
  const at = capabilities(fn).get(id);
  if (at === undefined) throw new Error(`capability ${id} absent`);
  return at;
}
