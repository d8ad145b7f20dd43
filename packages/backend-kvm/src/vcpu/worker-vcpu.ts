/**
 * Worker mode, I/O context side: one `worker_thread` per vCPU runs `KVM_RUN` (see
 * `vcpu-worker.ts`); this object serves its exits from the mailbox, on the I/O context, as
 * they arrive, and sends it commands and kicks.
 *
 * How an exit reaches the I/O context: on Node's main thread, the vCPU thread wakes it with
 * `uv_async_send` on a libuv async handle of the main loop (see `poller/uv-loop.ts`), and the
 * exit is served from libuv's callback. Elsewhere (an I/O context on a worker thread, whose
 * loop Node does not expose) it waits with `Atomics.waitAsync` on REQ_SEQ, which V8 delivers
 * as a task posted to the thread, then a promise and a microtask: measured here, the async
 * handle takes several µs off each forwarded exit (`kvm.mmio_exit_forwarded`).
 */
import type { Worker } from 'node:worker_threads';
import { libc } from '../abi/libc.js';
import type { KvmVcpu } from '../ioctls/vcpu.js';
import { UvAsync, uvLoopAvailable } from '../poller/uv-loop.js';
import { spawnWorker } from '../threads/spawn.js';
import { kickThread } from '../threads/kick-signal.js';
import type { ExitServer } from './exit-server.js';
import type { ExecutionState, VcpuExecution } from './execution.js';
import type { VcpuFinish } from './exits.js';
import {
  CTRL_PAUSE,
  CTRL_RUN,
  CTRL_STOP,
  M,
  Mailbox,
  STATE_FINISHED,
  STATE_PAUSED,
  STATE_STARTING,
} from './mailbox.js';
import type { VcpuWorkerData } from './vcpu-worker.js';

export class WorkerVcpu implements VcpuExecution {
  readonly index: number;
  readonly finished: Promise<VcpuFinish>;
  readonly #vcpu: KvmVcpu;
  readonly #server: ExitServer;
  readonly #signal: number;
  readonly #pid: number;
  readonly #mailbox = Mailbox.shared();
  readonly #worker: Worker;
  /** Main thread: the handle the vCPU thread wakes this context with (closed once it exited). */
  readonly #wake: UvAsync | undefined;
  #served = 0;
  #done = false;
  readonly #onError: (error: unknown) => void;
  #quiescedFrom: number | undefined;

