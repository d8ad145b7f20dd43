/**
 * `vmed xen-lab <subcommand> [lab options] [-- args]`: boots real Xen with a PV dom0 under QEMU
 * emulation and runs a command in dom0 against this checkout, streaming its output and exiting
 * with its status. Boot progress and timings go to stderr; stdout carries only the command's
 * own output, so its last line is the command's last line.
 */
import { flag, parseArgs, stringOption } from '../args.js';
import { buildLab, DEFAULT_TIMEOUT_MS, dom0Node, dom0TsCommand, ensureLabPackages, labLayout, runInXenLab, XenLabError } from '@vmed/testkit/xen-lab';
import type { XenLabResult } from '@vmed/testkit/xen-lab';

/** How the project's own CLI is started in dom0 (the checkout is its cwd); see `dom0TsCommand`. */
const VMED = dom0TsCommand('jitless', 'packages/cli/src/main.ts');
/** The CLI with the JIT, for what measures vmed's speed. */
const VMED_JIT = dom0TsCommand('jit', 'packages/cli/src/main.ts');

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export const SUBCOMMANDS: Record<string, { summary: string; command: (args: readonly string[]) => string }> = {
  conformance: { summary: 'vmed conformance <args> in dom0, e.g. -- --backend xen --json', command: (a) => [VMED, 'conformance', ...a.map(shellQuote)].join(' ') },
  bench: { summary: 'vmed bench <args> in dom0', command: (a) => [VMED_JIT, 'bench', ...a.map(shellQuote)].join(' ') },
  demo: {
    summary: 'a PVH domain running the demo guest, served by vmed demo --hypervisor xen --domid N --unpause <args>',
    command: (a) => [dom0TsCommand('jitless', 'packages/cli/src/demo/lab-demo.ts'), ...a.map(shellQuote)].join(' '),
  },
  test: {
    summary: "the Xen backend's vitest tests in dom0: vitest run packages/backend-xen <args> (filters are OR-ed)",
    command: (a) => [`${dom0Node('jit')} node_modules/vitest/vitest.mjs run packages/backend-xen`, ...a.map(shellQuote)].join(' '),
  },
  // Words are joined, not quoted: `exec -- 'xl info | head'` and `exec -- xl info` both work.
  exec: { summary: 'a shell command in dom0: -- <command>', command: (a) => a.join(' ') },
};

function usage(): string {
  return [
    'usage: vmed xen-lab <subcommand> [--timeout <seconds>] [--verbose] [-- <args>]',
    '',
    ...Object.entries(SUBCOMMANDS).map(([n, s]) => `  ${n.padEnd(12)} ${s.summary}`),
    `  ${'build'.padEnd(12)} install the lab's packages and build its artifacts, print where they are`,
    '',
    `  --timeout <s>  limit for the whole run, boot included (default ${DEFAULT_TIMEOUT_MS / 1000})`,
    '  --verbose      copy the emulated machine\'s console to stderr',
    '',
    'Runs in dom0 with the checkout as cwd, VMED_XEN_LAB=1 and VMED_XEN_LAB_ASSETS set.',
  ].join('\n');
}

/**
 * Lab options come before `--`, the command's arguments after it. Without `--`, the lab takes
 * only its own options (`--timeout <s>`, `--verbose`) and hands every other word on, in order,
 * so `vmed xen-lab conformance --backend xen --json` means what it says.
 */
export function splitLabArgs(argv: readonly string[]): { lab: ReturnType<typeof parseArgs>; rest: string[] } {
  const dash = argv.indexOf('--');
  if (dash >= 0) return { lab: parseArgs(argv.slice(0, dash)), rest: argv.slice(dash + 1) };
  const own: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === '--verbose' || word.startsWith('--timeout=')) own.push(word);
    else if (word === '--timeout') {
      own.push(word, ...argv.slice(i + 1, i + 2));
      i++;
    } else rest.push(word);
  }
  return { lab: parseArgs(own), rest };
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '?' : `${(ms / 1000).toFixed(1)} s`;
}

function summary(r: XenLabResult): string {
  const t = r.timings;
  const boot = t.dom0Ready === undefined ? undefined : t.dom0Ready - t.qemuStarted;
  const command = t.commandEnded === undefined || t.commandStarted === undefined ? undefined : t.commandEnded - t.commandStarted;
  return `xen-lab: exit status ${r.exitCode}; boot ${seconds(boot)} (QEMU start to dom0 ready), command ${seconds(command)}, total ${seconds(t.total)}; run folder ${r.runDir}`;
}

function build(): number {
  ensureLabPackages((line) => console.error(`xen-lab: ${line}`));
  const layout = labLayout();
  const a = buildLab(layout);
  console.log(JSON.stringify({ cacheDir: layout.cacheDir, xen: a.xen, kernel: a.kernel, dom0Initrd: a.dom0Initrd, assets: a.assets, kernelRelease: a.kernelRelease, rebuilt: a.rebuilt }, null, 2));
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'build') return build();
  const sub = name === undefined ? undefined : SUBCOMMANDS[name];
  if (sub === undefined) {
    console.error(usage());
    return name === undefined || name === '--help' ? 0 : 2;
  }
  const { lab, rest: args } = splitLabArgs(rest);
  const timeout = Number(stringOption(lab, 'timeout', String(DEFAULT_TIMEOUT_MS / 1000)));
  if (!Number.isFinite(timeout) || timeout <= 0) {
    console.error('xen-lab: --timeout takes a number of seconds');
    return 2;
  }
  const command = sub.command(args);
  if (command.trim() === '') {
    console.error('xen-lab: exec needs a command: vmed xen-lab exec -- <command>');
    return 2;
  }

  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await runInXenLab({ command, timeoutMs: timeout * 1000, verbose: flag(lab, 'verbose'), signal: abort.signal });
    console.error(summary(result));
    return result.exitCode;
  } catch (e) {
    if (!(e instanceof XenLabError)) throw e;
    console.error(`xen-lab: ${e.message}`);
    return e.stage === 'timeout' ? 124 : e.stage === 'aborted' ? 130 : 125;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
