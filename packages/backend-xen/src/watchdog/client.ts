/**
 * The serving process's side of the watchdog. SIGINT, SIGTERM, uncaught exceptions and exit
 * tear sessions down in-process (`teardown.ts`), but nothing runs in a process that is
 * SIGKILLed or killed by the OOM killer, and its IOREQ servers would stay behind, enabled,
 * with the guest's vCPUs waiting on them forever. So a helper process watches: it holds the
 * read end of a pipe whose write end only this process has; the kernel closes the write end
 * when this process dies, however it dies, and the helper then rescues every server this
 * process had not released (`rescue.ts`: answer waiting vCPUs, destroy the server).
 *
 * One helper per process, started with the first watched server and kept for the life of the
 * process. It comes in two stages, so that watching costs almost nothing: while this process
 * lives, the helper is a POSIX shell ({@link WATCH_SCRIPT}, about 1 MiB) that keeps the set of
 * watched servers; only when the pipe closes with servers still in it does the shell hand them
 * to the Xen-speaking stage, a Node process (`helper.ts`; ~50 MiB and, under the lab's
 * emulation, seconds to start — too much to keep idle for every serving process). The helper is
 * unref'd (it never keeps this process alive), in its own process group (a Ctrl-C for this
 * process's group does not reach it), and exits when the pipe closes. Its stdout is discarded;
 * its stderr is this process's, so a rescue is reported where this process's own errors went.
 * From `src/` the second stage runs `helper.ts` under tsx, from `dist/` the built
 * `dist/watchdog/helper.js`.
 *
 * Order, to never destroy someone else's server: a server is watched right after Xen creates it
 * (before it is enabled) and released right before this process destroys it (after disabling it
 * and answering its vCPUs), so a death between the two leaves, at worst, a disabled server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IoError } from '@vmed/core';
import { encodeMessage, serverKey } from './protocol.js';

/** A watched server; `release()` before destroying it. Idempotent. */
export interface WatchRegistration {
  release(): void;
}

/** How to start the helper. */
export interface HelperCommand {
  readonly execPath: string;
  readonly args: readonly string[];
  readonly cwd: string;
}

/**
 * The helper's command line: from `src/` (this file is TypeScript: vitest, tsx) the TypeScript
 * entry under tsx, resolved from this package, with `@vmed/*` resolving to `src/` as in the
 * parent; from `dist/` the built entry beside the bundle, with no flags of the parent's (an
 * `--inspect` would clash).
 */
export function watchdogHelperCommand(parentPid: number = process.pid): HelperCommand {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    return {
      execPath: process.execPath,
      args: ['--conditions=source', '--import', 'tsx', fileURLToPath(new URL('./helper.ts', here)), String(parentPid)],
      cwd: fileURLToPath(new URL('../..', here)),
    };
  }
  const entry = new URL('./watchdog/helper.js', here);
  return { execPath: process.execPath, args: [fileURLToPath(entry), String(parentPid)], cwd: fileURLToPath(new URL('.', entry)) };
}

/**
 * The first stage: reads `watch`/`release` lines (digits only; anything else is skipped) and
 * keeps the watched set as ` domid/server ` words in one variable; at end of file, if the set
 * is not empty, runs its arguments (the second stage) with one `watch` line per server on
 * stdin. No `eval`, no unquoted expansion of anything but digits and slashes.
 */
export const WATCH_SCRIPT = [
  "watched=' '",
  'while read -r op domid server; do',
  "  case \"$domid\" in ''|*[!0-9]*) continue ;; esac",
  "  case \"$server\" in ''|*[!0-9]*) continue ;; esac",
  '  case "$op" in',
  '    watch) case "$watched" in *" $domid/$server "*) ;; *) watched="$watched$domid/$server " ;; esac ;;',
  '    release) case "$watched" in *" $domid/$server "*) watched="${watched%%" $domid/$server "*} ${watched#*" $domid/$server "}" ;; esac ;;',
  '  esac',
  'done',
  "[ \"$watched\" = ' ' ] && exit 0",
  'for key in $watched; do printf \'watch %s %s\\n\' "${key%/*}" "${key#*/}"; done | exec "$@"',
].join('\n');

