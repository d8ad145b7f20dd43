/**
 * One lab run: install what is missing, build what is stale, boot Xen and dom0 under QEMU, run
 * a shell command in dom0 against the checkout, stream its output back and return its exit
 * status. QEMU is stopped on every path out.
 *
 * The command's stdout and stderr are files in a per-run folder that dom0 mounts writable over
 * 9p; the host follows them while they grow and takes the `status` file, written last, as the
 * end of the command. The serial console only reports boot progress (see console.ts).
 */
import { join } from 'node:path';
import { buildLab } from './build.js';
import { classifyConsoleLine } from './console.js';
import type { ConsoleEvent } from './console.js';
import { XenLabError } from './errors.js';
import { ensureLabPackages } from './host-packages.js';
import { labLayout } from './layout.js';
import { Machine } from './machine.js';
import { QEMU, qemuArgs } from './qemu.js';
import { createRunDir, readStatus } from './run-folder.js';
import type { RunCommand } from './run-folder.js';
import { FileTail } from './tail.js';

export { DOM0_RESULTS_DIR } from './run-folder.js';

/** Default limit for a whole run, boot included. */
export const DEFAULT_TIMEOUT_MS = 20 * 60_000;
/** How often the host looks for new output and the status file. */
const POLL_MS = 100;

/** A command (run by `/bin/sh` in dom0, cwd the checkout by default) and how to run it. */
export interface XenLabRunOptions extends RunCommand {
  /** Limit for the whole run, boot included. Default {@link DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** The command's stdout, byte for byte. Default: this process's stdout. */
  readonly stdout?: (chunk: Buffer) => void;
  /** The command's stderr. Default: this process's stderr. */
  readonly stderr?: (chunk: Buffer) => void;
  /** Phase lines (boot progress). Default: this process's stderr. */
  readonly progress?: (line: string) => void;
  /** Also pass every console line to `progress`. */
  readonly verbose?: boolean;
  /** Install missing Debian packages first (default true). */
  readonly installPackages?: boolean;
  /** Aborting stops the machine; the run rejects with XenLabError('aborted'). */
  readonly signal?: AbortSignal;
}

/** Milliseconds from the start of the run. */
export interface XenLabTimings {
  /** Packages checked and artifacts brought up to date. */
  readonly built: number;
  readonly qemuStarted: number;
  /** Dom0's toolstack is up (xenstored, xenconsoled): the lab is ready for commands. */
  readonly dom0Ready: number | undefined;
  readonly commandStarted: number | undefined;
  readonly commandEnded: number | undefined;
  readonly total: number;
}

export interface XenLabResult {
  /** The command's exit status in dom0. */
  readonly exitCode: number;
  readonly timings: XenLabTimings;
  /** The run folder on the host: command.sh, stdout, stderr, status, console.log. */
  readonly runDir: string;
}

interface Marks {
  dom0Ready?: number;
  commandStarted?: number;
  commandEnded?: number;
}

interface RunWatch {
  /** The command's exit status, or the first reason there will be none. */
  readonly status: Promise<number>;
  /** Ends the run with `error` (a fatal console line). */
  fail(error: XenLabError): void;
  /** Stops polling and timers. */
  dispose(): void;
}

/**
 * Follows a booted machine until the first of: the status file (the command ended), QEMU
 * exiting, the deadline, an abort, or a call to `fail`. Output files are pumped on every poll
 * and once more after the status file appears, since dom0 writes it after closing them.
 */
function watchRun(ctx: {
  machine: Machine;
  runDir: string;
  stdout: FileTail;
  stderr: FileTail;
  marks: Marks;
  since: () => number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
}): RunWatch {
  let settle: { resolve: (code: number) => void; reject: (e: XenLabError) => void } | undefined;
  const status = new Promise<number>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const withConsole = (e: XenLabError): XenLabError =>
    new XenLabError(e.stage, `${e.message}\n--- last console lines (all in ${join(ctx.runDir, 'console.log')}) ---\n${ctx.machine.consoleTail().join('\n')}`, { cause: e });
  const finish = (outcome: number | XenLabError): void => {
    if (settle === undefined) return;
    const { resolve, reject } = settle;
    settle = undefined;
    dispose();
    if (typeof outcome === 'number') resolve(outcome);
    else reject(outcome);
  };
  const pump = (): boolean => {
    ctx.stdout.pump();
    ctx.stderr.pump();
    const code = readStatus(ctx.runDir);
    if (code === undefined) return false;
    ctx.stdout.pump();
    ctx.stderr.pump();
    finish(code);
    return true;
  };
  const poll = setInterval(pump, POLL_MS);
  const timer = setTimeout(() => {
    const where = ctx.marks.commandStarted !== undefined ? 'while the command ran' : ctx.marks.dom0Ready !== undefined ? 'before the command started' : 'while booting';
    finish(withConsole(new XenLabError('timeout', `the lab run timed out after ${Math.round(ctx.timeoutMs / 1000)} s ${where}`)));
  }, Math.max(0, ctx.timeoutMs - ctx.since()));
  const onAbort = (): void => finish(new XenLabError('aborted', 'the lab run was aborted'));
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal?.aborted === true) onAbort();
  void ctx.machine.exited.then((code) => {
    if (settle !== undefined && !pump()) finish(withConsole(new XenLabError('boot', `QEMU exited (status ${code ?? 'signal'}) before the command finished`)));
  });
  function dispose(): void {
    clearInterval(poll);
    clearTimeout(timer);
    ctx.signal?.removeEventListener('abort', onAbort);
  }
  return { status, fail: (e) => finish(withConsole(e)), dispose };
}

