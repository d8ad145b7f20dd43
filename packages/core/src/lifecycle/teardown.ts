/**
 * Closing a session when the process is told to stop, or is about to die.
 *
 * A VMM that holds a KVM VM, pinned guest RAM, eventfds bound to GSIs, or — worse — a Xen
 * ioreq server (a guest whose ioreq server is left behind freezes) must release them before
 * the process goes. {@link closeOnExit} installs handlers for SIGINT, SIGTERM, uncaught
 * exceptions and unhandled rejections that close the target once and then exit with the
 * conventional status: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), or 1
 * after printing the error.
 *
 * ```ts
 * const mediator = await createMediator(config);
 * mediator.closeOnExit();            // or closeOnExit(mediator, options)
 * ```
 *
 * Rules:
 * - **Once.** Several events (a signal while an error is being handled, two errors) close the
 *   target once; the status is the first event's.
 * - **A second signal forces the exit** (the operator pressing Ctrl-C again): the process
 *   exits at once with that signal's status, whatever the close is doing. An error raised
 *   while closing is printed but does not cut the close short: it is usually a consequence of
 *   the teardown (an in-flight guest command finding its session gone).
 * - **Bounded.** A close that has not settled after `timeoutMs` is abandoned: the process
 *   exits with the status it would have had, and says so. (The kernel releases what a dead
 *   process held on KVM; a Xen ioreq server may stay behind — hence the close comes first.)
 * - **Several targets** registered on the same process are all closed, newest first, and the
 *   process exits once, after the last one settles.
 * - SIGKILL cannot be caught: what it leaves is released by the kernel with the process (the
 *   KVM backend's fds, mappings and locks all are); nothing here runs.
 */
import { constants } from 'node:os';
import { InvalidError } from '../errors.js';

/** Something that releases what it holds: a mediator, a backend. */
export interface Closable {
  close(): Promise<void>;
}

/** The subset of `process` these handlers use (tests pass their own emitter). */
export type ExitEventSource = Pick<NodeJS.EventEmitter, 'on' | 'off'>;

export interface CloseOnExitOptions {
  /** Signals that close the target (default SIGINT and SIGTERM). */
  readonly signals?: readonly NodeJS.Signals[];
  /** Whether uncaught exceptions and unhandled rejections close the target (default true). */
  readonly errors?: boolean;
  /** How long a close may take before the process exits anyway (ms, default 10 000; 0: no limit). */
  readonly timeoutMs?: number;
  /** Ends the process with a status (default `process.exit`). Called once; it should not return. */
  readonly exit?: (code: number) => void;
  /** Where errors and notices are printed (default: standard error). */
  readonly log?: (message: string) => void;
  /** Where the events come from (default: `process`). */
  readonly source?: ExitEventSource;
}

/** Why the process is going: a signal or an error. */
type ExitCause =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'error'; readonly error: unknown; readonly origin: string };

interface Entry {
  readonly target: Closable;
  readonly events: ReadonlySet<string>;
  readonly exit: (code: number) => void;
  readonly log: (message: string) => void;
  readonly timeoutMs: number;
}

type Listener = (...args: unknown[]) => void;

/**
 * What one event source has registered: the targets, one listener per event (so that each
 * emission is handled once, however many targets asked for it), and the shutdown under way.
 */
interface Registry {
  readonly source: ExitEventSource;
  readonly entries: Entry[];
  readonly listeners: Map<string, { readonly listener: Listener; users: number }>;
  /** The status to exit with, once a shutdown has started. */
  code: number | undefined;
  pending: number;
  exited: boolean;
  readonly printed: WeakSet<object>;
}

const registries = new WeakMap<ExitEventSource, Registry>();

/** 128 + the signal's number, as a shell reports a process killed by it. */
export function signalExitCode(signal: NodeJS.Signals): number {
  const number = (constants.signals as Record<string, number | undefined>)[signal];
  if (number === undefined) throw new InvalidError('teardown.signalExitCode', `unknown signal ${String(signal)}`);
  return 128 + number;
}

/**
 * Installs handlers on `options.source` (default `process`) that close `target` once and exit
 * with the conventional status on SIGINT, SIGTERM (or `options.signals`), an uncaught
 * exception or an unhandled rejection. Returns a function that removes the handlers (it does
 * not stop a close already under way).
 * @throws `Invalid` for a target without `close()`, an unknown signal or a bad `timeoutMs`.
 */
