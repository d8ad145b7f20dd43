/**
 * serial: a PCI 16550A UART, the vmed counterpart of Linux's `samples/vfio-mdev/mtty.c`.
 *
 * Read top to bottom: the state, the PCI function, the read switch, the write switch, the one
 * place that computes and signals the interrupt, the host side, then save/load.
 *
 * Choices where a real UART depends on time, which vmed does not model:
 * - **Transmission is instant.** A THR write hands the byte to the host (`onTransmit`) at once,
 *   so THR and the transmitter are empty again before the write returns: LSR.THRE and
 *   LSR.TEMT always read 1, and the transmitter FIFO never holds a byte. The THR-empty
 *   interrupt still follows the data sheet: the write clears it, the instant transmission
 *   sets it again, so the guest sees a fresh interrupt edge per byte, as on hardware after
 *   the byte leaves.
 * - **The line is idle after each host `receive()`**, so the character-timeout condition
 *   (data below the trigger level, no new character for four character times) holds as soon
 *   as data sits below the trigger level. IIR reports it as 0x0c rather than 0x04, which is
 *   how the FIFO trigger levels stay visible to the guest.
 * - **No OUT2 gating.** On a PC motherboard UART, MCR.OUT2 gates the interrupt to the PIC; on
 *   this PCI card (like QEMU's pci-serial) the UART's interrupt is wired to INTA# directly,
 *   so a pending, enabled interrupt asserts the line whatever OUT2 says. Linux sets OUT2
 *   anyway, so both conventions work for it.
 * - **No framing.** Parity, framing and break errors never occur (LSR bits 2–4 and 7 read 0);
 *   the divisor latch and LCR only describe the line ({@link SerialDevice.lineSettings}).
 */
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
import { checkStateVersion, readBits8, requireState } from '../common/strict-state.js';
import { ByteFifo } from './fifo.js';
import {
  FCR_CLEAR_RCVR,
  FCR_ENABLE_FIFO,
  FCR_STORED,
  FIFO_DEPTH,
  IER_MASK,
  IER_MSI,
  IER_RDI,
  IER_RLSI,
  IER_THRI,
  IIR_FIFOS_ENABLED,
  IIR_MSI,
  IIR_NO_INT,
  IIR_RDI,
  IIR_RLSI,
  IIR_RX_TIMEOUT,
  IIR_THRI,
  LCR_BREAK,
  LCR_DLAB,
  LCR_EVEN_PARITY,
  LCR_PARITY,
  LCR_STICK_PARITY,
  LCR_STOP,
  LCR_WORD_LENGTH_MASK,
  LSR_DR,
  LSR_OE,
  LSR_TEMT,
  LSR_THRE,
  MCR_DTR,
  MCR_LOOP,
  MCR_MASK,
  MCR_OUT1,
  MCR_OUT2,
  MCR_RTS,
  MSR_CTS,
  MSR_DCD,
  MSR_DCTS,
  MSR_DDCD,
  MSR_DDSR,
  MSR_DELTAS,
  MSR_DSR,
  MSR_LINES,
  MSR_RI,
  MSR_TERI,
  RX_TRIGGER_LEVELS,
  UART_BASE_BAUD,
  UART_FCR,
  UART_IER,
  UART_IIR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RBR,
  UART_REGISTER_COUNT,
  UART_SCR,
  UART_THR,
} from './registers.js';

const OPERATION_LOAD = 'serial.loadState';

// ---------------------------------------------------------------------------------------------
// The PCI function
// ---------------------------------------------------------------------------------------------

/**
 * QEMU's `pci-serial` identity (docs/specs/pci-serial.rst): Red Hat 1b36:0002, class 0x070002
 * (serial controller, 16550-compatible). Linux's 8250_pci has no ID entry for it: it binds
 * through its class-code catch-all (`PCI_CLASS_COMMUNICATION_SERIAL << 8`, mask 0xffff00,
 * `pbn_default`), and `serial_pci_guess_board()` accepts programming interface ≤ 6 and finds
 * the one 8-byte I/O BAR, so the guest gets one 16550A port on BAR0 with base baud 115200
 * and INTx (8250_pci asks for MSI only for a short list of boards). Other guests may use MSI.
 */
