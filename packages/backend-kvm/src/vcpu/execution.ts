/**
 * How the I/O context drives one running vCPU, whichever thread runs `KVM_RUN`.
 */
import type { VcpuFinish } from './exits.js';

export type ExecutionState = 'starting' | 'running' | 'paused' | 'finished';

export interface VcpuExecution {
  readonly index: number;
  readonly state: ExecutionState;
  /** Settles once, when the vCPU stopped for good (never rejects). */
  readonly finished: Promise<VcpuFinish>;
  /** Stops entering the guest; resolves once the vCPU is parked (or finished). */
  pause(): Promise<void>;
  /** Lets a paused vCPU enter the guest again. */
  resume(): void;
  /** Makes the vCPU leave `KVM_RUN` once (its loop then re-reads its commands). */
  kick(): void;
  /** Ends the run; resolves with the finish record once the vCPU thread (if any) is gone. */
  stop(): Promise<VcpuFinish>;
  /**
   * Synchronously makes sure the vCPU is not in `KVM_RUN` and will not enter it until
   * {@link release}: used around memory-slot changes. Returns false if the vCPU had finished.
   */
  quiesce(): boolean;
  release(): void;
}
