/**
 * How Node runs in the lab's dom0: the one place that knows.
 *
 * Under QEMU TCG with a 2-vCPU PV dom0, JIT-compiled code intermittently crashed the thread
 * running it (SIGSEGV in JIT code of tsx's loader thread, caught in gdb): `vmed conformance
 * --backend xen` died in 5 of 6 runs as plain `node`, in 1 of 7 with `--single-threaded` (no V8
 * background compiler), and in none of its runs with `--jitless`, which under emulation is no
 * slower (23-30 s a run either way). Commands run `jitless`; what measures vmed's speed (the
 * benchmark) and the vitest runs, which have not crashed, keep the JIT with `--single-threaded`.
 * See `xen-lab/NOTES.md`.
 */

/** `jitless` for commands; `jit` (single-threaded) where JIT speed is the point. */
export type Dom0NodeMode = 'jitless' | 'jit';

/** `node` with the flags for `mode`. */
export function dom0Node(mode: Dom0NodeMode): string {
  return mode === 'jitless' ? 'node --jitless' : 'node --single-threaded';
}

/** A TypeScript entry of the checkout (path relative to it) run from source through tsx. */
export function dom0TsCommand(mode: Dom0NodeMode, script: string): string {
  return `${dom0Node(mode)} --conditions=source --import tsx ${script}`;
}
