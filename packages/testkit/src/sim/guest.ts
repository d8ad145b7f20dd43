/**
 * The sim's scripted guest: a CPU that does exactly the accesses a test asks for. Memory
 * accesses (`mmioRead`/`mmioWrite`, `readRam`/`writeRam`) go through the sim's bus: RAM
 * (logged dirty, caught by page tracking), direct regions, doorbells, the sink for claimed
 * ranges, all-ones for the rest. Config cycles are real 0xCF8/0xCFC port accesses. The LAPIC
 * counts handler runs per vector; see {@link SimInterruptController}.
 *
 * It implements {@link GuestDriver}, so the conformance suite drives it like the guest agents.
 */
import { InvalidError, type AccessSize, type PciAddress } from '@vmed/core';
import type { GuestDriver } from '../conformance/guest-driver.js';
import { checkPciAddress } from './checks.js';
import { LINE_VECTOR_BASE, type StrayInterrupt } from './interrupt-controller.js';
import type { BusSpace, SimMachine } from './machine.js';
import { checkAddress } from './ram.js';

/** The LAPIC's MSI address for APIC id 0, physical destination. */
const MSI_ADDRESS = 0xfee0_0000n;

export class SimGuest implements GuestDriver {
  readonly name = 'sim';
  readonly scratch: { readonly address: bigint; readonly length: number };
  readonly #machine: SimMachine;

  constructor(machine: SimMachine) {
    this.#machine = machine;
    this.scratch = Object.freeze({ ...machine.options.scratch });
  }

  /** Whether the guest still runs (the backend is open and the guest not disposed). */
  get running(): boolean {
    return !this.#machine.closed && !this.#machine.guestStopped;
  }

  mmioRead(address: bigint, size: AccessSize): Promise<bigint> {
    const op = 'guest.mmioRead';
    return this.#run(op, () => this.#machine.busRead('mmio', checkMemoryAccess(address, size, op), size, op));
  }

  mmioWrite(address: bigint, size: AccessSize, value: bigint): Promise<void> {
    const op = 'guest.mmioWrite';
    return this.#run(op, () => this.#machine.busWrite('mmio', checkMemoryAccess(address, size, op), size, checkValue(value, size, op), op));
  }

  async pioRead(port: number, size: 1 | 2 | 4): Promise<number> {
    const op = 'guest.pioRead';
    const v = await this.#run(op, () => this.#machine.busRead('pio', checkPort(port, size, op), size, op));
    return Number(v);
  }

  pioWrite(port: number, size: 1 | 2 | 4, value: number): Promise<void> {
    const op = 'guest.pioWrite';
    return this.#run(op, () => this.#pio(port, size, value, op));
  }

  /** Configuration mechanism #1: `out 0xCF8` with the address, then `in 0xCFC + (register & 3)`. */
  async configRead(device: PciAddress, register: number, size: 1 | 2 | 4): Promise<number> {
    const op = 'guest.configRead';
    const address = configAddress(device, register, size, op);
    await this.pioWrite(0xcf8, 4, address);
    return this.pioRead(0xcfc + (register & 3), size);
  }

  async configWrite(device: PciAddress, register: number, size: 1 | 2 | 4, value: number): Promise<void> {
    const op = 'guest.configWrite';
    const address = configAddress(device, register, size, op);
    checkPortValue(value, size, op);
    await this.pioWrite(0xcf8, 4, address);
    await this.pioWrite(0xcfc + (register & 3), size, value);
  }

  /** Guest loads of `length` bytes (RAM only: like `rep movsb` from memory). */
  async readRam(address: bigint, length: number): Promise<Uint8Array> {
    const op = 'guest.readRam';
    this.#machine.guardGuest(op);
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidError(op, `length ${length} is not a non-negative integer`);
    const out = new Uint8Array(length);
    this.#machine.ram.read(address, out, op);
    return out;
  }

