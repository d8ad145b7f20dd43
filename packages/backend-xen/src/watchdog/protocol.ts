/**
 * What a serving process tells its watchdog helper, one line each on the helper's stdin:
 *
 * - `watch <domid> <server>`: an IOREQ server now exists for the domain; if this pipe closes
 *   before the matching `release`, the process died holding it.
 * - `release <domid> <server>`: the process is destroying that server itself; forget it.
 *
 * The pipe closing (end of file) is the death notice: the kernel closes the write end when
 * the process dies, however it dies. Text, not JSON: two small integers a line, checked here.
 */
import { DOMID_FIRST_RESERVED } from '../abi/xen.js';

/** One message; see the module doc. */
export interface WatchdogMessage {
  readonly op: 'watch' | 'release';
  readonly domid: number;
  readonly server: number;
}

/** Longest line the helper accepts; a longer one is garbage, not a message. */
export const MAX_LINE = 64;

/** Xen numbers IOREQ servers with a `uint16_t` (`ioservid_t`). */
const MAX_SERVER_ID = 0xffff;

/** The line for `message`, newline included. */
export function encodeMessage(message: WatchdogMessage): string {
  return `${message.op} ${message.domid} ${message.server}\n`;
}

/** The message on `line` (without its newline), or `undefined` when it is not one. */
export function parseMessage(line: string): WatchdogMessage | undefined {
  if (line.length > MAX_LINE) return undefined;
  const m = /^(watch|release) (\d{1,5}) (\d{1,5})$/.exec(line.trim());
  if (m === null) return undefined;
  const domid = Number(m[2]);
  const server = Number(m[3]);
  if (domid < 1 || domid >= DOMID_FIRST_RESERVED || server > MAX_SERVER_ID) return undefined;
  return { op: m[1] as WatchdogMessage['op'], domid, server };
}

/** The key of one watched server. */
export function serverKey(domid: number, server: number): string {
  return `${domid}/${server}`;
}
