/**
 * The edu register map (QEMU docs/specs/edu.rst), BAR0-relative, plus vmed's extensions,
 * which are marked as such.
 */

/** 0x00 RO: identification, 0xRRrr00ed (major 1, minor 0). */
export const EDU_ID = 0x00;
/** 0x04 RW: liveness check; reads return the bitwise inverse of the last write. */
export const EDU_LIVENESS = 0x04;
/** 0x08 RW: factorial; a write starts the computation, a read returns the result. */
export const EDU_FACTORIAL = 0x08;
/** 0x20 RW: status (bit 0 computing, read-only; bit 7 raise interrupt after factorial). */
export const EDU_STATUS = 0x20;
/** 0x24 RO: interrupt status, the OR of every value raised and not yet acknowledged. */
export const EDU_IRQ_STATUS = 0x24;
/** 0x60 WO: interrupt raise; the value is ORed into the interrupt status. */
export const EDU_IRQ_RAISE = 0x60;
/** 0x64 WO: interrupt acknowledge; the value's bits are cleared from the interrupt status. */
export const EDU_IRQ_ACK = 0x64;
/** 0x80 RW (64-bit): DMA source address. */
export const EDU_DMA_SRC = 0x80;
/** 0x88 RW (64-bit): DMA destination address. */
export const EDU_DMA_DST = 0x88;
/** 0x90 RW (64-bit): DMA transfer count in bytes. */
export const EDU_DMA_COUNT = 0x90;
/** 0x98 RW (64-bit): DMA command. */
export const EDU_DMA_CMD = 0x98;
/** 0xa0 RO (vmed extension): why the last DMA failed, one of the `DMA_ERROR_*` codes. */
export const EDU_DMA_ERROR = 0xa0;

/** Value of the identification register: version 1.0. */
export const EDU_ID_VALUE = 0x010000ed;
/** Size of BAR0. */
export const EDU_BAR_SIZE = 1 << 20;

export const STATUS_COMPUTING = 0x01;
export const STATUS_IRQ_FACTORIAL = 0x80;

/** Interrupt status bit raised when a factorial finishes (with STATUS_IRQ_FACTORIAL set). */
export const IRQ_FACTORIAL = 0x00000001;
/** Interrupt status bit raised when a DMA finishes (with DMA_CMD_IRQ set). */
export const IRQ_DMA = 0x00000100;

export const DMA_CMD_START = 0x01;
/** Direction: 0 guest RAM to the device buffer, 1 device buffer to guest RAM. */
export const DMA_CMD_TO_RAM = 0x02;
export const DMA_CMD_IRQ = 0x04;
/** vmed extension: the last transfer failed and moved no byte; {@link EDU_DMA_ERROR} says why. */
export const DMA_CMD_ERROR = 0x80000000;

/** Device address of the DMA buffer. */
export const DMA_BUFFER_ADDRESS = 0x40000;
export const DMA_BUFFER_SIZE = 4096;

/** Values of {@link EDU_DMA_ERROR} (vmed extension). */
export const DMA_ERROR_NONE = 0;
/** The device-side range leaves [0x40000, 0x41000): bad address, or a count that overruns the buffer. */
export const DMA_ERROR_DEVICE_RANGE = 1;
/** The guest-side range wraps past 2^64. */
export const DMA_ERROR_GUEST_WRAP = 2;
/** The core refused the guest-side range: outside guest RAM, or bus mastering is off. */
export const DMA_ERROR_GUEST_REFUSED = 3;
