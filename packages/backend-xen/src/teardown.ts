/**
 * Last-resort teardown. A Xen guest whose accesses go to an IOREQ server nobody serves waits
 * forever, so while a session is open the process must not die without destroying its server:
 * on SIGINT and SIGTERM, on an uncaught exception and on `process.exit`, every open session is
 * torn down synchronously (disable the server, answer waiting vCPUs, unbind, destroy). The
 * handlers are installed when the first session opens and removed when the last one closes.
 *
 * Signals: Node's default action (exit) is replaced by any listener, so after tearing down, if
 * ours was the only listener, it is removed and the signal re-raised, and the process dies as
 * it would have. An uncaught exception is watched with `uncaughtExceptionMonitor`, which does not
 * change whether the process dies.
 */

/** A session that can be torn down without awaiting. */
export interface SyncTeardown {
  teardownSync(reason: string): void;
}

const sessions = new Set<SyncTeardown>();
let installed = false;

function teardownAll(reason: string): void {
  for (const s of [...sessions]) {
    try {
      s.teardownSync(reason);
    } catch {
      // Nothing more can be done for this session; the others still get their chance.
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  teardownAll(signal);
  uninstall();
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function onCrash(): void {
  teardownAll('uncaught exception');
}

function onExit(): void {
  teardownAll('exit');
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('uncaughtExceptionMonitor', onCrash);
  process.on('exit', onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('uncaughtExceptionMonitor', onCrash);
  process.off('exit', onExit);
}

/** Registers an open session; returns the function that unregisters it. */
export function registerTeardown(session: SyncTeardown): () => void {
  sessions.add(session);
  install();
  return () => {
    sessions.delete(session);
    if (sessions.size === 0) uninstall();
  };
}

/** Whether the process handlers are installed (for tests). */
export function teardownHandlersInstalled(): boolean {
  return installed;
}
