/**
 * A small stand-in for the core's DeviceContext: interrupts that record every raise and lower,
 * DMA over a Uint8Array "guest RAM" at a chosen guest address that refuses (InvalidError)
 * anything outside it or while bus mastering is off, and direct BAR memory from a map.
 */
import { BadHandleError, InvalidError, StateReader, StateWriter, hex } from '@vmed/core';
import type { DeviceContext, DeviceDma, DeviceInterrupts, DeviceModel, MemoryAccess, MemoryView } from '@vmed/core';

export type IrqEvent = 'raise' | 'lower';

export class FakeInterrupts implements DeviceInterrupts {
  mode: 'msix' | 'msi' | 'intx' | 'none' = 'intx';
  readonly events: IrqEvent[] = [];
  /** The INTx line as a level-triggered controller would see it. */
  asserted = false;
  /** MSI messages sent (raises while in MSI mode). */
  messages = 0;
  /** The mode at the model's last raise or lower (undefined before the first). */
  lastEventMode: 'msix' | 'msi' | 'intx' | 'none' | undefined;

  raise(vector = 0): void {
    if (vector !== 0) throw new Error(`unexpected vector ${vector}`);
    this.events.push('raise');
    this.lastEventMode = this.mode;
    if (this.mode === 'msi' || this.mode === 'msix') this.messages += 1;
    else this.asserted = true;
  }

  lower(vector = 0): void {
    if (vector !== 0) throw new Error(`unexpected vector ${vector}`);
    this.events.push('lower');
    this.lastEventMode = this.mode;
    this.asserted = false;
  }

  /** Returns the events recorded since the last call and forgets them. */
  take(): IrqEvent[] {
    return this.events.splice(0, this.events.length);
  }
}

export class FakeDma implements DeviceDma {
  busMaster = true;
  readonly calls: Array<{ op: 'read' | 'write'; address: bigint; length: number }> = [];

  constructor(
    readonly ram: Uint8Array,
    readonly base: bigint,
  ) {}

  read(address: bigint, length: number): Uint8Array {
    this.calls.push({ op: 'read', address, length });
    const offset = this.check('dma.read', address, length);
    return this.ram.slice(offset, offset + length);
  }

  readInto(address: bigint, dst: Uint8Array): void {
    dst.set(this.read(address, dst.length));
  }

  write(address: bigint, src: Uint8Array): void {
    this.calls.push({ op: 'write', address, length: src.length });
    const offset = this.check('dma.write', address, src.length);
    this.ram.set(src, offset);
  }

  view(address: bigint, length: number, access: MemoryAccess): MemoryView {
    const offset = this.check('dma.view', address, length);
    const bytes = this.ram.subarray(offset, offset + length);
    let disposed = false;
    const live = (): Uint8Array => {
      if (disposed) throw new BadHandleError('dma.view');
      return bytes;
    };
    return {
      address,
      length,
      access,
      get bytes() {
        return live();
      },
      get data() {
        const b = live();
        return new DataView(b.buffer, b.byteOffset, b.byteLength);
      },
      get disposed() {
        return disposed;
      },
      dispose() {
        disposed = true;
      },
      [Symbol.dispose]() {
        disposed = true;
      },
    };
  }

  private check(operation: string, address: bigint, length: number): number {
    if (!this.busMaster) throw new InvalidError(operation, 'bus mastering is disabled');
    const end = this.base + BigInt(this.ram.length);
    if (address < this.base || address + BigInt(length) > end) {
      throw new InvalidError(operation, `${hex(address)}+${length} is outside guest RAM`);
    }
    return Number(address - this.base);
  }
}

export interface FakeContext {
  ctx: DeviceContext;
  irq: FakeInterrupts;
  dma: FakeDma;
  direct: Map<number, Uint8Array>;
}

/** A fresh context with `ramSize` bytes of guest RAM at guest address `ramBase`. */
export function fakeContext(options: { ramBase?: bigint; ramSize?: number } = {}): FakeContext {
  const irq = new FakeInterrupts();
  const dma = new FakeDma(new Uint8Array(options.ramSize ?? 0x10000), options.ramBase ?? 0x100000n);
  const direct = new Map<number, Uint8Array>();
  const ctx: DeviceContext = {
    uuid: '00000000-0000-4000-8000-000000000000',
    interrupts: irq,
    dma,
    directMemory(bar: number): Uint8Array {
      const mem = direct.get(bar);
      if (mem === undefined) throw new InvalidError('device.directMemory', `BAR ${bar} is not a direct BAR`);
      return mem;
    },
    doorbell(): () => void {
      throw new InvalidError('device.doorbell', 'the fake context has no doorbells');
    },
  };
  return { ctx, irq, dma, direct };
}

/** The model's saved state as bytes. */
export function save(model: DeviceModel): Uint8Array {
  const w = new StateWriter();
  model.saveState(w);
  return w.finish();
}

/** Loads `bytes` into `model` as the core does: a reader over the model's own section. */
export function load(model: DeviceModel, bytes: Uint8Array, version = model.stateVersion): void {
  model.loadState(new StateReader(bytes, 'test.load'), version);
}

/** Asserts two byte arrays are equal, naming the first differing index (fast for large arrays). */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array, label = 'bytes'): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  throw new Error(`${label} differ at index ${i} (lengths ${actual.length} and ${expected.length}): ${actual[i]} != ${expected[i]}`);
}
