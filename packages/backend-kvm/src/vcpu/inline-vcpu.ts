/**
 * Inline mode: one vCPU whose `KVM_RUN` runs on the I/O context's own thread, so an exit
 * reaches the device model with no thread hop (the lowest exit latency vmed can offer).
 *
 * It is cooperative. The I/O thread runs the vCPU in slices; a slice ends when the poller
 * thread kicks it (after a quantum, or at once when a doorbell or resample is pending, see
 * `poller/protocol.ts`), and between slices the loop yields to the Node event loop
 * (`setImmediate`) so timers, promises and doorbell handlers run. A guest that exits
 * constantly still yields: the kick sets `immediate_exit`, so the next `KVM_RUN` of the slice
 * returns at once.
 *
 * Each exit is served in place in `kvm_run` (`serveExit` in `exits.ts`): no copy, no object.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { libc } from '../abi/libc.js';
import type { KvmVcpu } from '../ioctls/vcpu.js';
import type { EventfdPoller } from '../poller/eventfd-poller.js';
import type { ExitServer } from './exit-server.js';
import type { ExecutionState, VcpuExecution } from './execution.js';
import { EXIT_CONTINUE, EXIT_DONE, EXIT_FINISH, finishOf, serveExit, type VcpuFinish } from './exits.js';

type Command = 'run' | 'pause' | 'stop';

export class InlineVcpu implements VcpuExecution {
  readonly index: number;
  readonly finished: Promise<VcpuFinish>;
  readonly #vcpu: KvmVcpu;
  readonly #server: ExitServer;
  readonly #poller: EventfdPoller;
  #command: Command = 'run';
  #state: ExecutionState = 'starting';
  #wakeParked: (() => void) | undefined;
  #parkedWaiters: Array<() => void> = [];
  #pending = false;

  readonly #quantumMs: number;
  #tid = 0;

  constructor(vcpu: KvmVcpu, server: ExitServer, poller: EventfdPoller, quantumMs: number) {
    this.index = vcpu.index;
    this.#vcpu = vcpu;
    this.#server = server;
    this.#poller = poller;
    this.#quantumMs = quantumMs;
    this.finished = this.#loop();
  }

  get state(): ExecutionState {
    return this.#state;
  }

  async pause(): Promise<void> {
    if (this.#state === 'finished' || this.#state === 'paused') return;
    if (this.#command === 'run') this.#command = 'pause';
    await new Promise<void>((resolve) => this.#parkedWaiters.push(resolve));
  }

  resume(): void {
    if (this.#command !== 'pause') return;
    this.#command = 'run';
    this.#wakeParked?.();
    // A pause that never got to park is over too.
    this.#releaseWaiters();
  }

  kick(): void {
    // JavaScript runs on this thread only between slices, so the vCPU is not in KVM_RUN now;
    // the flag makes the next KVM_RUN return at once, which ends the next slice.
    this.#vcpu.setImmediateExit(true);
  }

  async stop(): Promise<VcpuFinish> {
    if (this.#state !== 'finished') {
      this.#command = 'stop';
      this.#wakeParked?.();
    }
    return this.finished;
  }

  quiesce(): boolean {
    // Between slices by construction (this is the I/O thread).
    return this.#state !== 'finished';
  }

  release(): void {}

  async #loop(): Promise<VcpuFinish> {
    // Start on a later turn: the caller gets the object before the first slice blocks the thread.
    await yieldToEventLoop();
    // No buffer: this thread's id, which the poller signals to end a slice.
    this.#tid = libc().gettid();
    this.#poller.beginInline();
    this.#state = 'running';
    try {
      for (;;) {
        if (this.#command !== 'run') {
          const flushed = this.#flush();
          if (flushed !== undefined) return flushed;
          if (this.#command === 'stop') return { vcpu: this.index, reason: 'stopped' };
          await this.#park();
          continue;
        }
        const finish = this.#slice();
        if (finish !== undefined) return finish;
        await yieldToEventLoop();
      }
    } catch (error) {
      return { vcpu: this.index, reason: 'error', detail: error instanceof Error ? error.message : String(error) };
    } finally {
      this.#poller.endInline();
      this.#state = 'finished';
      this.#releaseWaiters();
    }
  }

  /** Runs KVM_RUN until kicked or the vCPU finishes. */
  #slice(): VcpuFinish | undefined {
    this.#poller.enterSlice(this.#tid, this.#vcpu.runHandle().runAddress, this.#quantumMs);
    try {
      for (;;) {
        // Back to the event loop for a waiting doorbell, or for a pause/stop a sink asked for.
        if (this.#poller.hasPending() || this.#command !== 'run') return undefined;
        const outcome = this.#vcpu.runChecked();
        this.#pending = false;
        if (outcome === 'interrupted') {
          this.#vcpu.setImmediateExit(false);
          return undefined;
        }
        const finish = this.#handleExit();
        if (finish !== undefined) return finish;
      }
    } finally {
      this.#poller.leaveSlice();
    }
  }

  /** Serves one exit; returns a finish record when the vCPU is done. */
  #handleExit(): VcpuFinish | undefined {
    const served = serveExit(this.#vcpu, this.#server);
    if (served === EXIT_CONTINUE) return undefined;
    if (served === EXIT_FINISH) return finishOf(this.#vcpu);
    this.#pending = true;
    if (served === EXIT_DONE) {
      const done: VcpuFinish = { vcpu: this.index, reason: 'done', value: this.#server.doneValues.get(this.index) ?? 0n };
      return this.#flush() ?? done;
    }
    return undefined;
  }

  /** Completes an answered access without entering the guest (KVM_RUN with immediate_exit). */
  #flush(): VcpuFinish | undefined {
    while (this.#pending) {
      this.#vcpu.setImmediateExit(true);
      const outcome = this.#vcpu.runChecked();
      this.#pending = false;
      if (outcome === 'interrupted') break;
      const finish = this.#handleExit();
      if (finish !== undefined) return finish;
    }
    this.#vcpu.setImmediateExit(false);
    return undefined;
  }

  async #park(): Promise<void> {
    this.#state = 'paused';
    this.#releaseWaiters();
    await new Promise<void>((resolve) => {
      this.#wakeParked = resolve;
    });
    this.#wakeParked = undefined;
    if (this.#command === 'run') this.#state = 'running';
  }

  #releaseWaiters(): void {
    const waiters = this.#parkedWaiters;
    this.#parkedWaiters = [];
    for (const w of waiters) w();
  }
}
