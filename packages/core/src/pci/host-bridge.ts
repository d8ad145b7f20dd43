/**
 * The host bridge: decodes a guest's configuration cycles into {@link PciBus} calls, and is
 * itself function 00:00.0 (class 0x060000) so enumeration looks like a normal machine.
 *
 * **Configuration mechanism #1** (I/O ports, PCI Local Bus 3.0 §3.2.2.3.2): the dword at
 * 0xCF8 is the address register — bit 31 enable, bus 23:16, device 15:11, function 10:8,
 * register 7:2 (bits 30:24 and 1:0 read back 0). 0xCFC–0xCFF is the data window; port
 * 0xCFC + n is byte n of the addressed dword, so a byte at 0xCFE reaches register | 2. An
 * access reaching past 0xCFF is refused. 0xCF8 answers only dword accesses: narrower ones at
 * 0xCF8–0xCFB are not the bridge's (0xCF9 is the chipset's reset control register on x86)
 * and read all-ones. With the enable bit clear the data window reads all-ones and drops
 * writes.
 *
 * **ECAM** (PCI Express enhanced configuration access): an MMIO window where offset
 * `bus<<20 | device<<15 | function<<12 | register` reaches all 4096 bytes of each function.
 * Accesses of 1, 2 and 4 bytes inside one dword are served; an aligned 8-byte access is two
 * dword cycles (low first); anything else reads all-ones.
 *
 * On Xen the hypervisor decodes both itself and sends `pci` requests: they go straight to
 * {@link PciBus.configRead}/{@link PciBus.configWrite}, without this class's decoders.
 */
import { allOnes, type AccessSize } from '../backend/io.js';
import { UnsupportedError } from '../errors.js';
import type { PciBus } from './bus.js';
import { PciFunction } from './function.js';
import { PCI_CLASS_BRIDGE_HOST } from './registers.js';

/** The config address register port. */
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
/** The first port of the config data window. */
export const PCI_CONFIG_DATA_PORT = 0xcfc;
/** Ports 0xCF8–0xCFF. */
export const PCI_CONFIG_PORTS_LENGTH = 8;
export const PCI_CONFIG_ADDRESS_ENABLE = 0x80000000;
/** Bits of 0xCF8 that hold a value: enable, bus, device, function, dword register. */
export const PCI_CONFIG_ADDRESS_MASK = 0x80fffffc;
/** Bytes of ECAM space per bus. */
export const ECAM_BUS_SIZE = 1 << 20;

/** Options of a {@link PciHostBridge}. */
export interface PciHostBridgeOptions {
  /** Vendor ID of the bridge function; default 0x1B36 (Red Hat, QEMU's PCIe host). */
  readonly vendorId?: number;
  /** Device ID; default 0x0008 (QEMU's generic PCIe host bridge). */
  readonly deviceId?: number;
  /** Buses the ECAM window covers from bus 0 (1..256); default 256 (a 256 MiB window). */
  readonly ecamBuses?: number;
}

/** Decodes CF8/CFC and ECAM accesses onto a bus, and answers as 00:00.0. */
export class PciHostBridge implements Disposable {
  readonly bus: PciBus;
  /** The bridge's own function at device 0, function 0 of the bus. */
  readonly function: PciFunction;
  /** Bytes of the ECAM window. */
  readonly ecamSize: bigint;
  private configAddress = 0;

  /** Creates the bridge and adds its function at 00.0; `Exists` if that is taken. */
  constructor(bus: PciBus, options: PciHostBridgeOptions = {}) {
    const buses = options.ecamBuses ?? 256;
    if (!Number.isInteger(buses) || buses < 1 || buses > 256) {
      throw new UnsupportedError('pci.hostBridge', `an ECAM window of ${buses} buses`);
    }
    this.bus = bus;
    this.ecamSize = BigInt(buses) * BigInt(ECAM_BUS_SIZE);
    this.function = new PciFunction(
      { vendorId: options.vendorId ?? 0x1b36, deviceId: options.deviceId ?? 0x0008, classCode: PCI_CLASS_BRIDGE_HOST },
      {
        address: { segment: bus.segment, bus: bus.number, device: 0, function: 0 },
        intxLine: 0,
        // The bridge has no MSI and no pin: these are never reached.
        createMsiRoute: () => {
          throw new UnsupportedError('pci.hostBridge', 'the host bridge has no MSI');
        },
        createLineIrq: () => {
          throw new UnsupportedError('pci.hostBridge', 'the host bridge has no INTx');
        },
        onBarChange: () => {},
      },
    );
    bus.add(this.function);
  }

