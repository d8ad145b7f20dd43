/**
 * The part of a vCPU that runs it: `KVM_RUN` and the mmap'd `struct kvm_run`. The owner
 * ({@link KvmVcpu}) extends it; a vCPU thread gets a {@link BorrowedVcpu} made from the owner's
 * {@link VcpuRunHandle}, which can run but never close. This module imports only the ABI, so a
 * vCPU thread starts without loading the rest of vmed.
 */
import { EINTR, hostView, lastErrno, libc, type Libc } from '../abi/libc.js';
import { KVM_RUN, KVM_RUN_OFFSETS } from '../abi/kvm.js';

/** What a vCPU thread needs to run a vCPU it does not own. Plain data: it crosses threads. */
export interface VcpuRunHandle {
  readonly index: number;
  readonly fd: number;
  readonly runAddress: bigint;
  readonly runSize: number;
}

/** {@link VcpuRunner.run}: the guest exited to userspace; the exit is in kvm_run. */
export const RUN_EXIT = 0;
/** {@link VcpuRunner.run}: EINTR — a kick (signal or `immediate_exit`). */
export const RUN_INTERRUPTED = -1;

export class VcpuRunner {
  readonly index: number;
  /** The mmap'd `struct kvm_run` (zero-copy). Valid while the owner is open. */
  readonly runBytes: Uint8Array;
  readonly runView: DataView;
  protected fdValue: number;
  readonly #ioctlInt: Libc['ioctlInt'];

  protected constructor(index: number, fd: number, runAddress: bigint, runSize: number) {
    this.index = index;
    this.#ioctlInt = libc().ioctlInt;
    this.fdValue = fd;
    const buffer = hostView(runAddress, runSize);
    this.runBytes = new Uint8Array(buffer);
    this.runView = new DataView(buffer);
  }

  /**
   * `KVM_RUN`: enters the guest until an exit to userspace. Returns {@link RUN_EXIT},
   * {@link RUN_INTERRUPTED} on EINTR, or the (positive) errno of any other failure.
   */
  run(): number {
    // No argument; the kernel fills the mmap'd kvm_run (owned by the KvmVcpu, mapped until
    // its close, which happens only after every borrower stopped) before returning.
    if (this.#ioctlInt(this.fdValue, KVM_RUN, 0) === 0) return RUN_EXIT;
    const errno = lastErrno();
    return errno === EINTR ? RUN_INTERRUPTED : errno;
  }

  /** Sets `kvm_run.immediate_exit`: the next (or current, once kicked) KVM_RUN returns EINTR. */
  setImmediateExit(on: boolean): void {
    Atomics.store(this.runBytes, KVM_RUN_OFFSETS.immediateExit, on ? 1 : 0);
  }
}

/** A vCPU run from another thread than its owner's. Never closes anything. */
export class BorrowedVcpu extends VcpuRunner {
  private constructor(handle: VcpuRunHandle) {
    super(handle.index, handle.fd, handle.runAddress, handle.runSize);
  }

  static borrow(handle: VcpuRunHandle): BorrowedVcpu {
    return new BorrowedVcpu(handle);
  }
}
