/**
 * The standalone guest controller: loads an image, sets each vCPU's entry, runs the vCPUs
 * (inline on the I/O thread, or one worker thread each) until every one of them has finished
 * (done port, HLT without irqchip, shutdown, error, stop), and pauses, resumes, kicks or stops
 * them. Exits are served by the backend's exit server, so device accesses reach the attached
 * sink whichever mode runs.
 */
import { InvalidError, StateError, type GuestMemory } from '@vmed/core';
import { assertOpen, checkInt } from '../errors.js';
import type { KvmVcpu, Regs, Sregs } from '../ioctls/vcpu.js';
import type { EventfdPoller } from '../poller/eventfd-poller.js';
import type { VcpuExecution } from '../vcpu/execution.js';
import type { ExitServer } from '../vcpu/exit-server.js';
import type { VcpuFinish } from '../vcpu/exits.js';
import { InlineVcpu } from '../vcpu/inline-vcpu.js';
import { WorkerVcpu } from '../vcpu/worker-vcpu.js';
import { applyEntry, type GuestEntry } from './entry.js';

/** How vCPUs run. See the package README and `vcpu/inline-vcpu.ts`. */
export type ExecutionMode = 'inline' | 'worker';

export interface GuestRunOptions {
  /** `worker` (default): one worker thread per vCPU. `inline`: one vCPU on the I/O thread. */
  readonly execution?: ExecutionMode;
  /** A port whose writes end the writing vCPU's run (`reason: 'done'`, `value`: what it wrote). */
  readonly donePort?: number;
}

export interface GuestRunResult {
  /** One record per vCPU, in vCPU order. */
  readonly vcpus: readonly VcpuFinish[];
}

/** What the controller needs from its backend. */
export interface GuestHost {
  readonly memory: GuestMemory;
  readonly server: ExitServer;
  readonly signal: () => number;
  readonly poller: () => EventfdPoller;
  /** Inline mode: how long a slice may keep the I/O thread (ms). */
  readonly quantumMs: number;
  readonly onError: (error: unknown) => void;
  readonly isClosed: () => boolean;
}

export class GuestController {
  readonly #vcpus: readonly KvmVcpu[];
  readonly #host: GuestHost;
  #executions: VcpuExecution[] = [];
  #run: Promise<GuestRunResult> | undefined;

  /** @internal Made by the standalone backend. */
  constructor(vcpus: readonly KvmVcpu[], host: GuestHost) {
    this.#vcpus = vcpus;
    this.#host = host;
  }

  get vcpuCount(): number {
    return this.#vcpus.length;
  }

  /** True from {@link run} until every vCPU has finished. */
  get running(): boolean {
    return this.#run !== undefined;
  }

  /** vCPU threads alive (worker mode). */
  get workerCount(): number {
    return this.#executions.filter((e) => e instanceof WorkerVcpu && e.state !== 'finished').length;
  }

  /** Copies `image` into guest RAM at `address` (bounds-checked like any guest memory write). */
  load(address: bigint, image: Uint8Array): void {
    assertOpen(this.#host.isClosed(), 'kvm.guest.load');
    this.#host.memory.write(address, image);
  }

  /** Sets where `vcpu` (or every vCPU) starts. Not while running. */
  setEntry(vcpu: number | 'all', entry: GuestEntry): void {
    for (const v of this.#select('kvm.guest.setEntry', vcpu)) applyEntry(v, entry);
  }

  /**
   * Runs every vCPU until each has finished. Rejects with `State` if a run is in progress;
   * `inline` needs exactly one vCPU.
   */
  run(options: GuestRunOptions = {}): Promise<GuestRunResult> {
    const op = 'kvm.guest.run';
    assertOpen(this.#host.isClosed(), op);
    if (this.#run !== undefined) throw new StateError(op, 'the guest is already running');
    const execution = options.execution ?? 'worker';
    if (execution !== 'inline' && execution !== 'worker') throw new InvalidError(op, `execution ${String(execution)} is not inline or worker`);
    if (execution === 'inline' && this.#vcpus.length !== 1) {
      throw new InvalidError(op, `inline execution runs one vCPU on the I/O thread; this guest has ${this.#vcpus.length}`);
    }
    if (options.donePort !== undefined) checkInt(options.donePort, 0, 0xffff, op, 'done port');
    const server = this.#host.server;
    server.donePort = options.donePort;
    server.doneValues.clear();
    this.#executions =
      execution === 'inline'
        ? [new InlineVcpu(this.#vcpus[0] as KvmVcpu, server, this.#host.poller(), this.#host.quantumMs)]
        : this.#vcpus.map((v) => new WorkerVcpu(v, server, this.#host.signal(), this.#host.onError));
    const run = Promise.all(this.#executions.map((e) => e.finished)).then((vcpus) => {
      this.#run = undefined;
      server.donePort = undefined;
      return { vcpus };
    });
    this.#run = run;
    return run;
  }

  /** Parks every vCPU outside `KVM_RUN`; resolves when all are parked or finished. */
  async pause(): Promise<void> {
    await Promise.all(this.#executions.map((e) => e.pause()));
  }

  resume(): void {
    for (const e of this.#executions) e.resume();
  }

  /** Makes `vcpu` (or every vCPU) leave `KVM_RUN` once. */
  kick(vcpu?: number): void {
    for (const e of this.#executions) if (vcpu === undefined || e.index === vcpu) e.kick();
  }

  /** Ends the run; resolves with its result (undefined when nothing was running). */
  async stop(): Promise<GuestRunResult | undefined> {
    const run = this.#run;
    if (run === undefined) return undefined;
    await Promise.all(this.#executions.map((e) => e.stop()));
    return run;
  }

  /** Every running vCPU out of `KVM_RUN` until the returned function is called (slot changes). */
  quiesce(): () => void {
    const held = this.#executions.filter((e) => e.quiesce());
    return () => {
      for (const e of held) e.release();
    };
  }

  /** `KVM_GET_REGS` of a vCPU that is not running (paused or finished). */
  registers(vcpu: number): Regs {
    return this.#stopped('kvm.guest.registers', vcpu).getRegs();
  }

  /** `KVM_GET_SREGS` of a vCPU that is not running. */
  specialRegisters(vcpu: number): Sregs {
    return this.#stopped('kvm.guest.specialRegisters', vcpu).getSregs();
  }

  /** `KVM_GET_MP_STATE` (e.g. 3 = halted) of a vCPU that is not running. */
  mpState(vcpu: number): number {
    return this.#stopped('kvm.guest.mpState', vcpu).getMpState();
  }

  #select(op: string, vcpu: number | 'all'): KvmVcpu[] {
    assertOpen(this.#host.isClosed(), op);
    if (this.#run !== undefined) throw new StateError(op, 'the guest is running');
    if (vcpu === 'all') return [...this.#vcpus];
    checkInt(vcpu, 0, this.#vcpus.length - 1, op, 'vCPU index');
    return [this.#vcpus[vcpu] as KvmVcpu];
  }

  #stopped(op: string, vcpu: number): KvmVcpu {
    assertOpen(this.#host.isClosed(), op);
    checkInt(vcpu, 0, this.#vcpus.length - 1, op, 'vCPU index');
    const execution = this.#executions.find((e) => e.index === vcpu);
    if (this.#run !== undefined && execution !== undefined && execution.state !== 'paused' && execution.state !== 'finished') {
      throw new StateError(op, `vCPU ${vcpu} is running; pause or stop it first`);
    }
    return this.#vcpus[vcpu] as KvmVcpu;
  }
}
