/**
 * edu: QEMU's educational PCI device (docs/specs/edu.rst, hw/misc/edu.c), the device that
 * exercises MMIO, interrupts and DMA end to end.
 *
 * Read top to bottom: the PCI function, the state, the read switch, the write switch, the
 * interrupt, the factorial unit, the DMA engine, then save/load.
 *
 * Where vmed differs from QEMU or the spec is silent:
 * - **Work completes on the triggering write.** A factorial write computes the result before
 *   returning, and a DMA command write moves the bytes before returning, so status bit 0
 *   ("computing") and command bit 0 ("start") already read 0 when the guest first looks, and
 *   the interrupt, if asked for, is raised inside the write. A driver that polls those bits,
 *   as the spec tells it to, works unchanged. No work is ever pending between accesses, so
 *   the saved state holds none.
 * - **Only 4-byte accesses**, as the spec says for offsets below 0x80; the core splits the
 *   8-byte accesses the spec allows above 0x80 into two 4-byte halves, so each 64-bit DMA
 *   register is two independent 32-bit halves (0x80 low, 0x84 high). A 4-byte write to the
 *   low half leaves the high half alone (QEMU's zero-extends), so the result does not depend
 *   on the order in which the halves arrive. Other sizes read all-ones and write nothing, as
 *   do unknown and write-only offsets.
 * - **The factorial is modulo 2^32**, as QEMU's 32-bit loop computes it; 34! and above are 0.
 * - **DMA addresses are not masked** to 28 bits as QEMU's `dma_mask` does: the core checks
 *   every guest address against guest RAM instead, and a refusal is a DMA error.
 * - **DMA errors (vmed extension).** A transfer whose device-side range leaves the buffer
 *   [0x40000, 0x41000), whose count exceeds it, whose guest-side range wraps past 2^64, or
 *   which the core refuses (outside guest RAM, bus mastering off), moves no byte, sets command
 *   bit 31 and the reason in register 0xa0, and still raises interrupt 0x100 when the
 *   command asked for it, so the guest learns. The next command clears both. A count of 0
 *   with a device address inside the buffer is a successful empty transfer.
 * - **The command register keeps bits 1, 2 and 31 only**; other written bits read as 0.
 */
import { ADDRESS_SPACE_END, isVmedError } from '@vmed/core';
import type {
  DeviceContext,
  DeviceDefinition,
  DeviceModel,
  PciFunctionDefinition,
  RegionAccessSize,
  StateReader,
  StateWriter,
} from '@vmed/core';
import { allOnes, high32, isServableAccess, low32, withHigh32, withLow32 } from '../common/access.js';
import { checkStateVersion, readBits32, requireState } from '../common/strict-state.js';
import {
  DMA_BUFFER_ADDRESS,
  DMA_BUFFER_SIZE,
  DMA_CMD_ERROR,
  DMA_CMD_IRQ,
  DMA_CMD_START,
  DMA_CMD_TO_RAM,
  DMA_ERROR_DEVICE_RANGE,
  DMA_ERROR_GUEST_REFUSED,
  DMA_ERROR_GUEST_WRAP,
  DMA_ERROR_NONE,
  EDU_BAR_SIZE,
  EDU_DMA_CMD,
  EDU_DMA_COUNT,
  EDU_DMA_DST,
  EDU_DMA_ERROR,
  EDU_DMA_SRC,
  EDU_FACTORIAL,
  EDU_ID,
  EDU_ID_VALUE,
  EDU_IRQ_ACK,
  EDU_IRQ_RAISE,
  EDU_IRQ_STATUS,
  EDU_LIVENESS,
  EDU_STATUS,
  IRQ_DMA,
  IRQ_FACTORIAL,
  STATUS_IRQ_FACTORIAL,
} from './registers.js';

const OPERATION_LOAD = 'edu.loadState';
const DMA_CMD_STORED = (DMA_CMD_TO_RAM | DMA_CMD_IRQ | DMA_CMD_ERROR) >>> 0;
const BUFFER_START = BigInt(DMA_BUFFER_ADDRESS);
const BUFFER_END = BUFFER_START + BigInt(DMA_BUFFER_SIZE);

// ---------------------------------------------------------------------------------------------
// The PCI function
// ---------------------------------------------------------------------------------------------

