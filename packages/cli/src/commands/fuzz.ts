/**
 * `vmed fuzz [--accesses N] [--seed S] [--target NAME]… [--json]`: fuzzes the device models,
 * config space, MSI/MSI-X, the dispatcher and migration streams through the real core path on
 * the instrumented `sim` backend (see `@vmed/testkit`'s fuzz module), prints a table with
 * accesses per second, and exits non-zero when any invariant broke. A failing program is shrunk
 * and printed with its trace and words, ready for `regressions.test.ts`.
 *
 * With `--json` the last line printed is `{"results":[{"target":…,"accesses":N,"violations":N,
 * "perSecond":N}]}`; progress and counterexamples go to stderr.
 */
import { flag, parseArgs, stringOption } from '../args.js';
import { DEFAULT_ACCESSES_PER_TARGET, fuzzTargetNames, runFuzz } from '@vmed/testkit';
import type { FuzzTargetResult } from '@vmed/testkit';

function usage(): string {
  return [
    'usage: vmed fuzz [--accesses N] [--seed S] [--target NAME]... [--shrink-seconds S] [--json]',
    '',
    `  --accesses N        guest accesses per target (default ${DEFAULT_ACCESSES_PER_TARGET.toLocaleString('en-US')})`,
    '  --seed S            fast-check seed (default: from the clock; printed)',
    '  --target NAME       a target, repeatable or comma-separated (default: all)',
    '  --shrink-seconds S  time allowed to shrink a failing program (default 20)',
    '  --json              end with one JSON line of results',
    '',
    `targets: ${fuzzTargetNames().join(', ')}`,
  ].join('\n');
}

/** `--target a --target b,c` and `--target=a`: parseArgs keeps one value per name, so collect them here. */
function targetsOf(argv: readonly string[]): string[] {
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    let value: string | undefined;
    if (a === '--target') value = argv[++i];
    else if (a.startsWith('--target=')) value = a.slice('--target='.length);
    if (value !== undefined) names.push(...value.split(',').map((s) => s.trim()).filter((s) => s !== ''));
  }
  return names;
}

/** A positive integer option; `1e6` and `1_000_000` are accepted. */
function count(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${text}"`);
  return n;
}

function formatTable(results: readonly FuzzTargetResult[]): string {
  const rows = [
    ['target', 'accesses', 'violations', 'accesses/s', 'programs', 'seconds'],
    ...results.map((r) => [
      r.target,
      r.accesses.toLocaleString('en-US'),
      String(r.violations),
      r.perSecond.toLocaleString('en-US'),
      r.runs.toLocaleString('en-US'),
      (r.milliseconds / 1000).toFixed(1),
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  return rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (flag(args, 'help') || flag(args, 'h')) {
    console.log(usage());
    return 0;
  }
  const json = flag(args, 'json');
  const known = new Set(fuzzTargetNames());
  const targets = targetsOf(argv);
  for (const t of targets) {
    if (!known.has(t)) {
      console.error(`vmed fuzz: unknown target "${t}"\n\n${usage()}`);
      return 2;
    }
  }
  let accesses: number;
  let seed: number;
  let shrinkSeconds: number;
  try {
    accesses = count(stringOption(args, 'accesses'), 'accesses', DEFAULT_ACCESSES_PER_TARGET);
    const seedText = stringOption(args, 'seed');
    seed = seedText === undefined ? Date.now() % 0x7fffffff : Number(seedText);
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0x7fffffff) throw new Error(`--seed must be an integer in [0, 2^31), got "${seedText}"`);
    shrinkSeconds = count(stringOption(args, 'shrink-seconds'), 'shrink-seconds', 20);
  } catch (e) {
    console.error(`vmed fuzz: ${(e as Error).message}\n\n${usage()}`);
    return 2;
  }
  const progress = (line: string) => (json ? process.stderr.write(`${line}\n`) : console.log(line));
  progress(`vmed fuzz: ${accesses.toLocaleString('en-US')} accesses per target, seed ${seed}`);
  let lastReport = 0;
  const { results } = await runFuzz({
    ...(targets.length === 0 ? {} : { targets }),
    accessesPerTarget: accesses,
    seed,
    shrinkMs: shrinkSeconds * 1000,
    onProgress: (target, done) => {
      const now = Date.now();
      if (now - lastReport < 2000) return;
      lastReport = now;
      process.stderr.write(`  ${target}: ${done.toLocaleString('en-US')} accesses\n`);
    },
  });
  let table = formatTable(results);
  const scaled = results.filter((r) => r.budget !== accesses);
  if (scaled.length > 0) {
    table += `\n(${scaled.map((r) => `${r.target}: ${r.budget.toLocaleString('en-US')} accesses asked, each a whole state stream`).join('; ')})`;
  }
  if (json) process.stderr.write(`${table}\n`);
  else console.log(`\n${table}`);
  for (const r of results) {
    const c = r.counterexample;
    if (c === undefined) continue;
    const lines = [
      '',
      `${r.target}: ${c.violations.length} violation(s); replay with --target ${r.target} --seed ${seed}, or the words below`,
      ...c.violations.map((v) => `  [${v.invariant}] step ${v.step}: ${v.message}`),
      '  trace (last 40 steps):',
      ...c.trace.slice(-40).map((t) => `    ${t}`),
      `  words (${c.words.length}): ${JSON.stringify(c.words)}`,
    ];
    process.stderr.write(`${lines.join('\n')}\n`);
  }
  if (json) {
    console.log(JSON.stringify({ results: results.map((r) => ({ target: r.target, accesses: r.accesses, violations: r.violations, perSecond: r.perSecond })) }));
  }
  return results.some((r) => r.violations > 0) ? 1 : 0;
}