export const SERIAL_PCI_FUNCTION: PciFunctionDefinition = {
  vendorId: 0x1b36,
  deviceId: 0x0002,
  revision: 0x01,
  classCode: 0x070002,
  interruptPin: 1,
  bars: [{ kind: 'io', size: UART_REGISTER_COUNT }],
  msi: { vectors: 1, address64: true, perVectorMask: false },
};

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/** Everything the guest can observe; replaced whole by `loadState`. */
interface UartState {
  ier: number;
  lcr: number;
  mcr: number;
  /** FCR bits kept: FIFO enable, DMA mode, trigger level (0 while the FIFOs are off). */
  fcr: number;
  scr: number;
  dll: number;
  dlm: number;
  /** LSR.OE: a character was lost since LSR was last read. */
  overrun: boolean;
  /** MSR bits 3:0, cleared by reading MSR. */
  msrDeltas: number;
  /** The modem inputs the host drives (CTS, DSR, RI, DCD), in MSR bits 7:4. */
  hostLines: number;
  /** A THR-empty event not yet acknowledged (IIR read or THR write); only while IER.THRI. */
  thrPending: boolean;
  rx: ByteFifo;
}

function powerOnState(hostLines: number): UartState {
  return {
    ier: 0,
    lcr: 0,
    mcr: 0,
    fcr: 0,
    scr: 0,
    // The divisor latch is undefined at power-on on real parts; 12 is 9600 baud, as QEMU picks.
    dll: 12,
    dlm: 0,
    overrun: false,
    msrDeltas: 0,
    hostLines,
    thrPending: false,
    rx: new ByteFifo(FIFO_DEPTH),
  };
}

/** The modem input lines as the host drives them. */
export interface ModemLines {
  /** Clear To Send (MSR bit 4). */
  cts: boolean;
  /** Data Set Ready (MSR bit 5). */
  dsr: boolean;
  /** Ring Indicator (MSR bit 6). */
  ri: boolean;
  /** Data Carrier Detect (MSR bit 7). */
  dcd: boolean;
}

/** The line as the guest configured it (divisor latch and LCR). */
export interface SerialLineSettings {
  divisor: number;
  /** `115200 / divisor`; 0 while the divisor is 0. */
  baud: number;
  dataBits: 5 | 6 | 7 | 8;
  stopBits: 1 | 1.5 | 2;
  parity: 'none' | 'odd' | 'even' | 'mark' | 'space';
  /** LCR.BREAK: the guest is holding the line in break. */
  breakActive: boolean;
}

/** Counters for tests and host diagnostics; not device state (not migrated). */
export interface SerialStats {
  /** Bytes handed to `onTransmit` (loopback bytes excluded). */
  bytesTransmitted: number;
  /** Bytes that entered the receiver from the host or from loopback. */
  bytesReceived: number;
  /** Characters lost to a full receiver. */
  overruns: number;
}

/** Options of a serial instance. */
export interface SerialOptions {
  /**
   * Receives each byte the guest transmits, as it is written to THR (one byte per call; the
   * array is the callee's). Not called in loopback mode. Runs on the I/O context inside the
   * guest's THR write: a throw propagates to the core, which marks the device broken.
   */
  onTransmit?: (bytes: Uint8Array) => void;
  /** Modem inputs at creation; by default CTS, DSR and DCD are asserted and RI is not. */
  modemLines?: Partial<ModemLines>;
}

const DEFAULT_HOST_LINES = MSR_CTS | MSR_DSR | MSR_DCD;

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/** A 16550A behind one 8-byte I/O BAR. Create it through {@link serialDevice}. */
export class SerialDevice implements DeviceModel {
  readonly definition = SERIAL_PCI_FUNCTION;
  readonly stateVersion = 1;

  private s: UartState;
  /** The interrupt level last signalled to the core, so each change is signalled once. */
  private irqAsserted = false;
  private readonly onTransmit: ((bytes: Uint8Array) => void) | undefined;
  private readonly counters: SerialStats = { bytesTransmitted: 0, bytesReceived: 0, overruns: 0 };

