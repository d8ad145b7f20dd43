/**
 * The per-run folder on the host, exported writable to dom0: `command.sh` (written here),
 * `stdout`, `stderr` and `status` (written by dom0-session.sh), `console.log` (the host's copy
 * of the serial console).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { XenLabError } from './errors.js';
import { assertPlainPath, hiddenInDom0 } from './layout.js';
import type { LabLayout } from './layout.js';

/** Where dom0 mounts the run folder (dom0-init.sh). */
export const DOM0_RESULTS_DIR = '/run/vmed-lab/results';
/** Run folders kept for post-mortems; older ones are deleted when a run starts. */
const RUNS_KEPT = 5;
/** Host variables a command in dom0 gets as they are (besides the lab's own). */
const PASSED_ENV = /^(CI|NO_COLOR|FORCE_COLOR|VMED_(?!XEN_LAB).*)$/;

/** What to run in dom0. */
export interface RunCommand {
  /** Run by `/bin/sh` in dom0 (chrooted into the host's root). */
  readonly command: string;
  /** Working directory in dom0; default: the checkout. */
  readonly cwd?: string;
  /** More environment for the command. */
  readonly env?: Readonly<Record<string, string>>;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The environment a command in dom0 gets from the host, on top of the session's PATH and HOME. */
function commandEnv(layout: LabLayout, extra: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (PASSED_ENV.test(k) && v !== undefined) env[k] = v;
  Object.assign(env, extra, {
    VMED_XEN_LAB: '1',
    VMED_XEN_LAB_ASSETS: layout.assetsDir,
    VMED_XEN_LAB_RESULTS: DOM0_RESULTS_DIR,
  });
  for (const k of Object.keys(env)) {
    if (!/^[A-Za-z_]\w*$/.test(k)) throw new XenLabError('setup', `bad environment variable name ${JSON.stringify(k)}`);
  }
  return env;
}

function commandScript(layout: LabLayout, options: RunCommand): string {
  const cwd = options.cwd ?? layout.repoRoot;
  if (hiddenInDom0(cwd) && cwd !== layout.repoRoot && !cwd.startsWith(`${layout.repoRoot}/`)) throw new XenLabError('setup', `${cwd} is not visible in dom0 (it has its own tmpfs there)`);
  const exports = Object.entries(commandEnv(layout, options.env ?? {})).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  return ['# Written by the host for one Xen lab run; run by dom0-session.sh.', ...exports, `cd ${shellQuote(cwd)} || exit 126`, options.command, ''].join('\n');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Deletes old run folders, never one whose host process still runs (another lab run). */
function pruneRuns(runsDir: string): void {
  const runs = readdirSync(runsDir).sort();
  for (const old of runs.slice(0, Math.max(0, runs.length - (RUNS_KEPT - 1)))) {
    const pid = Number(/-(\d+)-\d+$/.exec(old)?.[1]);
    if (Number.isInteger(pid) && alive(pid)) continue;
    rmSync(join(runsDir, old), { recursive: true, force: true });
  }
}

let runsStarted = 0;

/**
 * A fresh run folder holding the command script dom0 runs; old folders are pruned first.
 * @throws XenLabError('setup') for a cwd dom0 cannot see or a bad environment name.
 */
export function createRunDir(layout: LabLayout, run: RunCommand): string {
  pruneRuns(layout.runsDir);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  const runDir = join(layout.runsDir, `${stamp}-${process.pid}-${++runsStarted}`);
  assertPlainPath(runDir, 'the run folder');
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, 'command.sh'), commandScript(layout, run));
  return runDir;
}

/** Reads the status file dom0 writes last: an exit code, or undefined while the command runs. */
export function readStatus(runDir: string): number | undefined {
  const file = join(runDir, 'status');
  if (!existsSync(file)) return undefined;
  const code = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
  return Number.isInteger(code) && code >= 0 && code <= 255 ? code : 125;
}
