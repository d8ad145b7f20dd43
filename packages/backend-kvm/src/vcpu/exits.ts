/**
 * Decoding `struct kvm_run` after `KVM_RUN` returned: an MMIO or port access becomes a
 * mailbox request (worker mode, {@link decodeExit} on the vCPU thread) or is served in place
 * (inline mode, {@link serveExit} on the I/O thread); HLT, SHUTDOWN, INTERNAL_ERROR,
 * FAIL_ENTRY and unknown exits end the vCPU's run with a {@link VcpuFinish}.
 *
 * Every exit passes here, so fields are read as numbers through the run's DataView (the
 * 64-bit address as two halves): no bigint, no subarray, no object per exit.
 */
import {
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_RUN_OFFSETS as R,
  exitReasonName,
} from '../abi/kvm.js';
import type { VcpuRunner } from '../ioctls/vcpu-runner.js';
import type { ExitServer } from './exit-server.js';
import { ACTION_FINISH, KIND_MMIO, KIND_PIO, M_DATA_BYTES, type Mailbox } from './mailbox.js';

/** Why a vCPU stopped running. */
export type VcpuFinishReason =
  /** The guest wrote the run's done port. */
  | 'done'
  /** `KVM_EXIT_HLT` (only without an in-kernel irqchip; with one, HLT waits in the kernel). */
  | 'halt'
  /** `KVM_EXIT_SHUTDOWN`: triple fault. */
  | 'shutdown'
  /** Stopped by the host (`stop()`, `close()`). */
  | 'stopped'
  /** `KVM_EXIT_INTERNAL_ERROR` (e.g. suberror 1: the emulator met an instruction it cannot run). */
  | 'internal-error'
  /** `KVM_EXIT_FAIL_ENTRY`: the hardware refused the guest state. */
  | 'fail-entry'
  /** `KVM_EXIT_SYSTEM_EVENT` (reset, shutdown, crash requested by the guest). */
  | 'system-event'
  /** An exit this backend does not serve. */
  | 'unhandled-exit'
  /** `KVM_RUN` itself failed, or an exit was malformed. */
  | 'error';

/** The end of one vCPU's run. */
export interface VcpuFinish {
  readonly vcpu: number;
  readonly reason: VcpuFinishReason;
  /** Value written to the done port (`done`). */
  readonly value?: bigint;
  /** `kvm_run.exit_reason` of the last exit. */
  readonly exitReason?: number;
  /** `internal.suberror` (`internal-error`) or the hardware reason (`fail-entry`). */
  readonly suberror?: number;
  readonly detail?: string;
}

/** Outcome of decoding one exit. */
export const EXIT_CONTINUE = 0;
export const EXIT_IO = 1;
export const EXIT_FINISH = 2;
/** {@link serveExit}: the access was served and it was a write to the done port. */
export const EXIT_DONE = 3;

/**
 * Checks the port exit in `v`; returns the byte offset of its data in kvm_run, or -1 when the
 * kernel's fields are out of range (`size * count` bytes must fit the page and the mailbox).
 */
function pioDataOffset(v: DataView, size: number, count: number): number {
  const bytes = size * count;
  // data_offset is a u64 the kernel sets to a page offset: a non-zero high half is malformed.
  if (v.getUint32(R.ioDataOffset + 4, true) !== 0) return -1;
  const offset = v.getUint32(R.ioDataOffset, true);
  if ((size !== 1 && size !== 2 && size !== 4) || count < 1 || bytes > M_DATA_BYTES || offset + bytes > v.byteLength) return -1;
  return offset;
}

/**
 * Worker mode, on the vCPU thread: decodes the exit in `runner`'s kvm_run; for EXIT_IO the
 * request (and a write's data) is in `mailbox`.
 */
export function decodeExit(runner: VcpuRunner, mailbox: Mailbox): number {
  const v = runner.runView;
  const reason = v.getUint32(R.exitReason, true);
  switch (reason) {
    case KVM_EXIT_MMIO: {
      const len = v.getUint32(R.mmioLen, true);
      if (len < 1 || len > 8) return EXIT_FINISH;
      const isWrite = v.getUint8(R.mmioIsWrite) !== 0;
      mailbox.setRequest(KIND_MMIO, v.getUint32(R.mmioPhysAddr, true), v.getUint32(R.mmioPhysAddr + 4, true), len, isWrite, 1);
      if (isWrite) {
        // mmio.data is 8 bytes whatever the length: copy all of it, two words.
        const d = mailbox.dataView;
        d.setUint32(0, v.getUint32(R.mmioData, true), true);
        d.setUint32(4, v.getUint32(R.mmioData + 4, true), true);
      }
      return EXIT_IO;
    }
    case KVM_EXIT_IO: {
      const size = v.getUint8(R.ioSize);
      const count = v.getUint32(R.ioCount, true);
      const offset = pioDataOffset(v, size, count);
      if (offset < 0) return EXIT_FINISH;
      const isWrite = v.getUint8(R.ioDirection) === KVM_EXIT_IO_OUT;
      mailbox.setRequest(KIND_PIO, v.getUint16(R.ioPort, true), 0, size, isWrite, count);
      if (isWrite) copyBytes(v, offset, mailbox.dataView, 0, size * count);
      return EXIT_IO;
    }
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return EXIT_CONTINUE;
    default:
      return EXIT_FINISH;
  }
}