  constructor(
    private readonly ctx: DeviceContext,
    options: SerialOptions = {},
  ) {
    this.onTransmit = options.onTransmit;
    this.s = powerOnState(applyLines(DEFAULT_HOST_LINES, options.modemLines ?? {}));
  }

  // --- guest accesses ------------------------------------------------------------------------

  /** Serves a guest read; a 2- or 4-byte access reads consecutive registers, low byte first. */
  read(bar: number, offset: number, size: RegionAccessSize): number {
    if (bar !== 0 || !isServableAccess(offset, size, UART_REGISTER_COUNT)) return allOnes(size);
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.readRegister(offset + i) << (8 * i);
    return value >>> 0;
  }

  /** Serves a guest write; a 2- or 4-byte access writes consecutive registers, low byte first. */
  write(bar: number, offset: number, size: RegionAccessSize, value: number): void {
    if (bar !== 0 || !isServableAccess(offset, size, UART_REGISTER_COUNT)) return;
    for (let i = 0; i < size; i++) this.writeRegister(offset + i, (value >>> (8 * i)) & 0xff);
  }

  private readRegister(offset: number): number {
    const s = this.s;
    const dlab = (s.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR:
        return dlab ? s.dll : this.readRbr();
      case UART_IER:
        return dlab ? s.dlm : s.ier;
      case UART_IIR:
        return this.readIir();
      case UART_LCR:
        return s.lcr;
      case UART_MCR:
        return s.mcr;
      case UART_LSR:
        return this.readLsr();
      case UART_MSR:
        return this.readMsr();
      case UART_SCR:
        return s.scr;
      default:
        return 0xff;
    }
  }

  private writeRegister(offset: number, value: number): void {
    const s = this.s;
    const dlab = (s.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_THR:
        if (dlab) s.dll = value;
        else this.writeThr(value);
        break;
      case UART_IER:
        if (dlab) s.dlm = value;
        else this.writeIer(value);
        break;
      case UART_FCR:
        this.writeFcr(value);
        break;
      case UART_LCR:
        s.lcr = value;
        break;
      case UART_MCR:
        this.writeMcr(value);
        break;
      case UART_LSR:
      case UART_MSR:
        // Status registers: writes are factory-test only on real parts, ignored here.
        break;
      case UART_SCR:
        s.scr = value;
        break;
    }
  }

  // --- register semantics --------------------------------------------------------------------

  private readRbr(): number {
    // An empty receiver reads 0 (real parts return stale data; nothing should depend on it).
    const byte = this.s.rx.pop() ?? 0;
    this.updateIrq();
    return byte;
  }

  private readIir(): number {
    const iir = this.iir();
    // Reading IIR acknowledges THR-empty only when that is the interrupt it reports.
    if ((iir & 0x0f) === IIR_THRI) {
      this.s.thrPending = false;
      this.updateIrq();
    }
    return iir;
  }

  private readLsr(): number {
    const lsr = this.lsr();
    if (this.s.overrun) {
      this.s.overrun = false;
      this.updateIrq();
    }
    return lsr;
  }

  private readMsr(): number {
    const msr = this.msr();
    if (this.s.msrDeltas !== 0) {
      this.s.msrDeltas = 0;
      this.updateIrq();
    }
    return msr;
  }

  private writeThr(value: number): void {
    const s = this.s;
    s.thrPending = false;
    this.updateIrq();
    if ((s.mcr & MCR_LOOP) !== 0) {
      this.receiveByte(value);
    } else {
      this.counters.bytesTransmitted += 1;
      this.onTransmit?.(Uint8Array.of(value));
    }
    // The byte has left: THR is empty again.
    s.thrPending = (s.ier & IER_THRI) !== 0;
    this.updateIrq();
  }

