/**
 * framebuffer: a PCI display in the manner of Linux's `samples/vfio-mdev/mdpy.c`: the guest
 * draws into BAR0, memory it writes directly (no trap per pixel), and the host reads the
 * picture out as an image whenever it likes.
 *
 * Read top to bottom: the PCI function, the state, the read switch, the write switch, the mode
 * computed from the registers, the host side, then save/load.
 *
 * Differences from mdpy: mdpy fixes its mode per mdev type and publishes it in a vendor
 * capability in config space; vmed's model API has no vendor capabilities, so the mode lives
 * in a trapped control BAR (BAR2), where the guest may also change it. The PCI ID is one no
 * Linux driver claims, so mdpy-fb (which would look for the capability) does not bind.
 *
 * The pixel memory belongs to the core (a direct BAR), so it is not in this model's saved
 * state: it travels with the core's direct-BAR memory, as guest RAM does.
 */
import { InvalidError, StateError } from '@vmed/core';
import type {
  DeviceContext,
  DeviceDefinition,
  DeviceModel,
  PciFunctionDefinition,
  RegionAccessSize,
  StateReader,
  StateWriter,
} from '@vmed/core';
import { allOnes, isServableAccess } from '../common/access.js';
import { checkStateVersion, readBits32 } from '../common/strict-state.js';
import {
  ENABLE_SCANOUT,
  FB_CONTROL_BAR_SIZE,
  FB_ENABLE,
  FB_FLUSH,
  FB_FORMAT,
  FB_FRAME_COUNT,
  FB_HEIGHT,
  FB_ID,
  FB_ID_VALUE,
  FB_STATUS,
  FB_STRIDE,
  FB_VRAM_SIZE,
  FB_WIDTH,
  FORMAT_RGB565,
  FORMAT_XRGB8888,
  MAX_DIMENSION,
  STATUS_MODE_VALID,
  STATUS_SCANNING_OUT,
} from './registers.js';

const OPERATION_LOAD = 'framebuffer.loadState';
const VRAM_BAR = 0;
const CONTROL_BAR = 2;
const MIN_VRAM = 0x10000;
const MAX_VRAM = 0x10000000;

// ---------------------------------------------------------------------------------------------
// The PCI function
// ---------------------------------------------------------------------------------------------

/**
 * 1234:11f0 (0x1234 is QEMU's informal vendor ID, as for edu; no Linux driver claims this
 * device ID), class 0x038000 (display controller, other), like mdpy's. BAR0 is the pixel
 * memory, BAR2 the control registers. No interrupt: the host polls the picture.
 */