/** The shell that runs {@link WATCH_SCRIPT} with `stage2` as its second stage. */
export function watchdogShell(stage2: HelperCommand): { file: string; args: string[] } {
  return { file: '/bin/sh', args: ['-c', WATCH_SCRIPT, 'vmed-watchdog', stage2.execPath, ...stage2.args] };
}

interface Watched {
  readonly domid: number;
  readonly server: number;
  readonly onFault: (error: Error) => void;
}

/** See the module doc; one per process through {@link processWatchdog}. */
export class ProcessWatchdog {
  readonly #command: () => HelperCommand;
  readonly #watched = new Map<string, Watched>();
  #child: ChildProcess | undefined;

  /** `command` is the second stage, for tests (a stand-in); the default is {@link watchdogHelperCommand}. */
  constructor(command: () => HelperCommand = watchdogHelperCommand) {
    this.#command = command;
  }

  /** The helper's pid (its first stage, the shell) while it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Servers watched now. */
  get watching(): number {
    return this.#watched.size;
  }

  /**
   * Watches IOREQ server `server` of `domid` (starting the helper if none runs). Never throws:
   * if the helper cannot run, `onFault` is told and the server is simply not watched.
   */
  watch(domid: number, server: number, onFault: (error: Error) => void): WatchRegistration {
    const key = serverKey(domid, server);
    const entry: Watched = { domid, server, onFault };
    this.#watched.set(key, entry);
    const running = this.#child;
    if (running !== undefined) this.#send(running, encodeMessage({ op: 'watch', domid, server }));
    // A new helper is told about every watched server, this one included.
    else this.#start();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        if (this.#watched.get(key) !== entry) return;
        this.#watched.delete(key);
        if (this.#child !== undefined) this.#send(this.#child, encodeMessage({ op: 'release', domid, server }));
      },
    };
  }

  /** Ends the helper cleanly (it sees end of file with nothing watched, or rescues what is). */
  stop(): void {
    const child = this.#child;
    this.#child = undefined;
    child?.stdin?.end();
  }

  #start(): void {
    let child: ChildProcess;
    try {
      const stage2 = this.#command();
      const { file, args } = watchdogShell(stage2);
      child = spawn(file, args, { cwd: stage2.cwd, stdio: ['pipe', 'ignore', 'inherit'], detached: true });
    } catch (error) {
      this.#tell(new IoError('xen.watchdog', 'cannot start the watchdog helper', { cause: error }));
      return;
    }
    this.#child = child;
    // Neither the process handle nor the pipe may keep this process alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    // EPIPE once the helper is gone: its exit is what reports that.
    child.stdin?.on('error', () => {});
    const gone = (why: string) => {
      if (this.#child !== child) return;
      this.#child = undefined;
      this.#tell(new IoError('xen.watchdog', `the watchdog helper ${why}; another starts with the next session, until then a SIGKILL of this process would leave its guests waiting`));
    };
    child.once('error', (error) => gone(`could not run (${error.message})`));
    child.once('exit', (code, signal) => gone(`(pid ${child.pid ?? '?'}) exited with ${signal ?? `status ${code ?? '?'}`}`));
    let lines = '';
    for (const w of this.#watched.values()) lines += encodeMessage({ op: 'watch', domid: w.domid, server: w.server });
    if (lines !== '') this.#send(child, lines);
  }

  #send(child: ChildProcess, text: string): void {
    // libuv writes to an idle pipe at once, so this also works from an 'exit' handler.
    child.stdin?.write(text);
  }

  #tell(error: Error): void {
    for (const w of [...this.#watched.values()]) {
      try {
        w.onFault(error);
      } catch {
        // A reporter must not break the watchdog.
      }
    }
  }
}

let shared: ProcessWatchdog | undefined;

/** This process's watchdog. */
export function processWatchdog(): ProcessWatchdog {
  shared ??= new ProcessWatchdog();
  return shared;
}