  // ---- Configuration mechanism #1 -----------------------------------------------------------

  /** A guest port read in 0xCF8–0xCFF. */
  portRead(port: number, size: AccessSize): bigint {
    if (port === PCI_CONFIG_ADDRESS_PORT && size === 4) return BigInt(this.configAddress >>> 0);
    const lane = port - PCI_CONFIG_DATA_PORT;
    if (!this.dataAccess(lane, size)) return allOnes(size);
    return BigInt(this.bus.configRead(this.dataTarget(), (this.configAddress & 0xfc) | lane, size as 1 | 2 | 4));
  }

  /** A guest port write in 0xCF8–0xCFF. */
  portWrite(port: number, size: AccessSize, value: bigint): void {
    if (port === PCI_CONFIG_ADDRESS_PORT && size === 4) {
      this.configAddress = (Number(BigInt.asUintN(32, value)) & PCI_CONFIG_ADDRESS_MASK) >>> 0;
      return;
    }
    const lane = port - PCI_CONFIG_DATA_PORT;
    if (!this.dataAccess(lane, size)) return;
    this.bus.configWrite(this.dataTarget(), (this.configAddress & 0xfc) | lane, size as 1 | 2 | 4, lanes(value, size));
  }

  private dataAccess(lane: number, size: AccessSize): boolean {
    return (
      Number.isInteger(lane) &&
      lane >= 0 &&
      lane < 4 &&
      (size === 1 || size === 2 || size === 4) &&
      lane + size <= 4 &&
      (this.configAddress & PCI_CONFIG_ADDRESS_ENABLE) !== 0
    );
  }

  private dataTarget() {
    const a = this.configAddress;
    return { segment: this.bus.segment, bus: (a >>> 16) & 0xff, device: (a >>> 11) & 0x1f, function: (a >>> 8) & 0x7 };
  }

  // ---- ECAM ---------------------------------------------------------------------------------

  /** A guest read at `offset` into the ECAM window. */
  ecamRead(offset: bigint, size: AccessSize): bigint {
    if (size === 8) {
      if (offset % 8n !== 0n) return allOnes(8);
      return (this.ecamRead(offset + 4n, 4) << 32n) | this.ecamRead(offset, 4);
    }
    const target = this.ecamTarget(offset, size);
    if (target === undefined) return allOnes(size);
    return BigInt(this.bus.configRead(target.bdf, target.register, size as 1 | 2 | 4));
  }

  /** A guest write at `offset` into the ECAM window. */
  ecamWrite(offset: bigint, size: AccessSize, value: bigint): void {
    if (size === 8) {
      if (offset % 8n !== 0n) return;
      this.ecamWrite(offset, 4, value & 0xffffffffn);
      this.ecamWrite(offset + 4n, 4, (value >> 32n) & 0xffffffffn);
      return;
    }
    const target = this.ecamTarget(offset, size);
    if (target === undefined) return;
    this.bus.configWrite(target.bdf, target.register, size as 1 | 2 | 4, lanes(value, size));
  }

  private ecamTarget(offset: bigint, size: AccessSize) {
    if (typeof offset !== 'bigint' || offset < 0n || offset + BigInt(size) > this.ecamSize) return undefined;
    if (size !== 1 && size !== 2 && size !== 4) return undefined;
    const o = Number(offset);
    const bdf = { segment: this.bus.segment, bus: (o >>> 20) & 0xff, device: (o >>> 15) & 0x1f, function: (o >>> 12) & 0x7 };
    return { bdf, register: o & 0xfff };
  }

  /** Takes the bridge's function off the bus and disposes it. */
  dispose(): void {
    if (this.function.disposed) return;
    if (this.bus.get(0, 0) === this.function) this.bus.remove({ device: 0, function: 0 });
    this.function.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The low `size` bytes of a written value, as a number. */
function lanes(value: bigint, size: number): number {
  return Number(BigInt.asUintN(size * 8, typeof value === 'bigint' ? value : 0n));
}
