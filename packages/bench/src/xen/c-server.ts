/**
 * The C side of the Xen benchmarks: `c/xen/*.c` compiled in dom0 at run time against the same
 * Xen libraries the backend calls, run once per sample. The program sets up its IOREQ server,
 * prints `ready`, and is then given the guest (unpaused); it prints one JSON result line when
 * the guest is done (see `c/xen/xen-bench.c`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cSourceDirectory, parseResult } from '../harness/c-program.js';
import type { CResult } from '../types.js';

/** The Xen libraries the C side links, the same ones the backend opens. */
const LIBRARIES = ['-lxendevicemodel', '-lxenforeignmemory', '-lxenevtchn'];

export class XenCServer implements Disposable {
  readonly path: string;
  readonly #dir: string;

  private constructor(dir: string, path: string) {
    this.#dir = dir;
    this.path = path;
  }

  /** Compiles `c/xen/*.c`; throws with gcc's output when it fails. */
  static compile(): XenCServer {
    const source = join(cSourceDirectory(), 'xen');
    const files = readdirSync(source)
      .filter((f) => f.endsWith('.c'))
      .map((f) => join(source, f));
    const dir = mkdtempSync(join(tmpdir(), 'vmed-xen-bench-'));
    const path = join(dir, 'xen-bench');
    const result = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', path, ...files, ...LIBRARIES], { encoding: 'utf8' });
    if (result.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`gcc failed (${result.status ?? result.error?.message}):\n${result.stderr}`);
    }
    return new XenCServer(dir, path);
  }

  /**
   * Runs `xen-bench <args…>`, calls `onReady` once it printed `ready` (the server is up: let
   * the guest run), and resolves with its result line.
   * @throws when it exits non-zero, prints no result, `onReady` fails or `timeoutMs` passes.
   */
  serve(args: readonly string[], onReady: () => Promise<void>, timeoutMs: number): Promise<CResult> {
    const child = spawn(this.path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let readySeen = false;
    let failure: Error | undefined;
    const command = `xen-bench ${args.join(' ')}`;
    return new Promise<CResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        failure ??= new Error(`${command}: no result after ${timeoutMs} ms`);
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        if (!readySeen && /^ready$/m.test(stdout)) {
          readySeen = true;
          onReady().catch((e: unknown) => {
            failure ??= e instanceof Error ? e : new Error(String(e));
            child.kill('SIGKILL');
          });
        }
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (failure !== undefined) return reject(failure);
        if (code !== 0) return reject(new Error(`${command} ${signal === null ? `exited with ${code}` : `was killed by ${signal}`}: ${stderr.trim() || stdout.trim()}`));
        try {
          resolve(parseResult(stdout));
        } catch (e) {
          reject(new Error(`${command}: ${(e as Error).message}`));
        }
      });
    });
  }

  dispose(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