const PHASES: Record<string, string> = {
  'dom0-kernel': 'dom0 up (its /init runs)',
  'host-root': 'dom0 mounted the host root and the results folder',
  xenstored: 'xenstored up',
  ready: 'dom0 ready (xen-init-dom0 done, xenconsoled up)',
  'command-start': 'command started',
};

/**
 * Runs `options.command` in a freshly booted lab.
 * @returns the command's exit status and how long each phase took.
 * @throws XenLabError: `setup`/`build` before boot, `boot` when the machine dies or never gets
 *   to the command, `timeout`, `aborted`. The message ends with the console's last lines.
 */
export async function runInXenLab(options: XenLabRunOptions): Promise<XenLabResult> {
  const t0 = Date.now();
  const since = (): number => Date.now() - t0;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const phase = (what: string): void => progress(`xen-lab [${(since() / 1000).toFixed(1).padStart(6)}s] ${what}`);

  if (options.installPackages !== false) ensureLabPackages(phase);
  const layout = labLayout();
  phase('building xen, dom0 and domU initramfs (when stale)');
  const artifacts = buildLab(layout);
  if (artifacts.rebuilt.length > 0) phase(`rebuilt ${artifacts.rebuilt.map((f) => f.slice(layout.cacheDir.length + 1)).join(', ')}`);
  const runDir = createRunDir(layout, options);
  const built = since();

  const marks: Marks = {};
  // Set once the run is watched, which is before QEMU's first console line can arrive.
  const fatal: { report?: (e: XenLabError) => void } = {};
  const onEvent = (event: ConsoleEvent): void => {
    switch (event.kind) {
      case 'xen-booting':
        return phase('Xen booting');
      case 'xen-up':
        return phase('Xen up, loading dom0');
      case 'fatal':
        return fatal.report?.(new XenLabError('boot', event.reason));
      case 'marker':
        if (event.name === 'ready') marks.dom0Ready = since();
        if (event.name === 'command-start') marks.commandStarted = since();
        // The end of the command is reported from the status file, which may beat the console.
        if (event.name === 'exit' || event.name === 'session-ended') return;
        return phase(PHASES[event.name] ?? event.name);
    }
  };

  phase('starting QEMU (TCG)');
  const machine = await Machine.start(QEMU, qemuArgs({ artifacts, repoRoot: layout.repoRoot, runDir }), join(runDir, 'console.log'), (line) => {
    if (options.verbose === true) progress(`  | ${line}`);
    const event = classifyConsoleLine(line);
    if (event !== undefined) onEvent(event);
  });
  const qemuStarted = since();
  phase(`QEMU started (pid ${machine.pid ?? '?'})`);

  const stdout = new FileTail(join(runDir, 'stdout'), options.stdout ?? ((c) => process.stdout.write(c)));
  const stderr = new FileTail(join(runDir, 'stderr'), options.stderr ?? ((c) => process.stderr.write(c)));
  const watch = watchRun({ machine, runDir, stdout, stderr, marks, since, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, signal: options.signal });
  fatal.report = watch.fail;
  try {
    const exitCode = await watch.status;
    marks.commandEnded = since();
    phase(`command exited with status ${exitCode}`);
    return {
      exitCode,
      runDir,
      timings: { built, qemuStarted, dom0Ready: marks.dom0Ready, commandStarted: marks.commandStarted, commandEnded: marks.commandEnded, total: since() },
    };
  } finally {
    watch.dispose();
    stdout.close();
    stderr.close();
    await machine.stop();
    phase('QEMU stopped');
  }
}