/** Worker mode: after the I/O context answered a read, copies the answer where KVM picks it up on the next KVM_RUN. */
export function completeExit(runner: VcpuRunner, mailbox: Mailbox): void {
  if (mailbox.isWrite) return;
  const v = runner.runView;
  if (mailbox.kind === KIND_MMIO) {
    copyBytes(mailbox.dataView, 0, v, R.mmioData, mailbox.size);
  } else {
    copyBytes(mailbox.dataView, 0, v, v.getUint32(R.ioDataOffset, true), mailbox.size * mailbox.count);
  }
}

/**
 * Inline mode, on the I/O thread: decodes the exit in `runner`'s kvm_run and serves an MMIO
 * or port access in place (a read's answer goes straight into kvm_run, where the next
 * KVM_RUN completes it). Returns EXIT_CONTINUE, EXIT_IO (served), EXIT_DONE (served, and it
 * wrote the done port: the value is in `server.doneValues`) or EXIT_FINISH.
 */
export function serveExit(runner: VcpuRunner, server: ExitServer): number {
  const v = runner.runView;
  const reason = v.getUint32(R.exitReason, true);
  switch (reason) {
    case KVM_EXIT_MMIO: {
      const len = v.getUint32(R.mmioLen, true);
      if (len < 1 || len > 8) return EXIT_FINISH;
      server.serveMmio(v.getUint32(R.mmioPhysAddr, true), v.getUint32(R.mmioPhysAddr + 4, true), len, v.getUint8(R.mmioIsWrite) !== 0, v, R.mmioData);
      return EXIT_IO;
    }
    case KVM_EXIT_IO: {
      const size = v.getUint8(R.ioSize);
      const count = v.getUint32(R.ioCount, true);
      const offset = pioDataOffset(v, size, count);
      if (offset < 0) return EXIT_FINISH;
      const isWrite = v.getUint8(R.ioDirection) === KVM_EXIT_IO_OUT;
      const action = server.servePio(v.getUint16(R.ioPort, true), size, count, isWrite, v, offset, runner.index);
      return action === ACTION_FINISH ? EXIT_DONE : EXIT_IO;
    }
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return EXIT_CONTINUE;
    default:
      return EXIT_FINISH;
  }
}

/** Copies `length` bytes between two DataViews; a word at a time for an access's few bytes. */
function copyBytes(from: DataView, fromAt: number, to: DataView, toAt: number, length: number): void {
  switch (length) {
    case 1:
      to.setUint8(toAt, from.getUint8(fromAt));
      return;
    case 2:
      to.setUint16(toAt, from.getUint16(fromAt, true), true);
      return;
    case 4:
      to.setUint32(toAt, from.getUint32(fromAt, true), true);
      return;
    case 8:
      to.setUint32(toAt, from.getUint32(fromAt, true), true);
      to.setUint32(toAt + 4, from.getUint32(fromAt + 4, true), true);
      return;
    default:
      for (let i = 0; i < length; i++) to.setUint8(toAt + i, from.getUint8(fromAt + i));
  }
}

/** The finish record of an exit {@link decodeExit} returned EXIT_FINISH for. */
export function finishOf(runner: VcpuRunner): VcpuFinish {
  const v = runner.runView;
  const exitReason = v.getUint32(R.exitReason, true);
  const vcpu = runner.index;
  switch (exitReason) {
    case KVM_EXIT_HLT:
      return { vcpu, reason: 'halt', exitReason };
    case KVM_EXIT_SHUTDOWN:
      return { vcpu, reason: 'shutdown', exitReason, detail: 'triple fault' };
    case KVM_EXIT_INTERNAL_ERROR: {
      const suberror = v.getUint32(R.internalSuberror, true);
      const ndata = Math.min(v.getUint32(R.internalNdata, true), 16);
      const data: string[] = [];
      for (let i = 0; i < ndata; i++) data.push(`0x${v.getBigUint64(R.internalData + i * 8, true).toString(16)}`);
      return { vcpu, reason: 'internal-error', exitReason, suberror, detail: `suberror ${suberror} data [${data.join(', ')}]` };
    }
    case KVM_EXIT_FAIL_ENTRY: {
      const hw = v.getBigUint64(R.failEntryReason, true);
      return { vcpu, reason: 'fail-entry', exitReason, suberror: Number(hw & 0xffff_ffffn), detail: `hardware entry failure 0x${hw.toString(16)} on cpu ${v.getUint32(R.failEntryCpu, true)}` };
    }
    case KVM_EXIT_SYSTEM_EVENT:
      return { vcpu, reason: 'system-event', exitReason };
    case KVM_EXIT_MMIO:
      return { vcpu, reason: 'error', exitReason, detail: `MMIO exit with length ${v.getUint32(R.mmioLen, true)}` };
    case KVM_EXIT_IO:
      return { vcpu, reason: 'error', exitReason, detail: `port exit with size ${v.getUint8(R.ioSize)} count ${v.getUint32(R.ioCount, true)}` };
    default:
      return { vcpu, reason: 'unhandled-exit', exitReason, detail: exitReasonName(exitReason) };
  }
}
