/**
 * Waiting for event channels on the I/O thread's behalf.
 *
 * Every port of a session (each vCPU's, the buffered ring's, the guest-facing routes') fires on
 * the one descriptor of the session's evtchn handle, so one I/O context serves all vCPUs. Two
 * ways to wait on it:
 *
 * - `inline` (the default): the I/O thread itself polls the descriptor from a `setImmediate`
 *   loop, sleeping in `poll(2)` for at most `idlePollMs` (1 ms) per turn and not at all right
 *   after serving something, so a burst is served back to back. No thread hop; the cost is
 *   that the event loop is held up to 1 ms per turn and wakes ~1000 times a second when idle.
 * - `worker`: a worker thread blocks in `poll(2)` and hands fired ports to the I/O thread
 *   through a `SharedArrayBuffer` ring, waking it with `Atomics.notify`; the I/O thread sits in
 *   `Atomics.waitAsync`, so the event loop is never held. For applications whose loop must
 *   stay responsive to other work at sub-millisecond latency.
 *
 * Measured (`bench/ioreq-roundtrip.ts`, the lab: Xen 4.17 under QEMU TCG, a PVH guest doing
 * back-to-back 4-byte MMIO writes): inline 37.9 ms, worker 50.0 ms per ioreq round trip —
 * the hop costs 1.3× there. On this machine natively a worker → waitAsync → worker ping-pong
 * is ~17 µs, against Xen round trips of the same order, so the hop would roughly double them.
 * With the guest agent driven from the same thread (the conformance suite), worker waiting
 * was 9× slower per command (0.9 s vs 0.1 s) and session open/close slower (1.3 s vs 0.1 s to
 * close). Hence inline by default.
 */
import { Worker } from 'node:worker_threads';
import { IoError, isVmedError, type VmedError } from '@vmed/core';
import { EFD_CLOEXEC, POLLERR, POLLHUP, POLLIN, POLLNVAL, lastErrno, type LibcLib } from '../abi/xen.js';
import { loadLibc } from '../libs/load.js';
import { errorFromErrno, lastError } from '../libs/errno.js';
import { CONTROL, CONTROL_BYTES, RING_CAPACITY, WORKER_STATE, type EvtchnWorkerData } from './waiter-protocol.js';

/** Delivers fired event-channel ports to the I/O thread. */
export interface PortSource {
  /** Starts delivering; `onPorts` runs on the I/O thread with the ports fired since the last call. */
  start(onPorts: (ports: number[]) => void, onError: (error: VmedError) => void): void;
  /** Stops and waits until nothing runs any more. Idempotent. */
  stop(): Promise<void>;
  /** Stops without waiting (signal and exit handlers). Idempotent. */
  stopSync(): void;
  /** Descriptors the source owns (the worker's eventfd). */
  readonly fds: number;
  /** Worker threads running. */
  readonly workers: number;
}

/** Hands ports to the server; a throw there must not stop the waiting (the guest would hang). */
function deliver(onPorts: (ports: number[]) => void, ports: number[], onError: (error: VmedError) => void): void {
  try {
    onPorts(ports);
  } catch (error) {
    onError(isVmedError(error) ? error : new IoError('xen.waiter', 'serving fired ports failed', { cause: error }));
  }
}

/** How the I/O thread waits for event channels (see the module doc; `inline` by default). */
export type WaitMode = 'worker' | 'inline';

/** Makes the port source for `mode` over the evtchn descriptor `evtchnFd`. */
export function createPortSource(mode: WaitMode, evtchnFd: number, options: { idlePollMs?: number } = {}): PortSource {
  return mode === 'inline' ? new InlinePortSource(evtchnFd, options.idlePollMs ?? 1) : new WorkerPortSource(evtchnFd);
}

const EINTR = 4;
const EAGAIN = 11;