  constructor(vcpu: KvmVcpu, server: ExitServer, signal: number, onError: (error: unknown) => void) {
    this.index = vcpu.index;
    this.#vcpu = vcpu;
    this.#server = server;
    this.#signal = signal;
    // No buffer: the process id, for tgkill.
    this.#pid = libc().getpid();
    this.#onError = onError;
    this.#wake = uvLoopAvailable() ? UvAsync.create(() => this.#serve(), onError, 'kvm.guest.run') : undefined;
    const data: VcpuWorkerData = {
      handle: vcpu.runHandle(),
      shared: this.#mailbox.buffer as SharedArrayBuffer,
      wakeHandle: this.#wake?.address ?? 0n,
    };
    try {
      this.#worker = spawnWorker('vcpu-worker', data);
    } catch (error) {
      this.#wake?.close();
      throw error;
    }
    let finish: VcpuFinish | undefined;
    this.#worker.on('message', (message: VcpuFinish) => {
      finish = message;
    });
    this.finished = new Promise<VcpuFinish>((resolve) => {
      this.#worker.once('error', (error) => {
        onError(error);
        finish ??= { vcpu: this.index, reason: 'error', detail: error instanceof Error ? error.message : String(error) };
      });
      this.#worker.once('exit', () => {
        this.#done = true;
        // The vCPU thread, the only sender, is gone: the handle can go too.
        this.#wake?.close();
        resolve(finish ?? { vcpu: this.index, reason: 'error', detail: 'vCPU thread exited without a finish record' });
      });
    });
    if (this.#wake === undefined) this.#arm();
  }

  get state(): ExecutionState {
    if (this.#done) return 'finished';
    switch (Atomics.load(this.#mailbox.words, M.STATE)) {
      case STATE_STARTING:
        return 'starting';
      case STATE_PAUSED:
        return 'paused';
      case STATE_FINISHED:
        return 'finished';
      default:
        return 'running';
    }
  }

  async pause(): Promise<void> {
    if (this.#done) return;
    this.#command(CTRL_PAUSE);
    await this.#waitState((s) => s === STATE_PAUSED || s === STATE_FINISHED);
  }

  resume(): void {
    if (this.#done) return;
    this.#command(CTRL_RUN);
  }

  kick(): void {
    if (this.#done) return;
    this.#vcpu.setImmediateExit(true);
    this.#signalIfInRun();
  }

  async stop(): Promise<VcpuFinish> {
    if (!this.#done) this.#command(CTRL_STOP);
    return this.finished;
  }

  quiesce(): boolean {
    const words = this.#mailbox.words;
    if (this.#done || Atomics.load(words, M.STATE) === STATE_FINISHED) return false;
    this.#quiescedFrom = Atomics.load(words, M.CTRL);
    if (this.#quiescedFrom === CTRL_STOP) return false;
    this.#command(CTRL_PAUSE);
    // Blocking wait on the I/O thread is safe here: the vCPU thread parks without needing the
    // I/O context, and a vCPU blocked on an unanswered request is already out of KVM_RUN and
    // stays out until this thread answers it.
    for (;;) {
      const state = Atomics.load(words, M.STATE);
      if (state === STATE_PAUSED || state === STATE_FINISHED) return true;
      if (Atomics.load(words, M.REQ_SEQ) !== this.#served) return true;
      Atomics.wait(words, M.STATE, state, 1);
    }
  }

  release(): void {
    if (this.#quiescedFrom === undefined) return;
    const from = this.#quiescedFrom;
    this.#quiescedFrom = undefined;
    if (!this.#done && Atomics.load(this.#mailbox.words, M.CTRL) === CTRL_PAUSE) this.#command(from);
  }

  #command(ctrl: number): void {
    const words = this.#mailbox.words;
    Atomics.store(words, M.CTRL, ctrl);
    Atomics.notify(words, M.CTRL);
    if (ctrl !== CTRL_RUN) {
      this.#vcpu.setImmediateExit(true);
      this.#signalIfInRun();
    }
  }

  #signalIfInRun(): void {
    const words = this.#mailbox.words;
    const tid = Atomics.load(words, M.TID);
    if (tid !== 0 && Atomics.load(words, M.IN_RUN) === 1) kickThread(this.#pid, tid, this.#signal);
  }

  async #waitState(done: (state: number) => boolean): Promise<void> {
    const words = this.#mailbox.words;
    for (;;) {
      const state = Atomics.load(words, M.STATE);
      if (done(state) || this.#done) return;
      const wait = Atomics.waitAsync(words, M.STATE, state);
      if (wait.async) await wait.value;
    }
  }

  #arm(): void {
    if (this.#done) return;
    const wait = Atomics.waitAsync(this.#mailbox.words, M.REQ_SEQ, this.#served);
    if (wait.async) {
      void wait.value.then(() => this.#serve());
    } else {
      queueMicrotask(() => this.#serve());
    }
  }

  /** On a wake-up: serves the request, if there is a new one, and (waitAsync) waits for the next. */
  #serve(): void {
    const words = this.#mailbox.words;
    const seq = Atomics.load(words, M.REQ_SEQ);
    if (seq !== this.#served) {
      try {
        this.#server.serve(this.#mailbox, this.index);
      } catch (error) {
        // Never leave the vCPU thread waiting: it gets whatever the mailbox holds.
        this.#onError(error);
      }
      this.#served = seq;
      Atomics.store(words, M.RESP_SEQ, seq);
      Atomics.notify(words, M.RESP_SEQ);
    }
    if (this.#wake === undefined && Atomics.load(words, M.STATE) !== STATE_FINISHED) this.#arm();
  }
}
