/**
 * One PCI bus: which {@link PciFunction} answers at each device/function number, and the
 * configuration-cycle entry point every decoder ends in — the host bridge's 0xCF8/0xCFC and
 * ECAM decoders on KVM and `sim`, and the hypervisor's own decoding on Xen (`pci` requests).
 *
 * A cycle to an absent function, another bus or segment, or a disposed function is a master
 * abort: reads return all-ones (Vendor ID 0xFFFF, which is how enumeration finds nothing),
 * writes are dropped.
 */
import { formatPciAddress, type PciAddress } from '../backend/io.js';
import { ExistsError, InvalidError, NoSpaceError, NotFoundError } from '../errors.js';
import { configAllOnes, type ConfigAccessSize } from './config-space.js';
import type { PciFunction } from './function.js';

/** Device numbers on a bus, and function numbers in a device. */
export const PCI_DEVICES_PER_BUS = 32;
export const PCI_FUNCTIONS_PER_DEVICE = 8;

/** Options of a {@link PciBus}. */
export interface PciBusOptions {
  /** Bus number, default 0. */
  readonly bus?: number;
  /** PCI segment (domain), default 0. */
  readonly segment?: number;
}

/** The functions of one bus, by device and function number. */
export class PciBus {
  readonly number: number;
  readonly segment: number;
  private readonly functionsByDevfn = new Map<number, PciFunction>();

  constructor(options: PciBusOptions = {}) {
    this.number = options.bus ?? 0;
    this.segment = options.segment ?? 0;
    if (!Number.isInteger(this.number) || this.number < 0 || this.number > 0xff) {
      throw new InvalidError('pci.bus', `bus number ${this.number} is outside [0, 255]`);
    }
    if (!Number.isInteger(this.segment) || this.segment < 0 || this.segment > 0xffff) {
      throw new InvalidError('pci.bus', `segment ${this.segment} is outside [0, 0xffff]`);
    }
  }

  /**
   * Attaches `fn` at its own address. `Invalid` if the address is on another bus or segment,
   * `Exists` if that device/function number is taken. Sets function 0's multi-function bit
   * when its slot holds more than one function.
   */
  add(fn: PciFunction): void {
    const address = fn.address;
    if (address.bus !== this.number || (address.segment ?? 0) !== this.segment) {
      throw new InvalidError('pci.bus.add', `${formatPciAddress(address)} is not on segment ${this.segment} bus ${this.number}`);
    }
    const devfn = devfnOf(address.device, address.function);
    if (this.functionsByDevfn.has(devfn)) throw new ExistsError('pci.bus.add', `${formatPciAddress(address)} is already present`);
    this.functionsByDevfn.set(devfn, fn);
    this.updateMultifunction(address.device);
  }

  /** Detaches the function at `device`/`function` and returns it; `NotFound` if absent. */
  remove(address: Pick<PciAddress, 'device' | 'function'>): PciFunction {
    const devfn = devfnOf(address.device, address.function);
    const fn = this.functionsByDevfn.get(devfn);
    if (fn === undefined) {
      throw new NotFoundError('pci.bus.remove', `no function at ${formatPciAddress({ segment: this.segment, bus: this.number, ...address })}`);
    }
    this.functionsByDevfn.delete(devfn);
    this.updateMultifunction(address.device);
    return fn;
  }

  /** The function at `device`/`function`, if any. */
  get(device: number, fn: number): PciFunction | undefined {
    if (!Number.isInteger(device) || !Number.isInteger(fn) || device < 0 || device >= PCI_DEVICES_PER_BUS || fn < 0 || fn >= PCI_FUNCTIONS_PER_DEVICE) {
      return undefined;
    }
    return this.functionsByDevfn.get(devfnOf(device, fn));
  }

  /** The attached functions, by device/function number. */
  functions(): PciFunction[] {
    return [...this.functionsByDevfn.entries()].sort((a, b) => a[0] - b[0]).map(([, fn]) => fn);
  }

  /**
   * The address of the first empty slot (a device number with no function) at or after
   * `first` (default 1: device 0 is the host bridge's), as function 0. `NoSpace` when all 32
   * are taken.
   */
  allocateSlot(first = 1): PciAddress {
    for (let device = Math.max(0, first); device < PCI_DEVICES_PER_BUS; device++) {
      let used = false;
      for (let f = 0; f < PCI_FUNCTIONS_PER_DEVICE && !used; f++) used = this.functionsByDevfn.has(devfnOf(device, f));
      if (!used) return { segment: this.segment, bus: this.number, device, function: 0 };
    }
    throw new NoSpaceError('pci.bus.allocateSlot', `no free device number on bus ${this.number}`);
  }

  /**
   * A configuration read of `size` bytes at `register` of function `bdf`. All-ones for an
   * absent function or a refused access (see {@link PciFunction.configRead}).
   */
  configRead(bdf: PciAddress, register: number, size: ConfigAccessSize): number {
    const fn = this.target(bdf);
    return fn === undefined ? configAllOnes(size) : fn.configRead(register, size);
  }

  /** A configuration write; dropped for an absent function. */
  configWrite(bdf: PciAddress, register: number, size: ConfigAccessSize, value: number): void {
    this.target(bdf)?.configWrite(register, size, value);
  }

  private target(bdf: PciAddress): PciFunction | undefined {
    if (bdf.bus !== this.number || (bdf.segment ?? 0) !== this.segment) return undefined;
    const fn = this.get(bdf.device, bdf.function);
    return fn === undefined || fn.disposed ? undefined : fn;
  }

  private updateMultifunction(device: number): void {
    const first = this.functionsByDevfn.get(devfnOf(device, 0));
    if (first === undefined || first.disposed) return;
    let count = 0;
    for (let f = 0; f < PCI_FUNCTIONS_PER_DEVICE; f++) if (this.functionsByDevfn.has(devfnOf(device, f))) count++;
    first.setMultifunction(count > 1);
  }
}

function devfnOf(device: number, fn: number): number {
  if (!Number.isInteger(device) || device < 0 || device >= PCI_DEVICES_PER_BUS || !Number.isInteger(fn) || fn < 0 || fn >= PCI_FUNCTIONS_PER_DEVICE) {
    throw new InvalidError('pci.bus', `device ${device} function ${fn} is not a PCI device/function number`);
  }
  return (device << 3) | fn;
}