  private writeIer(value: number): void {
    const s = this.s;
    const enablingThri = (s.ier & IER_THRI) === 0 && (value & IER_THRI) !== 0;
    s.ier = value & IER_MASK;
    // Enabling THRI while THR is empty (always, here) raises THR-empty at once; disabling drops it.
    if (enablingThri) s.thrPending = true;
    if ((s.ier & IER_THRI) === 0) s.thrPending = false;
    this.updateIrq();
  }

  private writeFcr(value: number): void {
    const s = this.s;
    const enable = (value & FCR_ENABLE_FIFO) !== 0;
    const toggled = enable !== this.fifosEnabled();
    // Changing FIFO enable empties both FIFOs; the transmitter FIFO is always empty here.
    if (toggled || (enable && (value & FCR_CLEAR_RCVR) !== 0)) s.rx.clear();
    // With FCR0 clear the other bits are not programmed (data sheet, FCR description).
    s.fcr = enable ? value & FCR_STORED : 0;
    this.updateIrq();
  }

  private writeMcr(value: number): void {
    const before = this.modemInputs();
    this.s.mcr = value & MCR_MASK;
    this.noteModemChange(before);
    this.updateIrq();
  }

  // --- status, computed from state -----------------------------------------------------------

  private fifosEnabled(): boolean {
    return (this.s.fcr & FCR_ENABLE_FIFO) !== 0;
  }

  /** Receiver capacity: the 16-byte FIFO, or the single 16450-style holding register. */
  private rxCapacity(): number {
    return this.fifosEnabled() ? FIFO_DEPTH : 1;
  }

  private rxTriggerLevel(): number {
    return RX_TRIGGER_LEVELS[this.s.fcr >>> 6] ?? 1;
  }

  private lsr(): number {
    const s = this.s;
    return (s.rx.length > 0 ? LSR_DR : 0) | (s.overrun ? LSR_OE : 0) | LSR_THRE | LSR_TEMT;
  }

  /** The modem inputs the UART sees: the host's lines, or its own outputs in loopback. */
  private modemInputs(): number {
    const mcr = this.s.mcr;
    if ((mcr & MCR_LOOP) === 0) return this.s.hostLines;
    return (
      ((mcr & MCR_RTS) !== 0 ? MSR_CTS : 0) |
      ((mcr & MCR_DTR) !== 0 ? MSR_DSR : 0) |
      ((mcr & MCR_OUT1) !== 0 ? MSR_RI : 0) |
      ((mcr & MCR_OUT2) !== 0 ? MSR_DCD : 0)
    );
  }

  private msr(): number {
    return this.s.msrDeltas | this.modemInputs();
  }

  private noteModemChange(before: number): void {
    const after = this.modemInputs();
    const changed = before ^ after;
    let deltas = 0;
    if ((changed & MSR_CTS) !== 0) deltas |= MSR_DCTS;
    if ((changed & MSR_DSR) !== 0) deltas |= MSR_DDSR;
    if ((changed & MSR_DCD) !== 0) deltas |= MSR_DDCD;
    if ((before & MSR_RI) !== 0 && (after & MSR_RI) === 0) deltas |= MSR_TERI;
    this.s.msrDeltas |= deltas;
  }

  /** The interrupt IIR reports, in the 16550A's priority order. */
  private pendingInterrupt(): number {
    const s = this.s;
    if ((s.ier & IER_RLSI) !== 0 && s.overrun) return IIR_RLSI;
    if ((s.ier & IER_RDI) !== 0 && s.rx.length > 0) {
      if (!this.fifosEnabled()) return IIR_RDI;
      return s.rx.length >= this.rxTriggerLevel() ? IIR_RDI : IIR_RX_TIMEOUT;
    }
    if (s.thrPending) return IIR_THRI;
    if ((s.ier & IER_MSI) !== 0 && s.msrDeltas !== 0) return IIR_MSI;
    return IIR_NO_INT;
  }

  private iir(): number {
    return this.pendingInterrupt() | (this.fifosEnabled() ? IIR_FIFOS_ENABLED : 0);
  }

  // --- the interrupt -------------------------------------------------------------------------