/** QEMU's edu identity: 1234:11e8 rev 0x10, class 0x00ff00, 1 MiB MMIO BAR0, INTA, 1 MSI vector (64-bit, unmaskable). */
export const EDU_PCI_FUNCTION: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0x11e8,
  revision: 0x10,
  classCode: 0x00ff00,
  interruptPin: 1,
  bars: [{ kind: 'memory32', size: EDU_BAR_SIZE }],
  msi: { vectors: 1, address64: true, perVectorMask: false },
};

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

interface EduState {
  /** The stored liveness value; reads return it (it is stored inverted, as QEMU does). */
  liveness: number;
  /** The factorial register: the last result. */
  factorial: number;
  /** Status bit 7. Bit 0 (computing) is never set between accesses. */
  irqAfterFactorial: boolean;
  irqStatus: number;
  dmaSrc: bigint;
  dmaDst: bigint;
  dmaCount: bigint;
  /** Command bits 1, 2 and 31 of the last command; bit 0 is clear once it has run. */
  dmaCmd: number;
  /** Why the last command failed (`DMA_ERROR_*`); non-zero exactly when bit 31 is set. */
  dmaError: number;
  dmaBuffer: Uint8Array;
}

function powerOnState(): EduState {
  return {
    liveness: 0,
    factorial: 0,
    irqAfterFactorial: false,
    irqStatus: 0,
    dmaSrc: 0n,
    dmaDst: 0n,
    dmaCount: 0n,
    dmaCmd: 0,
    dmaError: DMA_ERROR_NONE,
    dmaBuffer: new Uint8Array(DMA_BUFFER_SIZE),
  };
}

/** Work counters for tests and host diagnostics; not device state (not migrated). */
export interface EduStats {
  factorialsComputed: number;
  /** DMA commands that completed without error (empty ones included). */
  dmaTransfers: number;
  /** Bytes moved from guest RAM into the buffer. */
  dmaBytesToDevice: number;
  /** Bytes moved from the buffer into guest RAM. */
  dmaBytesToRam: number;
  /** DMA commands refused with an error. */
  dmaErrors: number;
}

/** edu takes no options. */
export type EduOptions = Record<string, never>;

