/**
 * The watchdog helper's loop, without Xen: read `watch`/`release` lines until the pipe from the
 * serving process closes, then rescue every server still watched (`rescue.ts`). A clean
 * process releases each server before destroying it, so its exit leaves nothing to do.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { parseMessage, serverKey } from './protocol.js';
import type { RescueReport } from './rescue.js';

/** What the loop asks of Xen (`xen-rescuer.ts` in the helper; stand-ins in tests). */
export interface WatchdogXen {
  /** A server of `domid` is now watched: get ready to rescue it (open a handle restricted to it). */
  prepare(domid: number): void;
  /** No server of `domid` is watched any more. */
  forget(domid: number): void;
  /** Rescues one server (never throws; failures are in the report). */
  rescue(domid: number, server: number): RescueReport;
}

/** What the loop saw, for the exit status and for tests. */
export interface WatchdogOutcome {
  /** Servers rescued after the pipe closed, in the order they were watched. */
  readonly rescued: ReadonlyArray<{ readonly domid: number; readonly server: number; readonly report: RescueReport }>;
  /** Lines that were not messages (ignored). */
  readonly badLines: number;
}

/**
 * Serves `input` until it ends, then rescues what is still watched. `log` gets one line per
 * rescue and per problem. Resolves when done; never rejects.
 */
export async function runWatchLoop(input: Readable, xen: WatchdogXen, log: (line: string) => void): Promise<WatchdogOutcome> {
  const watched = new Map<string, { domid: number; server: number }>();
  const perDomain = new Map<number, number>();
  let badLines = 0;
  const lines = createInterface({ input, crlfDelay: Infinity, terminal: false });
  try {
    for await (const line of lines) {
      const message = parseMessage(line);
      if (message === undefined) {
        if (line.trim() !== '' && badLines++ === 0) log(`ignoring a line that is not a message: ${JSON.stringify(line.slice(0, 80))}`);
        continue;
      }
      const key = serverKey(message.domid, message.server);
      if (message.op === 'watch') {
        if (watched.has(key)) continue;
        watched.set(key, { domid: message.domid, server: message.server });
        perDomain.set(message.domid, (perDomain.get(message.domid) ?? 0) + 1);
        try {
          xen.prepare(message.domid);
        } catch (error) {
          // The rescue tries again; say now that it may not be able to.
          log(`cannot prepare for domain ${message.domid}: ${describe(error)}`);
        }
      } else if (watched.delete(key)) {
        const left = (perDomain.get(message.domid) ?? 1) - 1;
        if (left > 0) perDomain.set(message.domid, left);
        else {
          perDomain.delete(message.domid);
          xen.forget(message.domid);
        }
      }
    }
  } catch (error) {
    // A read error is the pipe going away too: the serving process is gone either way.
    log(`reading from the serving process failed: ${describe(error)}`);
  }
  const rescued: Array<{ domid: number; server: number; report: RescueReport }> = [];
  for (const { domid, server } of watched.values()) {
    const report = xen.rescue(domid, server);
    rescued.push({ domid, server, report });
    const failed = report.errors.length === 0 ? '' : `; ${report.errors.length} step(s) failed, the first: ${describe(report.errors[0])}`;
    log(
      `the serving process died holding IOREQ server ${server} of domain ${domid}: ` +
        `answered ${report.answered} waiting vCPU(s), ${report.destroyed ? 'destroyed the server' : 'could NOT destroy the server'}${failed}`,
    );
  }
  return { rescued, badLines };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