  /**
   * Signals the interrupt level when it changes: `raise()` when an enabled condition becomes
   * pending, `lower()` when none is left. With INTx that is the level line; with MSI the rising
   * edge sends one message, which is enough because a 16550 driver's handler reads IIR until
   * it reports no interrupt, and the next condition after that is a new edge.
   */
  private updateIrq(): void {
    const level = this.pendingInterrupt() !== IIR_NO_INT;
    if (level === this.irqAsserted) return;
    this.irqAsserted = level;
    if (level) this.ctx.interrupts.raise();
    else this.ctx.interrupts.lower();
  }

  // --- receiver ------------------------------------------------------------------------------

  /** One character arrives at the receiver: into the FIFO, or an overrun. */
  private receiveByte(byte: number): void {
    const s = this.s;
    this.counters.bytesReceived += 1;
    if (s.rx.length < this.rxCapacity()) {
      s.rx.push(byte);
    } else {
      // FIFO mode: the new character is lost. 16450 mode: it overwrites the unread one.
      if (!this.fifosEnabled()) s.rx.replaceNewest(byte);
      s.overrun = true;
      this.counters.overruns += 1;
    }
  }

  // --- host side -----------------------------------------------------------------------------

  /**
   * Delivers bytes from the host to the guest's receiver, all at once, then leaves the line
   * idle. Bytes beyond the free space are lost with an overrun (LSR.OE), as on a real line:
   * pace input with {@link receiveSpace}. In loopback mode the receiver is disconnected from
   * the line and the bytes are dropped.
   */
  receive(bytes: Uint8Array | readonly number[]): void {
    if ((this.s.mcr & MCR_LOOP) !== 0) return;
    for (const b of bytes) this.receiveByte(b & 0xff);
    this.updateIrq();
  }

  /** Free bytes in the receiver: how many {@link receive} can take without an overrun. */
  get receiveSpace(): number {
    return this.rxCapacity() - this.s.rx.length;
  }

  /** Drives the modem input lines; a change sets MSR's delta bits (a modem status interrupt). */
  setModemLines(lines: Partial<ModemLines>): void {
    const before = this.modemInputs();
    this.s.hostLines = applyLines(this.s.hostLines, lines);
    this.noteModemChange(before);
    this.updateIrq();
  }

  /** The modem input lines as the host drives them (not the loopback view). */
  get modemLines(): ModemLines {
    const l = this.s.hostLines;
    return { cts: (l & MSR_CTS) !== 0, dsr: (l & MSR_DSR) !== 0, ri: (l & MSR_RI) !== 0, dcd: (l & MSR_DCD) !== 0 };
  }

  /** The line as the guest set it up: baud rate from the divisor latch, framing from LCR. */
  lineSettings(): SerialLineSettings {
    const { lcr, dll, dlm } = this.s;
    const divisor = (dlm << 8) | dll;
    const dataBits = (5 + (lcr & LCR_WORD_LENGTH_MASK)) as 5 | 6 | 7 | 8;
    const stopBits = (lcr & LCR_STOP) === 0 ? 1 : dataBits === 5 ? 1.5 : 2;
    let parity: SerialLineSettings['parity'] = 'none';
    if ((lcr & LCR_PARITY) !== 0) {
      const even = (lcr & LCR_EVEN_PARITY) !== 0;
      if ((lcr & LCR_STICK_PARITY) !== 0) parity = even ? 'space' : 'mark';
      else parity = even ? 'even' : 'odd';
    }
    return {
      divisor,
      baud: divisor === 0 ? 0 : UART_BASE_BAUD / divisor,
      dataBits,
      stopBits,
      parity,
      breakActive: (lcr & LCR_BREAK) !== 0,
    };
  }

  /** Counters since creation (not reset by {@link reset}, not migrated). */
  stats(): SerialStats {
    return { ...this.counters };
  }

  // --- lifecycle and migration ---------------------------------------------------------------

  /** Power-on register values; the host's modem lines stay as they are (the cable is unchanged). */
  reset(): void {
    this.s = powerOnState(this.s.hostLines);
    this.updateIrq();
  }

