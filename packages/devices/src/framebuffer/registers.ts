/**
 * The framebuffer's control registers (BAR2, 32-bit each). BAR0 is the pixel memory itself,
 * which the guest writes directly.
 */

/** 0x00 RO: identification, the ASCII bytes `vmfb` read as a little-endian u32. */
export const FB_ID = 0x00;
/** 0x04 RO: size of the pixel memory (BAR0) in bytes. */
export const FB_VRAM_SIZE = 0x04;
/** 0x08 RW: width in pixels (bits 15:0). */
export const FB_WIDTH = 0x08;
/** 0x0c RW: height in pixels (bits 15:0). */
export const FB_HEIGHT = 0x0c;
/** 0x10 RW: pixel format, a DRM fourcc code (`FORMAT_*`). */
export const FB_FORMAT = 0x10;
/** 0x14 RO: bytes per line, width × bytes per pixel (0 for an unknown format). */
export const FB_STRIDE = 0x14;
/** 0x18 RW: bit 0 enables scanout. */
export const FB_ENABLE = 0x18;
/** 0x1c RO: bit 0 the mode is valid, bit 1 the host is scanning out (enabled and valid). */
export const FB_STATUS = 0x1c;
/** 0x20 WO: any write marks a finished frame (counted, and reported to the host). */
export const FB_FLUSH = 0x20;
/** 0x24 RO: frames flushed since reset. */
export const FB_FRAME_COUNT = 0x24;

/** Value of {@link FB_ID}. */
export const FB_ID_VALUE = 0x62666d76;
/** Size of the control BAR. */
export const FB_CONTROL_BAR_SIZE = 0x1000;

export const ENABLE_SCANOUT = 0x1;
export const STATUS_MODE_VALID = 0x1;
export const STATUS_SCANNING_OUT = 0x2;

/** DRM_FORMAT_XRGB8888 (`XR24`): 4 bytes per pixel, little-endian B, G, R, unused. */
export const FORMAT_XRGB8888 = 0x34325258;
/** DRM_FORMAT_RGB565 (`RG16`): 2 bytes per pixel, little-endian 5:6:5. */
export const FORMAT_RGB565 = 0x36314752;

/** Largest width or height the registers hold. */
export const MAX_DIMENSION = 0xffff;