/** `Atomics.waitAsync` (in Node 20, absent from TypeScript's ES2023 lib). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(array: Int32Array, index: number, value: number): { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
  }
).waitAsync;

/**
 * How to start the worker. From `dist/` it is `dist/ioreq/evtchn-worker.js`, beside the bundle.
 * From `src/` (vitest, tsx) it is the TypeScript file next to this one; Node 20 does not apply
 * `--import tsx` hooks to a worker's entry module, so a two-line eval bootstrap registers tsx in
 * the worker and then imports the entry, with `--conditions=source` so `@vmed/*` resolve to
 * `src/` as in the parent. From `dist/` the worker inherits the process's own flags.
 */
export function evtchnWorkerEntry(): { entry: URL | string; eval: boolean; execArgv: string[] | undefined; url: URL } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const url = new URL('./evtchn-worker.ts', here);
    const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); });`;
    return { entry: boot, eval: true, execArgv: ['--conditions=source'], url };
  }
  const url = new URL('./ioreq/evtchn-worker.js', here);
  // Inherit the process's flags (undefined), as a worker of the application would.
  return { entry: url, eval: false, execArgv: undefined, url };
}

class WorkerPortSource implements PortSource {
  readonly #evtchnFd: number;
  readonly #libc: LibcLib;
  readonly #control = new SharedArrayBuffer(CONTROL_BYTES);
  readonly #cells = new Int32Array(this.#control);
  #wakeFd = -1;
  #worker: Worker | undefined;
  #exited: Promise<void> | undefined;
  #running = false;

  constructor(evtchnFd: number) {
    this.#evtchnFd = evtchnFd;
    this.#libc = loadLibc();
  }

  get fds(): number {
    return this.#wakeFd >= 0 ? 1 : 0;
  }

  get workers(): number {
    return this.#worker === undefined ? 0 : 1;
  }

  start(onPorts: (ports: number[]) => void, onError: (error: VmedError) => void): void {
    if (this.#running) return;
    // SAFETY: a new eventfd owned by this source; closed in #release once the worker is gone.
    const wakeFd = this.#libc.eventfd(0, EFD_CLOEXEC);
    if (wakeFd < 0) throw lastError('xen.waiter.start', 'cannot create the wake-up eventfd');
    this.#wakeFd = wakeFd;
    const entry = evtchnWorkerEntry();
    const data: EvtchnWorkerData = { evtchnFd: this.#evtchnFd, wakeFd, control: this.#control };
    const worker = new Worker(entry.entry, {
      eval: entry.eval,
      workerData: data,
      name: 'vmed-xen-evtchn',
      ...(entry.execArgv === undefined ? {} : { execArgv: entry.execArgv }),
    });
    this.#worker = worker;
    this.#running = true;
    this.#exited = new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.once('error', (error) => {
        if (!this.#running) return;
        this.#running = false;
        // Wake the pump so it stops too.
        Atomics.add(this.#cells, CONTROL.seq, 1);
        Atomics.notify(this.#cells, CONTROL.seq);
        onError(new IoError('xen.waiter', 'event-channel worker crashed', { cause: error }));
      });
    });
    void this.#pump(onPorts, onError);
  }

  async #pump(onPorts: (ports: number[]) => void, onError: (error: VmedError) => void): Promise<void> {
    const cells = this.#cells;
    while (this.#running) {
      const seq = Atomics.load(cells, CONTROL.seq);
      const head = Atomics.load(cells, CONTROL.head);
      const tail = Atomics.load(cells, CONTROL.tail);
      if (head !== tail) {
        const ports: number[] = [];
        for (let i = tail; i !== head; i++) ports.push(cells[CONTROL.ring + (i % RING_CAPACITY)] as number);
        Atomics.store(cells, CONTROL.tail, head);
        Atomics.notify(cells, CONTROL.tail);
        deliver(onPorts, ports, onError);
        continue;
      }
      const state = Atomics.load(cells, CONTROL.state);
      if (state === WORKER_STATE.failed) {
        if (this.#running) {
          this.#running = false;
          const errno = Atomics.load(cells, CONTROL.errno);
          onError(errorFromErrno('xen.waiter', 'the event-channel worker stopped', errno));
        }
        return;
      }
      if (state !== WORKER_STATE.running) return;
      const waited = waitAsync(cells, CONTROL.seq, seq);
      if (waited.async) await waited.value;
    }
  }

  async stop(): Promise<void> {
    this.stopSync();
    const exited = this.#exited;
    if (exited !== undefined) await exited;
    this.#release();
  }

  stopSync(): void {
    if (!this.#running && this.#worker === undefined) return;
    this.#running = false;
    Atomics.store(this.#cells, CONTROL.state, WORKER_STATE.stopping);
    Atomics.add(this.#cells, CONTROL.seq, 1);
    Atomics.notify(this.#cells, CONTROL.seq);
    if (this.#wakeFd >= 0) {
      // SAFETY: an eventfd takes one 8-byte counter increment; the buffer is read during the call.
      this.#libc.write(this.#wakeFd, new BigUint64Array([1n]), 8);
    }
    // A worker still starting up (loading modules) would only notice the wake-up once it
    // reaches poll: end it now instead. One already in poll leaves it at the wake-up, then ends.
    void this.#worker?.terminate();
  }

  #release(): void {
    this.#worker = undefined;
    this.#exited = undefined;
    if (this.#wakeFd >= 0) {
      this.#libc.close(this.#wakeFd);
      this.#wakeFd = -1;
    }
  }
}

class InlinePortSource implements PortSource {
  readonly #evtchnFd: number;
  readonly #idlePollMs: number;
  readonly #libc: LibcLib;
  readonly #pollfd = new Int32Array(2);
  readonly #pollfd16 = new Int16Array(this.#pollfd.buffer);
  readonly #ports = new Uint32Array(64);
  #immediate: NodeJS.Immediate | undefined;

  constructor(evtchnFd: number, idlePollMs: number) {
    this.#evtchnFd = evtchnFd;
    this.#idlePollMs = Math.max(0, Math.min(100, Math.floor(idlePollMs)));
    this.#libc = loadLibc();
  }

  readonly fds = 0;
  readonly workers = 0;

  start(onPorts: (ports: number[]) => void, onError: (error: VmedError) => void): void {
    if (this.#immediate !== undefined) return;
    this.#pollfd[0] = this.#evtchnFd;
    this.#pollfd16[2] = POLLIN;
    let busy = false;
    const tick = () => {
      this.#pollfd16[3] = 0;
      // SAFETY: one struct pollfd, revents written during the call. After a busy turn we only
      // peek (timeout 0) so a burst of requests is served back to back.
      const n = this.#libc.poll(this.#pollfd, 1, busy ? 0 : this.#idlePollMs);
      busy = false;
      if (n < 0 && lastErrno() !== EINTR) {
        this.#immediate = undefined;
        onError(lastError('xen.waiter', 'poll on the event-channel descriptor failed'));
        return;
      }
      const revents = this.#pollfd16[3] as number;
      if ((revents & (POLLERR | POLLHUP | POLLNVAL)) !== 0) {
        this.#immediate = undefined;
        onError(new IoError('xen.waiter', 'the event-channel descriptor reported an error'));
        return;
      }
      if (n > 0 && (revents & POLLIN) !== 0) {
        // SAFETY: whole 4-byte ports are copied into `#ports`; poll said it will not block.
        const got = this.#libc.read(this.#evtchnFd, this.#ports, this.#ports.byteLength);
        if (got < 0 && lastErrno() !== EAGAIN && lastErrno() !== EINTR) {
          this.#immediate = undefined;
          onError(lastError('xen.waiter', 'read on the event-channel descriptor failed'));
          return;
        }
        if (got > 0) {
          busy = true;
          deliver(onPorts, Array.from(this.#ports.subarray(0, got / 4)), onError);
        }
      }
      if (this.#immediate !== undefined) this.#immediate = setImmediate(tick);
    };
    this.#immediate = setImmediate(tick);
  }

  async stop(): Promise<void> {
    this.stopSync();
  }

  stopSync(): void {
    if (this.#immediate === undefined) return;
    clearImmediate(this.#immediate);
    this.#immediate = undefined;
  }
}
