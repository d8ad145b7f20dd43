/**
 * The running QEMU process: its console split into lines (kept in a log file and handed to a
 * listener), its exit, and a stop that always leaves no process behind.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { LineSplitter } from './console.js';
import { XenLabError } from './errors.js';

const SETPRIV = '/usr/bin/setpriv';
/** How long QEMU gets to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3000;
/** Console lines kept in memory for error messages. */
const TAIL_LINES = 40;

export class Machine {
  readonly #child: ChildProcess;
  readonly #log: WriteStream;
  readonly #tail: string[] = [];
  readonly #exited: Promise<number | null>;
  #running = true;
  // Last resort if the host process exits without stopping the machine (an uncaught error).
  readonly #killOnExit = (): void => {
    this.#child.kill('SIGKILL');
  };

  /**
   * Starts QEMU with `args`; every console line goes to `consoleLog` and to `onLine`.
   * @throws XenLabError('boot') when QEMU cannot be started.
   */
  static async start(qemu: string, args: readonly string[], consoleLog: string, onLine: (line: string) => void): Promise<Machine> {
    // setpriv (util-linux, on every Debian) makes the kernel kill QEMU if this process dies
    // without running its exit handlers (SIGKILL, a test runner killing its worker).
    const [command, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', qemu, ...args]] : [qemu, args];
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) => reject(new XenLabError('boot', `cannot start ${qemu}: ${e.message}`, { cause: e })));
    });
    return new Machine(child, consoleLog, onLine);
  }

  private constructor(child: ChildProcess, consoleLog: string, onLine: (line: string) => void) {
    this.#child = child;
    this.#log = createWriteStream(consoleLog);
    const splitter = new LineSplitter();
    const deliver = (lines: string[]): void => {
      for (const line of lines) {
        this.#log.write(`${line}\n`);
        this.#tail.push(line);
        if (this.#tail.length > TAIL_LINES) this.#tail.shift();
        onLine(line);
      }
    };
    child.stdout?.on('data', (chunk: Buffer) => deliver(splitter.push(chunk)));
    // QEMU's own complaints (a bad option, a missing file) belong in the same log.
    const errSplitter = new LineSplitter();
    child.stderr?.on('data', (chunk: Buffer) => deliver(errSplitter.push(chunk).map((l) => `qemu: ${l}`)));
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        deliver(splitter.flush());
        deliver(errSplitter.flush().map((l) => `qemu: ${l}`));
        this.#running = false;
        process.off('exit', this.#killOnExit);
        resolve(code);
      });
    });
    process.on('exit', this.#killOnExit);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Resolves with QEMU's exit code (null when killed by a signal) once it has exited. */
  get exited(): Promise<number | null> {
    return this.#exited;
  }

  /** The last console lines, for error messages. */
  consoleTail(n = TAIL_LINES): string[] {
    return this.#tail.slice(-n);
  }

  /** Stops QEMU (SIGTERM, then SIGKILL) and closes the console log. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.#running) {
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.#exited;
      clearTimeout(timer);
    }
    if (!this.#log.writableEnded) await new Promise<void>((resolve) => this.#log.end(resolve));
  }
}