  /**
   * Version 1 layout: IER, LCR, MCR, FCR, SCR, DLL, DLM (u8 each), overrun (bool), MSR deltas
   * (u8), host lines (u8), THR-empty pending (bool), receiver FIFO (length-prefixed bytes).
   */
  saveState(out: StateWriter): void {
    const s = this.s;
    out.u8(s.ier).u8(s.lcr).u8(s.mcr).u8(s.fcr).u8(s.scr).u8(s.dll).u8(s.dlm);
    out.bool(s.overrun).u8(s.msrDeltas).u8(s.hostLines).bool(s.thrPending);
    out.bytes(s.rx.toBytes());
  }

  /**
   * Loads a version-1 stream. Refuses (`Invalid`) reserved bits, a FIFO longer than the
   * receiver could hold, THR-empty pending while IER.THRI is off, or trailing bytes (the
   * reader holds this model's section only); the device is untouched unless the whole stream
   * is valid. After loading, an INTx line is re-driven to the loaded level; an MSI is not
   * re-sent, since it was delivered before the state was saved.
   */
  loadState(input: StateReader, version: number): void {
    checkStateVersion(OPERATION_LOAD, version, this.stateVersion);
    const op = OPERATION_LOAD;
    const ier = readBits8(input, op, 'ier', IER_MASK);
    const lcr = input.u8('lcr');
    const mcr = readBits8(input, op, 'mcr', MCR_MASK);
    const fcr = readBits8(input, op, 'fcr', FCR_STORED);
    requireState(fcr === 0 || (fcr & FCR_ENABLE_FIFO) !== 0, op, 'fcr: FIFO bits set while the FIFOs are off');
    const scr = input.u8('scr');
    const dll = input.u8('dll');
    const dlm = input.u8('dlm');
    const overrun = input.bool('overrun');
    const msrDeltas = readBits8(input, op, 'msrDeltas', MSR_DELTAS);
    const hostLines = readBits8(input, op, 'hostLines', MSR_LINES);
    const thrPending = input.bool('thrPending');
    requireState(!thrPending || (ier & IER_THRI) !== 0, op, 'thrPending: set while IER.THRI is off');
    const capacity = (fcr & FCR_ENABLE_FIFO) !== 0 ? FIFO_DEPTH : 1;
    const rx = input.bytes('rx', FIFO_DEPTH);
    requireState(rx.length <= capacity, op, `rx: ${rx.length} bytes exceed the receiver's ${capacity}`);
    input.end();

    this.s = { ier, lcr, mcr, fcr, scr, dll, dlm, overrun, msrDeltas, hostLines, thrPending, rx: ByteFifo.from(FIFO_DEPTH, rx) };
    this.irqAsserted = this.pendingInterrupt() !== IIR_NO_INT;
    if (!this.irqAsserted) this.ctx.interrupts.lower();
    else if (this.ctx.interrupts.mode === 'intx') this.ctx.interrupts.raise();
  }
}

function applyLines(current: number, lines: Partial<ModemLines>): number {
  let l = current;
  const set = (bit: number, on: boolean | undefined): void => {
    if (on === undefined) return;
    l = on ? l | bit : l & ~bit;
  };
  set(MSR_CTS, lines.cts);
  set(MSR_DSR, lines.dsr);
  set(MSR_RI, lines.ri);
  set(MSR_DCD, lines.dcd);
  return l;
}

// ---------------------------------------------------------------------------------------------
// The device type
// ---------------------------------------------------------------------------------------------

/** {@link DeviceDefinition} of the serial type, whose `create` returns the typed model. */
export interface SerialDeviceDefinition extends DeviceDefinition<SerialOptions> {
  create(context: DeviceContext, options?: SerialOptions): SerialDevice;
}

/** The `serial` device type: a PCI 16550A UART (QEMU pci-serial IDs, INTx pin A, 1 MSI vector). */
export const serialDevice: SerialDeviceDefinition = {
  type: 'serial',
  description: 'PCI 16550A UART (1b36:0002, one 8-byte I/O BAR, INTx pin A and 1 MSI vector)',
  maxInstances: 16,
  create(context: DeviceContext, options: SerialOptions = {}): SerialDevice {
    return new SerialDevice(context, options);
  },
};