/** n! modulo 2^32, what QEMU's 32-bit loop produces: 34! and above have 2^32 as a factor. */
export function factorial32(n: number): number {
  if (n >= 34) return 0;
  let r = 1;
  for (let i = 2; i <= n; i++) r = Math.imul(r, i) >>> 0;
  return r;
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/** The edu device. Create it through {@link eduDevice}. */
export class EduDevice implements DeviceModel {
  readonly definition = EDU_PCI_FUNCTION;
  readonly stateVersion = 1;

  private s: EduState = powerOnState();
  private readonly counters: EduStats = {
    factorialsComputed: 0,
    dmaTransfers: 0,
    dmaBytesToDevice: 0,
    dmaBytesToRam: 0,
    dmaErrors: 0,
  };

  constructor(private readonly ctx: DeviceContext) {}

  // --- guest accesses ------------------------------------------------------------------------

  read(bar: number, offset: number, size: RegionAccessSize): number {
    if (bar !== 0 || size !== 4 || !isServableAccess(offset, size, EDU_BAR_SIZE)) return allOnes(size);
    const s = this.s;
    switch (offset) {
      case EDU_ID:
        return EDU_ID_VALUE;
      case EDU_LIVENESS:
        return s.liveness;
      case EDU_FACTORIAL:
        return s.factorial;
      case EDU_STATUS:
        return s.irqAfterFactorial ? STATUS_IRQ_FACTORIAL : 0;
      case EDU_IRQ_STATUS:
        return s.irqStatus;
      case EDU_DMA_SRC:
        return low32(s.dmaSrc);
      case EDU_DMA_SRC + 4:
        return high32(s.dmaSrc);
      case EDU_DMA_DST:
        return low32(s.dmaDst);
      case EDU_DMA_DST + 4:
        return high32(s.dmaDst);
      case EDU_DMA_COUNT:
        return low32(s.dmaCount);
      case EDU_DMA_COUNT + 4:
        return high32(s.dmaCount);
      case EDU_DMA_CMD:
        return s.dmaCmd;
      case EDU_DMA_CMD + 4:
        return 0;
      case EDU_DMA_ERROR:
        return s.dmaError;
      default:
        return allOnes(size);
    }
  }

  write(bar: number, offset: number, size: RegionAccessSize, value: number): void {
    if (bar !== 0 || size !== 4 || !isServableAccess(offset, size, EDU_BAR_SIZE)) return;
    const s = this.s;
    const v = value >>> 0;
    switch (offset) {
      case EDU_LIVENESS:
        s.liveness = ~v >>> 0;
        break;
      case EDU_FACTORIAL:
        this.computeFactorial(v);
        break;
      case EDU_STATUS:
        s.irqAfterFactorial = (v & STATUS_IRQ_FACTORIAL) !== 0;
        break;
      case EDU_IRQ_RAISE:
        this.raiseIrq(v);
        break;
      case EDU_IRQ_ACK:
        this.lowerIrq(v);
        break;
      case EDU_DMA_SRC:
        s.dmaSrc = withLow32(s.dmaSrc, v);
        break;
      case EDU_DMA_SRC + 4:
        s.dmaSrc = withHigh32(s.dmaSrc, v);
        break;
      case EDU_DMA_DST:
        s.dmaDst = withLow32(s.dmaDst, v);
        break;
      case EDU_DMA_DST + 4:
        s.dmaDst = withHigh32(s.dmaDst, v);
        break;
      case EDU_DMA_COUNT:
        s.dmaCount = withLow32(s.dmaCount, v);
        break;
      case EDU_DMA_COUNT + 4:
        s.dmaCount = withHigh32(s.dmaCount, v);
        break;
      case EDU_DMA_CMD:
        // As in QEMU, a command without the start bit is ignored.
        if ((v & DMA_CMD_START) !== 0) this.runDma(v);
        break;
    }
  }

  // --- the interrupt -------------------------------------------------------------------------

  /**
   * ORs `bits` into the interrupt status and signals while any bit is set: INTx stays
   * asserted until the status is acknowledged to zero; with MSI each raise is one message,
   * as in QEMU, so a guest that raises again before acknowledging gets a second message.
   */
  private raiseIrq(bits: number): void {
    this.s.irqStatus = (this.s.irqStatus | bits) >>> 0;
    if (this.s.irqStatus !== 0) this.ctx.interrupts.raise();
  }

  /** Clears `bits` from the interrupt status; INTx is deasserted once nothing is left. */
  private lowerIrq(bits: number): void {
    this.s.irqStatus = (this.s.irqStatus & ~bits) >>> 0;
    if (this.s.irqStatus === 0) this.ctx.interrupts.lower();
  }

  // --- the factorial unit --------------------------------------------------------------------

  private computeFactorial(n: number): void {
    this.s.factorial = factorial32(n);
    this.counters.factorialsComputed += 1;
    if (this.s.irqAfterFactorial) this.raiseIrq(IRQ_FACTORIAL);
  }

  // --- the DMA engine ------------------------------------------------------------------------

  private runDma(command: number): void {
    const s = this.s;
    const error = this.transfer((command & DMA_CMD_TO_RAM) !== 0);
    s.dmaError = error;
    s.dmaCmd = ((command & (DMA_CMD_TO_RAM | DMA_CMD_IRQ)) | (error === DMA_ERROR_NONE ? 0 : DMA_CMD_ERROR)) >>> 0;
    if (error === DMA_ERROR_NONE) this.counters.dmaTransfers += 1;
    else this.counters.dmaErrors += 1;
    if ((command & DMA_CMD_IRQ) !== 0) this.raiseIrq(IRQ_DMA);
  }

  /**
   * Moves `count` bytes between guest RAM and the buffer, all or nothing. Every guest value is
   * checked here before the core sees it; the core checks the guest range again against RAM
   * and bus mastering, and its refusal is the guest's error, not the device's.
   */
  private transfer(toRam: boolean): number {
    const s = this.s;
    const deviceAddress = toRam ? s.dmaSrc : s.dmaDst;
    const guestAddress = toRam ? s.dmaDst : s.dmaSrc;
    const count = s.dmaCount;
    if (deviceAddress < BUFFER_START || deviceAddress >= BUFFER_END || count > BUFFER_END - deviceAddress) {
      return DMA_ERROR_DEVICE_RANGE;
    }
    const length = Number(count);
    const offset = Number(deviceAddress - BUFFER_START);
    if (length === 0) return DMA_ERROR_NONE;
    if (guestAddress + count > ADDRESS_SPACE_END) return DMA_ERROR_GUEST_WRAP;
    try {
      if (toRam) {
        this.ctx.dma.write(guestAddress, s.dmaBuffer.subarray(offset, offset + length));
        this.counters.dmaBytesToRam += length;
      } else {
        const data = this.ctx.dma.read(guestAddress, length);
        if (data.length !== length) return DMA_ERROR_GUEST_REFUSED;
        s.dmaBuffer.set(data, offset);
        this.counters.dmaBytesToDevice += length;
      }
    } catch (e) {
      // The core's refusal (outside RAM, bus mastering off) is guest-caused; anything else
      // is a bug in vmed and must surface.
      if (isVmedError(e)) return DMA_ERROR_GUEST_REFUSED;
      throw e;
    }
    return DMA_ERROR_NONE;
  }

  // --- host side -----------------------------------------------------------------------------

  /** Counters since creation (not reset by {@link reset}, not migrated). */
  stats(): EduStats {
    return { ...this.counters };
  }

  /** A copy of the 4 KiB DMA buffer, for tests and diagnostics. */
  peekDmaBuffer(): Uint8Array {
    return this.s.dmaBuffer.slice();
  }

  // --- lifecycle and migration ---------------------------------------------------------------

  reset(): void {
    this.s = powerOnState();
    this.ctx.interrupts.lower();
  }

  /**
   * Version 1 layout: liveness, factorial (u32), raise-after-factorial (bool), interrupt
   * status (u32), DMA source, destination, count (u64), command (u32), error code (u8), DMA
   * buffer (length-prefixed, exactly 4096 bytes).
   */
  saveState(out: StateWriter): void {
    const s = this.s;
    out.u32(s.liveness).u32(s.factorial).bool(s.irqAfterFactorial).u32(s.irqStatus);
    out.u64(s.dmaSrc).u64(s.dmaDst).u64(s.dmaCount).u32(s.dmaCmd).u8(s.dmaError);
    out.bytes(s.dmaBuffer);
  }

  /**
   * Loads a version-1 stream. Refuses (`Invalid`) a command with the start bit or undefined
   * bits, an unknown error code or one that disagrees with command bit 31, a buffer that is
   * not exactly 4096 bytes, and trailing bytes (the reader holds this model's section only);
   * the device is untouched unless the whole stream is valid. After
   * loading, an INTx line is re-driven to the loaded level; an MSI is not re-sent.
   */
  loadState(input: StateReader, version: number): void {
    checkStateVersion(OPERATION_LOAD, version, this.stateVersion);
    const op = OPERATION_LOAD;
    const liveness = input.u32('liveness');
    const factorial = input.u32('factorial');
    const irqAfterFactorial = input.bool('irqAfterFactorial');
    const irqStatus = input.u32('irqStatus');
    const dmaSrc = input.u64('dmaSrc');
    const dmaDst = input.u64('dmaDst');
    const dmaCount = input.u64('dmaCount');
    const dmaCmd = readBits32(input, op, 'dmaCmd', DMA_CMD_STORED);
    const dmaError = input.u8('dmaError');
    requireState(dmaError <= DMA_ERROR_GUEST_REFUSED, op, `dmaError: unknown code ${dmaError}`);
    requireState(
      (dmaError !== DMA_ERROR_NONE) === ((dmaCmd & DMA_CMD_ERROR) !== 0),
      op,
      'dmaError: disagrees with command bit 31',
    );
    const dmaBuffer = input.bytes('dmaBuffer', DMA_BUFFER_SIZE);
    requireState(dmaBuffer.length === DMA_BUFFER_SIZE, op, `dmaBuffer: ${dmaBuffer.length} bytes, expected ${DMA_BUFFER_SIZE}`);
    input.end();

    this.s = { liveness, factorial, irqAfterFactorial, irqStatus, dmaSrc, dmaDst, dmaCount, dmaCmd, dmaError, dmaBuffer };
    if (irqStatus === 0) this.ctx.interrupts.lower();
    else if (this.ctx.interrupts.mode === 'intx') this.ctx.interrupts.raise();
  }
}

// ---------------------------------------------------------------------------------------------
// The device type
// ---------------------------------------------------------------------------------------------

/** {@link DeviceDefinition} of the edu type, whose `create` returns the typed model. */
export interface EduDeviceDefinition extends DeviceDefinition<EduOptions> {
  create(context: DeviceContext, options?: EduOptions): EduDevice;
}

/** The `edu` device type: QEMU's educational device (1234:11e8), INTx pin A and 1 MSI vector. */
export const eduDevice: EduDeviceDefinition = {
  type: 'edu',
  description: "QEMU's edu device (1234:11e8): ID, liveness, factorial, interrupts, DMA to a 4 KiB buffer",
  maxInstances: 8,
  create(context: DeviceContext): EduDevice {
    return new EduDevice(context);
  },
};