  /**
   * Guest stores of `bytes` into RAM, as naturally aligned pieces of up to 8 bytes (like
   * `rep movs`): each piece is logged dirty and checked by page tracking. The whole range
   * must be RAM.
   */
  async writeRam(address: bigint, bytes: Uint8Array): Promise<void> {
    const op = 'guest.writeRam';
    this.#machine.guardGuest(op);
    this.#machine.ram.pieces(address, bytes.length, op);
    let offset = 0;
    while (offset < bytes.length) {
      const at = address + BigInt(offset);
      let size: AccessSize = 8;
      while (size > 1 && (at % BigInt(size) !== 0n || offset + size > bytes.length)) size = (size / 2) as AccessSize;
      let value = 0n;
      for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[offset + i] as number);
      this.#machine.storeRam(at, size, value);
      offset += size;
    }
  }

  interruptCount(vector: number): Promise<number> {
    return this.#run('guest.interruptCount', async () => this.#machine.interrupts.count(vector));
  }

  waitForInterrupts(vector: number, count: number, timeoutMs: number): Promise<boolean> {
    return this.#run('guest.waitForInterrupts', () => this.#machine.interrupts.waitFor(vector, count, timeoutMs));
  }

  /**
   * The guest's EOI for `vector`, for scripts made with `autoEoi: false` (with the default,
   * the handler EOIs by itself). On a level line still asserted, the interrupt comes again.
   */
  eoi(vector: number): void {
    this.#machine.guardGuest('guest.eoi');
    this.#machine.interrupts.eoi(vector);
  }

  /** MSIs the guest's LAPIC refused, with why (most recent 64). */
  get strayInterrupts(): readonly StrayInterrupt[] {
    return this.#machine.interrupts.stray;
  }

  msiMessageFor(vector: number): { address: bigint; data: number } {
    if (!Number.isInteger(vector) || vector < 16 || vector > 255) throw new InvalidError('guest.msiMessageFor', `vector ${vector} is not 16..255`);
    return { address: MSI_ADDRESS, data: vector };
  }

  /** The sim guest programs its IOAPIC pin `line` to vector 0x20 + line. */
  vectorForLine(line: number): number | undefined {
    if (this.#machine.capabilities.lineIrq === false) return undefined;
    if (!Number.isInteger(line) || line < 0 || line >= this.#machine.interrupts.pinCount) {
      throw new InvalidError('guest.vectorForLine', `line ${line} is not a GSI of this guest`);
    }
    return LINE_VECTOR_BASE + line;
  }

  /** Stops the guest; the backend stays open. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#machine.guestStopped = true;
    this.#machine.interrupts.stop();
  }

  #pio(port: number, size: 1 | 2 | 4, value: number, op: string): Promise<void> {
    checkPort(port, size, op);
    return this.#machine.busWrite('pio' satisfies BusSpace, BigInt(port), size, BigInt(checkPortValue(value, size, op)), op);
  }

  /** Runs a guest step; argument errors surface as rejections, like every other failure. */
  async #run<T>(op: string, step: () => Promise<T>): Promise<T> {
    this.#machine.guardGuest(op);
    return step();
  }
}

function checkMemoryAccess(address: bigint, size: AccessSize, op: string): bigint {
  checkAddress(address, op);
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new InvalidError(op, `access size ${String(size)} is not 1, 2, 4 or 8`);
  if (address + BigInt(size) > 1n << 64n) throw new InvalidError(op, 'access wraps past 2^64');
  return address;
}

function checkPort(port: number, size: number, op: string): bigint {
  if (size !== 1 && size !== 2 && size !== 4) throw new InvalidError(op, `port access size ${String(size)} is not 1, 2 or 4`);
  if (!Number.isInteger(port) || port < 0 || port + size > 0x1_0000) throw new InvalidError(op, `port ${port} (+${size}) is outside 0..0xffff`);
  return BigInt(port);
}

function checkValue(value: bigint, size: number, op: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value >= 1n << BigInt(size * 8)) {
    throw new InvalidError(op, `value ${String(value)} does not fit in ${size} bytes`);
  }
  return value;
}

function checkPortValue(value: number, size: number, op: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** (size * 8)) throw new InvalidError(op, `value ${value} does not fit in ${size} bytes`);
  return value;
}

function configAddress(device: PciAddress, register: number, size: number, op: string): number {
  checkPciAddress(device, op);
  if (!Number.isInteger(register) || register < 0 || register > 0xff) throw new InvalidError(op, `register ${register} is beyond mechanism #1's 256 bytes`);
  if ((register & 3) + size > 4) throw new InvalidError(op, `a ${size}-byte access at register ${register} crosses a dword`);
  return (0x8000_0000 | (device.bus << 16) | (device.device << 11) | (device.function << 8) | (register & 0xfc)) >>> 0;
}
