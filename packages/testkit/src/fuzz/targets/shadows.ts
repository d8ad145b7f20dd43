/**
 * What the guest programmed into each DMA-capable device's registers, tracked from the guest's
 * own writes (never read back from the model), and the guest memory each command allows.
 */
import type { DeviceHarness, DmaShadow } from '../device-harness.js';
import type { DmaWindow } from '../session.js';

/** edu (QEMU docs/specs/edu.rst): source, destination, count, command at 0x80..0x98. */
export class EduShadow implements DmaShadow {
  private src = 0n;
  private dst = 0n;
  private count = 0n;

  write(bar: number, offset: number, size: 1 | 2 | 4, value: number): DmaWindow[] {
    if (bar !== 0 || size !== 4) return [];
    const v = BigInt(value >>> 0);
    switch (offset) {
      case 0x80:
        this.src = (this.src & 0xffffffff00000000n) | v;
        break;
      case 0x84:
        this.src = (this.src & 0xffffffffn) | (v << 32n);
        break;
      case 0x88:
        this.dst = (this.dst & 0xffffffff00000000n) | v;
        break;
      case 0x8c:
        this.dst = (this.dst & 0xffffffffn) | (v << 32n);
        break;
      case 0x90:
        this.count = (this.count & 0xffffffff00000000n) | v;
        break;
      case 0x94:
        this.count = (this.count & 0xffffffffn) | (v << 32n);
        break;
      case 0x98: {
        if ((value & 1) === 0 || this.count === 0n) return [];
        // Direction bit 1: device → RAM, so the guest side is the destination.
        const toRam = (value & 2) !== 0;
        const guest = toRam ? this.dst : this.src;
        return [{ base: guest, end: guest + this.count, read: !toRam, write: toRam }];
      }
    }
    return [];
  }

  reset(): void {
    this.src = 0n;
    this.dst = 0n;
    this.count = 0n;
  }

  snapshot(): unknown {
    return [this.src, this.dst, this.count];
  }

  restore(snapshot: unknown): void {
    [this.src, this.dst, this.count] = snapshot as [bigint, bigint, bigint];
  }
}

/** fuzz-probe: address, length, command (and the descriptor the address names, read from RAM now). */
export class ProbeShadow implements DmaShadow {
  private addr = 0n;
  private len = 0;
  private scratch = 0;

  write(bar: number, offset: number, size: 1 | 2 | 4, value: number, h: DeviceHarness): DmaWindow[] {
    // The I/O BAR's doorbell runs the command held in SCRATCH.
    if (bar === 4 && offset === 0 && size === 4) return this.command((this.scratch | 1) >>> 0, h);
    if (bar !== 2 || size !== 4) return [];
    const v = value >>> 0;
    switch (offset) {
      case 0x04:
        this.scratch = v;
        break;
      case 0x08:
        this.addr = (this.addr & 0xffffffff00000000n) | BigInt(v);
        break;
      case 0x0c:
        this.addr = (this.addr & 0xffffffffn) | (BigInt(v) << 32n);
        break;
      case 0x10:
        this.len = v;
        break;
      case 0x14:
        if ((v & 1) !== 0) return this.command(v, h);
        break;
    }
    return [];
  }

  private command(cmd: number, h: DeviceHarness): DmaWindow[] {
    const windows: DmaWindow[] = [];
    let address = this.addr;
    let length = this.len;
    let toRam = (cmd & 2) !== 0;
    if ((cmd & 8) !== 0) {
      windows.push({ base: this.addr, end: this.addr + 16n, read: true, write: false });
      const d = h.guest.ramBytes(this.addr, 16);
      if (d === undefined) return windows;
      const view = new DataView(d.buffer, d.byteOffset, 16);
      address = view.getBigUint64(0, true);
      length = view.getUint32(8, true);
      toRam = (view.getUint32(12, true) & 1) !== 0;
    }
    if (length === 0 || length > 4096) return windows;
    windows.push({ base: address, end: address + BigInt(length), read: !toRam, write: toRam });
    return windows;
  }

  reset(): void {
    this.addr = 0n;
    this.len = 0;
    this.scratch = 0;
  }

  snapshot(): unknown {
    return [this.addr, this.len, this.scratch];
  }

  restore(snapshot: unknown): void {
    [this.addr, this.len, this.scratch] = snapshot as [bigint, number, number];
  }
}
