/**
 * The 16550A register file as the PC16550D data sheet names it: eight byte-wide registers,
 * two of which (offsets 0 and 1) are the divisor latch while LCR.DLAB is set, and one
 * (offset 2) which is IIR to reads and FCR to writes.
 */

/** Register offsets within the 8-byte I/O BAR. */
export const UART_RBR = 0; // receive buffer (read, DLAB=0)
export const UART_THR = 0; // transmit holding (write, DLAB=0)
export const UART_DLL = 0; // divisor latch low (DLAB=1)
export const UART_IER = 1; // interrupt enable (DLAB=0)
export const UART_DLM = 1; // divisor latch high (DLAB=1)
export const UART_IIR = 2; // interrupt identification (read)
export const UART_FCR = 2; // FIFO control (write)
export const UART_LCR = 3; // line control
export const UART_MCR = 4; // modem control
export const UART_LSR = 5; // line status
export const UART_MSR = 6; // modem status
export const UART_SCR = 7; // scratch

/** Size of the I/O BAR: the eight registers. */
export const UART_REGISTER_COUNT = 8;

export const IER_RDI = 0x01; // received data available (and character timeout)
export const IER_THRI = 0x02; // transmitter holding register empty
export const IER_RLSI = 0x04; // receiver line status
export const IER_MSI = 0x08; // modem status
/** Bits 7:4 of IER read as zero on a 16550A. */
export const IER_MASK = 0x0f;

export const IIR_NO_INT = 0x01;
export const IIR_MSI = 0x00;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_RX_TIMEOUT = 0x0c;
/** Bits 7:6 of IIR: both set while the FIFOs are enabled (a 16550A, not the buggy 16550). */
export const IIR_FIFOS_ENABLED = 0xc0;

export const FCR_ENABLE_FIFO = 0x01;
export const FCR_CLEAR_RCVR = 0x02;
export const FCR_CLEAR_XMIT = 0x04;
export const FCR_DMA_SELECT = 0x08;
export const FCR_TRIGGER_MASK = 0xc0;
/** The FCR bits the UART keeps (the two clear bits are self-clearing). */
export const FCR_STORED = FCR_ENABLE_FIFO | FCR_DMA_SELECT | FCR_TRIGGER_MASK;

/** Receiver FIFO trigger level selected by FCR bits 7:6. */
export const RX_TRIGGER_LEVELS = [1, 4, 8, 14] as const;
/** Depth of each FIFO on a 16550A. */
export const FIFO_DEPTH = 16;

export const LCR_WORD_LENGTH_MASK = 0x03;
export const LCR_STOP = 0x04;
export const LCR_PARITY = 0x08;
export const LCR_EVEN_PARITY = 0x10;
export const LCR_STICK_PARITY = 0x20;
export const LCR_BREAK = 0x40;
export const LCR_DLAB = 0x80;

export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;
/** Bits 7:5 of MCR read as zero on a 16550A. */
export const MCR_MASK = 0x1f;

export const LSR_DR = 0x01; // data ready
export const LSR_OE = 0x02; // overrun error
export const LSR_PE = 0x04; // parity error
export const LSR_FE = 0x08; // framing error
export const LSR_BI = 0x10; // break interrupt
export const LSR_THRE = 0x20; // transmitter holding register empty
export const LSR_TEMT = 0x40; // transmitter empty
export const LSR_FIFOE = 0x80; // error in receiver FIFO

export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04; // trailing edge of RI
export const MSR_DDCD = 0x08;
export const MSR_DELTAS = 0x0f;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;
export const MSR_LINES = 0xf0;

/** The UART's reference clock divided by 16: the baud rate at divisor 1 (1.8432 MHz crystal). */
export const UART_BASE_BAUD = 115200;
