/**
 * `fuzz-probe`: a device model that exists to give the fuzzer every part of the core to hit —
 * a 64-bit BAR holding the MSI-X table, a PBA in another BAR, MSI with per-vector masking,
 * power management, a PCI Express capability, an I/O BAR with a doorbell, and a DMA engine
 * whose transfers the guest describes either in registers or in a descriptor in guest RAM (so
 * guest RAM can change under the device's feet), moved by copies or through zero-copy views.
 *
 * The model is written as a careful device would be: nothing the guest writes makes it throw;
 * refused DMA and bad vectors land in the status register. It tells the harness each interrupt
 * it raises, so interrupt delivery can be checked against the guest's masks.
 *
 * Registers (BAR2, 4-byte accesses):
 * | offset | name | |
 * | --- | --- | --- |
 * | 0x00 | ID | RO `0x50524f42` |
 * | 0x04 | SCRATCH | RW |
 * | 0x08 / 0x0c | DMA_ADDR low / high | RW |
 * | 0x10 | DMA_LEN | RW |
 * | 0x14 | DMA_CMD | write: bit 0 start, bit 1 device → RAM, bit 2 through a view, bit 3 ADDR names a 16-byte descriptor `{u64 addr, u32 len, u32 flags(bit 0 → RAM)}`, bit 4 raise vector bits 15:8 when done |
 * | 0x18 | STATUS | RO: 0 ok, 1 length too large, 2 refused by the core, 3 bad vector |
 * | 0x1c | RAISE | write: raise vector `value & 0xff` |
 * | 0x20 | LOWER | write: lower INTx |
 *
 * BAR4 (I/O, 32 bytes): a 4-byte doorbell at 0 that acts as a DMA_CMD write.
 */
import { isVmedError } from '@vmed/core';
import type { DeviceContext, DeviceDefinition, DeviceModel, PciFunctionDefinition, RegionAccessSize, StateReader, StateWriter } from '@vmed/core';

export const PROBE_ID = 0x50524f42;
export const PROBE_BUFFER = 4096;
export const PROBE_REG = {
  ID: 0x00,
  SCRATCH: 0x04,
  DMA_ADDR: 0x08,
  DMA_ADDR_HIGH: 0x0c,
  DMA_LEN: 0x10,
  DMA_CMD: 0x14,
  STATUS: 0x18,
  RAISE: 0x1c,
  LOWER: 0x20,
} as const;
export const PROBE_CMD = { START: 0x1, TO_RAM: 0x2, VIEW: 0x4, DESCRIPTOR: 0x8, IRQ: 0x10 } as const;
export const PROBE_STATUS = { OK: 0, TOO_LONG: 1, REFUSED: 2, BAD_VECTOR: 3 } as const;
/** Where the MSI-X structures sit. */
export const PROBE_MSIX = { vectors: 12, tableBar: 0, tableOffset: 0x100, pbaBar: 2, pbaOffset: 0x800 } as const;
export const PROBE_MSI_VECTORS = 8;

export const PROBE_PCI_FUNCTION: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0xf0f0,
  revision: 0x02,
  classCode: 0xff0000,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  interruptPin: 2,
  bars: [{ kind: 'memory64', size: 0x4000, prefetchable: true }, undefined, { kind: 'memory32', size: 0x1000 }, undefined, { kind: 'io', size: 32 }],
  msi: { vectors: PROBE_MSI_VECTORS, address64: true, perVectorMask: true },
  msix: { ...PROBE_MSIX },
  pcie: true,
  powerManagement: true,
};

/** What the probe tells the harness. */
export interface ProbeObserver {
  /** The model is about to raise `vector`. */
  raising?(vector: number): void;
}

export interface ProbeOptions {
  readonly observer?: ProbeObserver;
}

interface ProbeState {
  scratch: number;
  dmaAddr: bigint;
  dmaLen: number;
  status: number;
  buffer: Uint8Array;
  /** BAR0 bytes outside the MSI-X table (plain RW memory). */
  bar0: Uint8Array;
}

function powerOn(): ProbeState {
  return { scratch: 0, dmaAddr: 0n, dmaLen: 0, status: 0, buffer: new Uint8Array(PROBE_BUFFER), bar0: new Uint8Array(0x100) };
}

/** One decoded transfer: where in guest memory, how long, which way. */
export interface ProbeTransfer {
  readonly address: bigint;
  readonly length: number;
  readonly toRam: boolean;
}

export class ProbeDevice implements DeviceModel {
  readonly definition = PROBE_PCI_FUNCTION;
  readonly stateVersion = 1;
  private s = powerOn();

  constructor(
    private readonly ctx: DeviceContext,
    private readonly observer: ProbeObserver | undefined,
  ) {
    ctx.doorbell({ bar: 4, offset: 0, length: 4 }, () => this.command(this.s.scratch | PROBE_CMD.START));
  }

