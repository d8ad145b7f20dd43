/**
 * Decoding `struct kvm_run` after `KVM_RUN` returned: an MMIO or port access becomes a
 * mailbox request; HLT, SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY and unknown exits end the vCPU's
 * run with a {@link VcpuFinish}. The same code runs on a vCPU thread (worker mode) and on the
 * I/O thread (inline mode).
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
import { KIND_MMIO, KIND_PIO, M_DATA_BYTES, type Mailbox } from './mailbox.js';

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

/** Decodes the exit in `runner.runBytes`; for EXIT_IO the request is in `mailbox`. */
export function decodeExit(runner: VcpuRunner, mailbox: Mailbox): number {
  const v = runner.runView;
  const reason = v.getUint32(R.exitReason, true);
  switch (reason) {
    case KVM_EXIT_MMIO: {
      const len = v.getUint32(R.mmioLen, true);
      if (len < 1 || len > 8) return EXIT_FINISH;
      const isWrite = v.getUint8(R.mmioIsWrite) !== 0;
      mailbox.setRequest(KIND_MMIO, v.getBigUint64(R.mmioPhysAddr, true), len, isWrite, 1);
      if (isWrite) mailbox.data.set(runner.runBytes.subarray(R.mmioData, R.mmioData + len));
      return EXIT_IO;
    }
    case KVM_EXIT_IO: {
      const size = v.getUint8(R.ioSize);
      const count = v.getUint32(R.ioCount, true);
      const offset = Number(v.getBigUint64(R.ioDataOffset, true));
      const bytes = size * count;
      if (![1, 2, 4].includes(size) || count < 1 || bytes > M_DATA_BYTES || offset + bytes > runner.runBytes.length) {
        return EXIT_FINISH;
      }
      const isWrite = v.getUint8(R.ioDirection) === KVM_EXIT_IO_OUT;
      mailbox.setRequest(KIND_PIO, BigInt(v.getUint16(R.ioPort, true)), size, isWrite, count);
      if (isWrite) mailbox.data.set(runner.runBytes.subarray(offset, offset + bytes));
      return EXIT_IO;
    }
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return EXIT_CONTINUE;
    default:
      return EXIT_FINISH;
  }
}

/** After the I/O context answered a read, copies the answer where KVM picks it up on the next KVM_RUN. */
export function completeExit(runner: VcpuRunner, mailbox: Mailbox): void {
  if (mailbox.isWrite) return;
  const v = runner.runView;
  if (mailbox.kind === KIND_MMIO) {
    runner.runBytes.set(mailbox.data.subarray(0, mailbox.size), R.mmioData);
  } else {
    const offset = Number(v.getBigUint64(R.ioDataOffset, true));
    runner.runBytes.set(mailbox.data.subarray(0, mailbox.size * mailbox.count), offset);
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
