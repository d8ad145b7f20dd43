/**
 * The C side: `c/*.c` of this package compiled with `gcc -O2` into a temporary directory at
 * run time (so it is built for this machine, with this kernel's `linux/kvm.h`), then run once
 * per sample. Each run prints one JSON line (see `c/bench.h`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CResult, CRunner } from '../types.js';

/** How long one C sample may take before it is killed. */
const RUN_TIMEOUT_MS = 180_000;

/** The package's `c/` directory, found by walking up to `@vmed/bench`'s package.json (works from `src/` and `dist/`). */
export function cSourceDirectory(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown };
      if (pkg.name === '@vmed/bench') return join(dir, 'c');
    } catch {
      // not a package root: keep walking
    }
    dir = dirname(dir);
  }
  throw new Error(`no @vmed/bench package above ${fileURLToPath(import.meta.url)}`);
}

/** The compiled program; {@link dispose} removes its directory. */
export class CProgram implements CRunner, Disposable {
  readonly path: string;
  readonly #dir: string;

  private constructor(dir: string, path: string) {
    this.#dir = dir;
    this.path = path;
  }

  /** Compiles every `c/*.c` into one binary. Throws with gcc's output when it fails. */
  static compile(): CProgram {
    const source = cSourceDirectory();
    const files = readdirSync(source)
      .filter((f) => f.endsWith('.c'))
      .map((f) => join(source, f));
    const dir = mkdtempSync(join(tmpdir(), 'vmed-bench-'));
    const path = join(dir, 'vmed-bench-c');
    const result = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', path, ...files], { encoding: 'utf8' });
    if (result.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`gcc failed (${result.status ?? result.error?.message}):\n${result.stderr}`);
    }
    return new CProgram(dir, path);
  }

  run(args: readonly string[], options: { readonly inheritFd?: number } = {}): Promise<CResult> {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
    if (options.inheritFd !== undefined) stdio.push(options.inheritFd);
    const child = spawn(this.path, args, { stdio });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise<CResult>((resolve, reject) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const command = `vmed-bench-c ${args.join(' ')}`;
        if (code !== 0) {
          reject(new Error(`${command} ${signal === null ? `exited with ${code}` : `was killed by ${signal}`}: ${stderr.trim()}`));
          return;
        }
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

/** The last line of the program's output, checked to be a result. */
export function parseResult(stdout: string): CResult {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  const value: unknown = JSON.parse(line);
  if (typeof value !== 'object' || value === null) throw new Error(`not a result line: ${line}`);
  const r = value as Record<string, unknown>;
  for (const key of ['ops', 'timedOps', 'ns']) {
    if (typeof r[key] !== 'number' || !Number.isFinite(r[key])) throw new Error(`result line without a numeric ${key}: ${line}`);
  }
  return value as CResult;
}
