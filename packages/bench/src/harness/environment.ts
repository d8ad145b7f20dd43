/**
 * What this machine can run: `/dev/kvm` for the KVM benchmarks, `gcc` for every C side.
 * Each check returns `true` or the one-line reason a benchmark is skipped.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

let gcc: true | string | undefined;
let kvm: true | string | undefined;

/** Whether `gcc` runs (the C side of every benchmark is compiled at run time). */
export function gccAvailable(): true | string {
  gcc ??= (() => {
    const probe = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
    if (probe.error !== undefined) return `gcc is not available (${probe.error.message})`;
    return probe.status === 0 ? true : `gcc --version exited with ${probe.status}`;
  })();
  return gcc;
}

/** Whether `/dev/kvm` opens read-write. */
export function kvmAvailable(): true | string {
  kvm ??= (() => {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
      return true;
    } catch (e) {
      return `/dev/kvm is not accessible (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
    }
  })();
  return kvm;
}

/** The first reason among `checks`, or `true`. */
export function allAvailable(...checks: Array<() => true | string>): true | string {
  for (const check of checks) {
    const r = check();
    if (r !== true) return r;
  }
  return true;
}