export function closeOnExit(target: Closable, options: CloseOnExitOptions = {}): () => void {
  if (typeof target?.close !== 'function') throw new InvalidError('teardown.closeOnExit', 'target must have a close() method');
  const signals = options.signals ?? (['SIGINT', 'SIGTERM'] as const);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new InvalidError('teardown.closeOnExit', `timeoutMs ${timeoutMs} is not a non-negative number`);
  for (const s of signals) signalExitCode(s);
  const source: ExitEventSource = options.source ?? process;
  const events = new Set<string>(signals);
  if (options.errors !== false) {
    events.add('uncaughtException');
    events.add('unhandledRejection');
  }
  const entry: Entry = {
    target,
    events,
    exit: options.exit ?? ((code) => process.exit(code)),
    log: options.log ?? ((message) => void process.stderr.write(`${message}\n`)),
    timeoutMs,
  };
  let registry = registries.get(source);
  if (registry === undefined) {
    registry = { source, entries: [], listeners: new Map(), code: undefined, pending: 0, exited: false, printed: new WeakSet() };
    registries.set(source, registry);
  }
  const r = registry;
  r.entries.push(entry);
  for (const event of events) {
    const installed = r.listeners.get(event);
    if (installed !== undefined) {
      installed.users++;
      continue;
    }
    const listener: Listener =
      event === 'uncaughtException' || event === 'unhandledRejection'
        ? (error: unknown) => onEvent(r, event, { kind: 'error', error, origin: event === 'uncaughtException' ? 'uncaught exception' : 'unhandled rejection' })
        : () => onEvent(r, event, { kind: 'signal', signal: event as NodeJS.Signals });
    r.listeners.set(event, { listener, users: 1 });
    source.on(event, listener);
  }

  let removed = false;
  return () => {
    if (removed) return;
    removed = true;
    const at = r.entries.indexOf(entry);
    if (at >= 0) r.entries.splice(at, 1);
    for (const event of events) {
      const installed = r.listeners.get(event);
      if (installed === undefined || --installed.users > 0) continue;
      r.listeners.delete(event);
      r.source.off(event, installed.listener);
    }
  };
}

/**
 * One emission of `event`. The first starts the shutdown: every registered target closes
 * (newest first) and the process exits when the last settles. A signal during the shutdown
 * forces the exit; an error during it is printed.
 */
function onEvent(r: Registry, event: string, cause: ExitCause): void {
  // The newest target that asked for this event speaks for it (prints, exits).
  const lead = [...r.entries].reverse().find((e) => e.events.has(event)) ?? r.entries[r.entries.length - 1];
  if (lead === undefined) return;
  if (cause.kind === 'error') report(r, lead, cause);
  if (r.code !== undefined) {
    if (cause.kind === 'signal') exitNow(r, lead, signalExitCode(cause.signal), `${cause.signal} again: exiting without waiting for the close`);
    return;
  }
  r.code = cause.kind === 'signal' ? signalExitCode(cause.signal) : 1;
  const closing = [...r.entries].reverse();
  r.pending = closing.length;
  for (const e of closing) closeEntry(r, e, lead);
}

function closeEntry(r: Registry, entry: Entry, lead: Entry): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (entry.timeoutMs > 0) {
    timer = setTimeout(() => exitNow(r, lead, r.code ?? 1, `close did not finish within ${entry.timeoutMs} ms: exiting anyway`), entry.timeoutMs);
    // The timer alone must not keep alive a process whose close already let go of everything.
    timer.unref?.();
  }
  let closing: Promise<void>;
  try {
    closing = Promise.resolve(entry.target.close());
  } catch (error) {
    closing = Promise.reject(error);
  }
  void closing
    .catch((error: unknown) => entry.log(`close failed: ${describe(error)}`))
    .finally(() => {
      if (timer !== undefined) clearTimeout(timer);
      if (--r.pending === 0) exitNow(r, lead, r.code ?? 1);
    });
}

function exitNow(r: Registry, lead: Entry, code: number, notice?: string): void {
  if (r.exited) return;
  r.exited = true;
  if (notice !== undefined) lead.log(notice);
  lead.exit(code);
}

function report(r: Registry, lead: Entry, cause: Extract<ExitCause, { kind: 'error' }>): void {
  if (typeof cause.error === 'object' && cause.error !== null) {
    if (r.printed.has(cause.error)) return;
    r.printed.add(cause.error);
  }
  lead.log(`${cause.origin}${r.code === undefined ? ', closing' : ' while closing'}: ${describe(cause.error)}`);
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
