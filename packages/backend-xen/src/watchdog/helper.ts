/**
 * The watchdog helper process (started by `client.ts`, from `dist/watchdog/helper.js` or this
 * file under tsx): reads its parent's `watch`/`release` lines on stdin and, when stdin ends
 * with servers still watched, rescues them (`rescue.ts`) and exits. Its own process group, so
 * a Ctrl-C meant for the parent does not take it down first. Logs go to stderr, one line each.
 */
import { runWatchLoop } from './watch-loop.js';
import { XenRescuer } from './xen-rescuer.js';

// The parent passes its pid: by the time anything is logged it may be dead, and ppid is 1.
const parent = /^\d+$/.test(process.argv[2] ?? '') ? (process.argv[2] as string) : String(process.ppid);
const log = (line: string): void => {
  process.stderr.write(`vmed watchdog[${process.pid}] for process ${parent}: ${line}\n`);
};

const xen = new XenRescuer();
void runWatchLoop(process.stdin, xen, log).then((outcome) => {
  xen.close();
  process.exitCode = outcome.rescued.every((r) => r.report.destroyed) ? 0 : 1;
});