  read(bar: number, offset: number, size: RegionAccessSize): number {
    if (bar === 0 && offset + size <= this.s.bar0.length) {
      let v = 0;
      for (let i = 0; i < size; i++) v |= (this.s.bar0[offset + i] ?? 0) << (8 * i);
      return v >>> 0;
    }
    if (bar !== 2 || size !== 4 || offset % 4 !== 0) return size === 4 ? 0xffffffff : (1 << (8 * size)) - 1;
    const s = this.s;
    switch (offset) {
      case PROBE_REG.ID:
        return PROBE_ID;
      case PROBE_REG.SCRATCH:
        return s.scratch;
      case PROBE_REG.DMA_ADDR:
        return Number(s.dmaAddr & 0xffffffffn);
      case PROBE_REG.DMA_ADDR_HIGH:
        return Number(s.dmaAddr >> 32n);
      case PROBE_REG.DMA_LEN:
        return s.dmaLen;
      case PROBE_REG.STATUS:
        return s.status;
      default:
        return 0xffffffff;
    }
  }

  write(bar: number, offset: number, size: RegionAccessSize, value: number): void {
    if (bar === 0 && offset + size <= this.s.bar0.length) {
      for (let i = 0; i < size; i++) this.s.bar0[offset + i] = (value >>> (8 * i)) & 0xff;
      return;
    }
    if (bar !== 2 || size !== 4 || offset % 4 !== 0) return;
    const s = this.s;
    const v = value >>> 0;
    switch (offset) {
      case PROBE_REG.SCRATCH:
        s.scratch = v;
        break;
      case PROBE_REG.DMA_ADDR:
        s.dmaAddr = (s.dmaAddr & 0xffffffff00000000n) | BigInt(v);
        break;
      case PROBE_REG.DMA_ADDR_HIGH:
        s.dmaAddr = (s.dmaAddr & 0xffffffffn) | (BigInt(v) << 32n);
        break;
      case PROBE_REG.DMA_LEN:
        s.dmaLen = v;
        break;
      case PROBE_REG.DMA_CMD:
        if ((v & PROBE_CMD.START) !== 0) this.command(v);
        break;
      case PROBE_REG.RAISE:
        this.raise(v & 0xff);
        break;
      case PROBE_REG.LOWER:
        this.ctx.interrupts.lower();
        break;
    }
  }

  private command(cmd: number): void {
    const s = this.s;
    s.status = this.transfer(cmd);
    if ((cmd & PROBE_CMD.IRQ) !== 0) this.raise((cmd >>> 8) & 0xff);
  }

  private transfer(cmd: number): number {
    const s = this.s;
    let t: ProbeTransfer = { address: s.dmaAddr, length: s.dmaLen, toRam: (cmd & PROBE_CMD.TO_RAM) !== 0 };
    try {
      if ((cmd & PROBE_CMD.DESCRIPTOR) !== 0) {
        const d = this.ctx.dma.read(s.dmaAddr, 16);
        const view = new DataView(d.buffer, d.byteOffset, 16);
        t = { address: view.getBigUint64(0, true), length: view.getUint32(8, true), toRam: (view.getUint32(12, true) & 1) !== 0 };
      }
      if (t.length > PROBE_BUFFER) return PROBE_STATUS.TOO_LONG;
      if ((cmd & PROBE_CMD.VIEW) !== 0) {
        if (t.length === 0) return PROBE_STATUS.OK;
        const view = this.ctx.dma.view(t.address, t.length, t.toRam ? 'readwrite' : 'read');
        try {
          if (t.toRam) view.bytes.set(s.buffer.subarray(0, t.length));
          else s.buffer.set(view.bytes);
        } finally {
          view.dispose();
        }
      } else if (t.toRam) {
        this.ctx.dma.write(t.address, s.buffer.subarray(0, t.length));
      } else {
        s.buffer.set(this.ctx.dma.read(t.address, t.length));
      }
      return PROBE_STATUS.OK;
    } catch (e) {
      if (isVmedError(e)) return PROBE_STATUS.REFUSED;
      throw e;
    }
  }

  private raise(vector: number): void {
    this.observer?.raising?.(vector);
    try {
      this.ctx.interrupts.raise(vector);
    } catch (e) {
      if (!isVmedError(e)) throw e;
      this.s.status = PROBE_STATUS.BAD_VECTOR;
    }
  }

  reset(): void {
    this.s = powerOn();
    this.ctx.interrupts.lower();
  }

  saveState(out: StateWriter): void {
    const s = this.s;
    out.u32(s.scratch).u64(s.dmaAddr).u32(s.dmaLen).u8(s.status).bytes(s.buffer).bytes(s.bar0);
  }

  loadState(input: StateReader, version: number): void {
    if (version !== 1) throw new Error(`probe state version ${version}`);
    const scratch = input.u32('scratch');
    const dmaAddr = input.u64('dmaAddr');
    const dmaLen = input.u32('dmaLen');
    const status = input.u8('status');
    if (status > PROBE_STATUS.BAD_VECTOR) throw new Error(`probe status ${status}`);
    const buffer = input.bytes('buffer', PROBE_BUFFER);
    const bar0 = input.bytes('bar0', 0x100);
    if (buffer.length !== PROBE_BUFFER || bar0.length !== 0x100) throw new Error('probe buffers have the wrong size');
    input.end();
    this.s = { scratch, dmaAddr, dmaLen, status, buffer, bar0 };
  }
}

export const probeDevice: DeviceDefinition<ProbeOptions> = {
  type: 'fuzz-probe',
  description: 'fuzzer probe: MSI-X table and PBA in two BARs, MSI with masking, PM, PCIe, doorbell, descriptor DMA',
  maxInstances: 8,
  create(context: DeviceContext, options: ProbeOptions): ProbeDevice {
    return new ProbeDevice(context, options?.observer);
  },
};