function framebufferFunction(vramSize: number): PciFunctionDefinition {
  return {
    vendorId: 0x1234,
    deviceId: 0x11f0,
    revision: 0x01,
    classCode: 0x038000,
    interruptPin: 0,
    bars: [
      { kind: 'memory32', size: vramSize, prefetchable: true, backing: 'direct' },
      undefined,
      { kind: 'memory32', size: FB_CONTROL_BAR_SIZE },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

interface FramebufferState {
  width: number;
  height: number;
  /** Any fourcc the guest wrote; the mode is valid only for the supported ones. */
  format: number;
  enabled: boolean;
  frames: number;
}

/** A mode the host can show. */
export interface FramebufferMode {
  width: number;
  height: number;
  format: 'XRGB8888' | 'RGB565';
  /** Bytes per line. */
  stride: number;
}

/** Options of a framebuffer instance. */
export interface FramebufferOptions {
  /** Pixel memory (BAR0) size: a power of two from 64 KiB to 256 MiB; 4 MiB by default. */
  vramSize?: number;
  /** Mode at power-on and reset; 640 × 480 by default, XRGB8888, scanout off. */
  width?: number;
  height?: number;
  /** Called on the I/O context each time the guest flushes a frame (writes FLUSH). */
  onFrame?: (frame: number) => void;
}

function bytesPerPixel(format: number): number {
  if (format === FORMAT_XRGB8888) return 4;
  if (format === FORMAT_RGB565) return 2;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/** The framebuffer device. Create it through {@link framebufferDevice}. */
export class FramebufferDevice implements DeviceModel {
  readonly definition: PciFunctionDefinition;
  readonly stateVersion = 1;

  private s: FramebufferState;
  private readonly vramSize: number;
  private readonly powerOn: FramebufferState;
  private readonly onFrame: ((frame: number) => void) | undefined;

  constructor(
    private readonly ctx: DeviceContext,
    options: FramebufferOptions = {},
  ) {
    const vramSize = options.vramSize ?? 0x400000;
    if (!Number.isSafeInteger(vramSize) || vramSize < MIN_VRAM || vramSize > MAX_VRAM || (vramSize & (vramSize - 1)) !== 0) {
      throw new InvalidError('framebuffer.create', `vramSize ${vramSize} is not a power of two from 64 KiB to 256 MiB`);
    }
    const width = options.width ?? 640;
    const height = options.height ?? 480;
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > MAX_DIMENSION) throw new InvalidError('framebuffer.create', `${name} ${v} is outside 1..${MAX_DIMENSION}`);
    }
    this.vramSize = vramSize;
    this.definition = framebufferFunction(vramSize);
    this.powerOn = { width, height, format: FORMAT_XRGB8888, enabled: false, frames: 0 };
    this.s = { ...this.powerOn };
    this.onFrame = options.onFrame;
  }

  // --- guest accesses ------------------------------------------------------------------------

  /** Control registers (BAR2) only: BAR0 accesses never reach the model. 4-byte accesses only. */
  read(bar: number, offset: number, size: RegionAccessSize): number {
    if (bar !== CONTROL_BAR || size !== 4 || !isServableAccess(offset, size, FB_CONTROL_BAR_SIZE)) return allOnes(size);
    const s = this.s;
    switch (offset) {
      case FB_ID:
        return FB_ID_VALUE;
      case FB_VRAM_SIZE:
        return this.vramSize;
      case FB_WIDTH:
        return s.width;
      case FB_HEIGHT:
        return s.height;
      case FB_FORMAT:
        return s.format;
      case FB_STRIDE:
        return s.width * bytesPerPixel(s.format);
      case FB_ENABLE:
        return s.enabled ? ENABLE_SCANOUT : 0;
      case FB_STATUS:
        return this.status();
      case FB_FRAME_COUNT:
        return s.frames;
      default:
        return allOnes(size);
    }
  }

  write(bar: number, offset: number, size: RegionAccessSize, value: number): void {
    if (bar !== CONTROL_BAR || size !== 4 || !isServableAccess(offset, size, FB_CONTROL_BAR_SIZE)) return;
    const s = this.s;
    switch (offset) {
      case FB_WIDTH:
        s.width = value & MAX_DIMENSION;
        break;
      case FB_HEIGHT:
        s.height = value & MAX_DIMENSION;
        break;
      case FB_FORMAT:
        s.format = value >>> 0;
        break;
      case FB_ENABLE:
        s.enabled = (value & ENABLE_SCANOUT) !== 0;
        break;
      case FB_FLUSH:
        s.frames = (s.frames + 1) >>> 0;
        this.onFrame?.(s.frames);
        break;
    }
  }

  // --- the mode, computed from the registers -------------------------------------------------

  private validMode(): FramebufferMode | undefined {
    const { width, height, format } = this.s;
    const bpp = bytesPerPixel(format);
    if (bpp === 0 || width === 0 || height === 0) return undefined;
    const stride = width * bpp;
    if (stride * height > this.vramSize) return undefined;
    return { width, height, format: format === FORMAT_XRGB8888 ? 'XRGB8888' : 'RGB565', stride };
  }

  private status(): number {
    const valid = this.validMode() !== undefined;
    return (valid ? STATUS_MODE_VALID : 0) | (valid && this.s.enabled ? STATUS_SCANNING_OUT : 0);
  }

  // --- host side -----------------------------------------------------------------------------

  /** The mode being scanned out, or `undefined` while scanout is off or the mode is invalid. */
  get mode(): FramebufferMode | undefined {
    return this.s.enabled ? this.validMode() : undefined;
  }

  /** Frames the guest has flushed since reset. */
  get frames(): number {
    return this.s.frames;
  }

  /**
   * The picture as 8-bit RGB, row by row.
   * @throws StateError while scanout is off or the mode is invalid.
   */
  snapshot(): { width: number; height: number; rgb: Uint8Array } {
    const mode = this.mode;
    if (mode === undefined) throw new StateError('framebuffer.snapshot', 'scanout is off or the mode is invalid');
    const vram = this.ctx.directMemory(VRAM_BAR);
    if (vram.length < mode.stride * mode.height) {
      throw new StateError('framebuffer.snapshot', `pixel memory is ${vram.length} bytes, the mode needs ${mode.stride * mode.height}`);
    }
    const rgb = new Uint8Array(mode.width * mode.height * 3);
    let o = 0;
    for (let y = 0; y < mode.height; y++) {
      let p = y * mode.stride;
      for (let x = 0; x < mode.width; x++) {
        if (mode.format === 'XRGB8888') {
          rgb[o++] = vram[p + 2] ?? 0;
          rgb[o++] = vram[p + 1] ?? 0;
          rgb[o++] = vram[p] ?? 0;
          p += 4;
        } else {
          const v = (vram[p] ?? 0) | ((vram[p + 1] ?? 0) << 8);
          const r = (v >> 11) & 0x1f;
          const g = (v >> 5) & 0x3f;
          const b = v & 0x1f;
          rgb[o++] = (r << 3) | (r >> 2);
          rgb[o++] = (g << 2) | (g >> 4);
          rgb[o++] = (b << 3) | (b >> 2);
          p += 2;
        }
      }
    }
    return { width: mode.width, height: mode.height, rgb };
  }

  /**
   * The picture as a binary PPM (`P6`) file.
   * @throws StateError while scanout is off or the mode is invalid.
   */
  toPpm(): Uint8Array {
    const { width, height, rgb } = this.snapshot();
    const header = new TextEncoder().encode(`P6\n${width} ${height}\n255\n`);
    const out = new Uint8Array(header.length + rgb.length);
    out.set(header);
    out.set(rgb, header.length);
    return out;
  }

  // --- lifecycle and migration ---------------------------------------------------------------

  /** Back to the power-on mode with scanout off; the pixel memory is left as it is. */
  reset(): void {
    this.s = { ...this.powerOn };
  }

  /** Version 1 layout: width, height, format (u32), enabled (bool), frame count (u32). */
  saveState(out: StateWriter): void {
    const s = this.s;
    out.u32(s.width).u32(s.height).u32(s.format).bool(s.enabled).u32(s.frames);
  }

  /** Loads a version-1 stream; refuses (`Invalid`) dimensions over 16 bits and trailing bytes, leaving the device untouched. */
  loadState(input: StateReader, version: number): void {
    checkStateVersion(OPERATION_LOAD, version, this.stateVersion);
    const width = readBits32(input, OPERATION_LOAD, 'width', MAX_DIMENSION);
    const height = readBits32(input, OPERATION_LOAD, 'height', MAX_DIMENSION);
    const format = input.u32('format');
    const enabled = input.bool('enabled');
    const frames = input.u32('frames');
    input.end();
    this.s = { width, height, format, enabled, frames };
  }
}

// ---------------------------------------------------------------------------------------------
// The device type
// ---------------------------------------------------------------------------------------------

/** {@link DeviceDefinition} of the framebuffer type, whose `create` returns the typed model. */
export interface FramebufferDeviceDefinition extends DeviceDefinition<FramebufferOptions> {
  /** @throws InvalidError for a bad `vramSize`, `width` or `height`. */
  create(context: DeviceContext, options?: FramebufferOptions): FramebufferDevice;
}

/** The `framebuffer` device type: direct pixel memory in BAR0, mode registers in BAR2. */
export const framebufferDevice: FramebufferDeviceDefinition = {
  type: 'framebuffer',
  description: 'PCI framebuffer like mdpy (1234:11f0): direct pixel memory in BAR0, mode registers in BAR2',
  maxInstances: 4,
  create(context: DeviceContext, options: FramebufferOptions = {}): FramebufferDevice {
    return new FramebufferDevice(context, options);
  },
};
