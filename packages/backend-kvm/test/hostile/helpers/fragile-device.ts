/**
 * `fragile`: a test device whose model throws on demand — on a register read, in its doorbell
 * handler, or in the completion step of a DMA it runs — standing in for a device model with a
 * bug. Registers (BAR0, 4 KiB, trapped, 4-byte accesses):
 *
 * | offset | what |
 * | ------ | ---- |
 * | 0x00 | RO id `FRAGILE_ID` |
 * | 0x04 | RW scratch |
 * | 0x08 | WO start DMA: writes the scratch value (4 bytes) to guest address [0x0c], then completes |
 * | 0x0c | RW DMA guest address (low 32 bits) |
 * | 0x10 | RO status: reads count of completed DMAs; the `read` fault throws here |
 * | 0x100 | doorbell (ioeventfd): each ring runs a DMA as 0x08 does |
 */
import type { DeviceContext, DeviceDefinition, DeviceModel, PciFunctionDefinition, RegionAccessSize } from '@vmed/core';

export const FRAGILE_ID = 0x0f0d_d00d;
export const FRAGILE_DOORBELL = 0x100;

/** Where the model throws, if anywhere. */
export type FragileFault = 'none' | 'read' | 'doorbell' | 'dma';

const FUNCTION: PciFunctionDefinition = {
  vendorId: 0x1af4,
  deviceId: 0x10fe,
  classCode: 0xff0000,
  bars: [{ kind: 'memory32', size: 4096 }],
  msi: { vectors: 1, address64: true, perVectorMask: false },
};

export class FragileModel implements DeviceModel {
  readonly definition = FUNCTION;
  readonly stateVersion = 1;
  /** Set by the test: the next matching operation throws (and so on until changed). */
  fault: FragileFault = 'none';
  scratch = 0;
  dmaAddress = 0;
  completed = 0;
  rings = 0;

  constructor(private readonly ctx: DeviceContext) {
    ctx.doorbell({ bar: 0, offset: FRAGILE_DOORBELL, length: 4 }, (count) => {
      this.rings += count;
      if (this.fault === 'doorbell') throw new Error('fragile: doorbell handler bug');
      this.runDma();
    });
  }

  read(bar: number, offset: number, size: RegionAccessSize): number {
    if (bar !== 0 || size !== 4) return 0xffff_ffff;
    switch (offset) {
      case 0x00:
        return FRAGILE_ID;
      case 0x04:
        return this.scratch;
      case 0x0c:
        return this.dmaAddress;
      case 0x10:
        if (this.fault === 'read') throw new Error('fragile: status read bug');
        return this.completed;
      default:
        return 0xffff_ffff;
    }
  }

  write(bar: number, offset: number, size: RegionAccessSize, value: number): void {
    if (bar !== 0 || size !== 4) return;
    switch (offset) {
      case 0x04:
        this.scratch = value >>> 0;
        return;
      case 0x08:
        this.runDma();
        return;
      case 0x0c:
        this.dmaAddress = value >>> 0;
        return;
    }
  }

  /** The DMA itself goes through; its completion step is where the `dma` fault throws. */
  private runDma(): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, this.scratch, true);
    this.ctx.dma.write(BigInt(this.dmaAddress), bytes);
    if (this.fault === 'dma') throw new Error('fragile: DMA completion bug');
    this.completed++;
    this.ctx.interrupts.raise();
  }

  reset(): void {
    this.scratch = 0;
    this.dmaAddress = 0;
    this.completed = 0;
  }

  saveState(): void {}

  loadState(): void {}
}

export const fragileDevice: DeviceDefinition<Record<string, never>> = {
  type: 'fragile',
  description: 'a device model that throws on demand (crash-isolation tests)',
  maxInstances: 4,
  create: (ctx) => new FragileModel(ctx),
};
