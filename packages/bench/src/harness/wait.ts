/**
 * Waiting on the I/O context for something a handler will do (a doorbell handled after the
 * guest finished), with a limit so a lost operation fails the benchmark instead of hanging it.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export async function until(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(1);
  }
}

/**
 * Runs `close` with a timer holding the event loop open. The KVM backend's poller thread is
 * unref'd and its close awaits the thread's exit: with nothing else pending, the event loop
 * would end first and the close would never finish (the process exits with status 13).
 */
export async function closeKeepingAlive(close: () => Promise<void>): Promise<void> {
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    await close();
  } finally {
    clearInterval(keepAlive);
  }
}
