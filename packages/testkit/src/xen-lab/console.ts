/**
 * Reading the emulated machine's serial console: Xen's own log, dom0's `hvc0` (which Xen
 * forwards there) and the "VMED-LAB:" markers of dom0-init.sh and dom0-session.sh. The console
 * only tells the host how far the boot got; the command's output travels through files in the
 * results folder, so nothing printed here can corrupt it.
 */

/** What a console line means to the harness. */
export type ConsoleEvent =
  /** Xen started printing: the multiboot load worked. */
  | { readonly kind: 'xen-booting' }
  /** Xen finished its own setup and is building dom0. */
  | { readonly kind: 'xen-up' }
  /** A marker line from dom0's scripts, e.g. `ready`, `command-start`, `exit 0`. */
  | { readonly kind: 'marker'; readonly name: string; readonly arg: string }
  /** The machine will not get further: a hypervisor or dom0 panic, or a failed setup step. */
  | { readonly kind: 'fatal'; readonly reason: string };

// A guest's own lines reach the console prefixed with its domain, "(d1)": they are not dom0's.
const DOMU_LINE = /\(d[1-9]\d*\)/;

/** Classifies one console line; most lines mean nothing to the harness. */
export function classifyConsoleLine(line: string): ConsoleEvent | undefined {
  const marker = /VMED-LAB: ([\w-]+)(?: (.*))?$/.exec(line);
  if (marker !== null) {
    const [name, arg] = [marker[1] as string, (marker[2] ?? '').trim()];
    return name === 'fail' ? { kind: 'fatal', reason: `dom0 setup failed: ${arg}` } : { kind: 'marker', name, arg };
  }
  if (line.includes('(XEN) Xen version')) return { kind: 'xen-booting' };
  if (/\*\*\* (Building a PV Dom0|LOADING DOMAIN 0) \*\*\*/.test(line)) return { kind: 'xen-up' };
  if (/\(XEN\) Panic on CPU/.test(line)) return { kind: 'fatal', reason: line.trim() };
  if (/Hardware Dom0 (crashed|shutdown)/.test(line)) return { kind: 'fatal', reason: line.trim() };
  if (line.includes('Kernel panic - not syncing') && !DOMU_LINE.test(line)) return { kind: 'fatal', reason: `dom0 ${line.trim()}` };
  return undefined;
}

/** Splits a byte stream into lines, dropping carriage returns and terminal escapes. */
export class LineSplitter {
  #partial = '';

  /** The complete lines in `chunk` (with what was left over from the previous one). */
  push(chunk: Buffer | string): string[] {
    const text = this.#partial + chunk.toString();
    const lines = text.split('\n');
    this.#partial = lines.pop() ?? '';
    return lines.map(clean);
  }

  /** The unterminated last line, if any. */
  flush(): string[] {
    const rest = this.#partial;
    this.#partial = '';
    return rest === '' ? [] : [clean(rest)];
  }
}

function clean(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\x1b\[[0-9;?]*[A-Za-z]|\r/g, '');
}
