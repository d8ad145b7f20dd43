/**
 * `vmed bench [--filter <substring>] [--rounds N] [--json] [--profile [dir]] [--tiny] [--check] [--list]`:
 * runs the benchmarks of `@vmed/bench` — each compares vmed with a C program doing the same
 * work on this machine in the same run — and prints a table (name, unit, vmed, C, ratio, goal,
 * met?) and the vmed process's peak RSS. With `--json` the last line is
 * `{"results":[{"name","unit","vmed","c","ratio",…}, …], …}`. With `--profile` each
 * benchmark's vmed side runs once more under the CPU profiler; the `.cpuprofile` paths and
 * their hottest functions are printed. Progress goes to stderr.
 *
 * Exit status: 0; 1 if a benchmark failed (or, with `--check`, missed its goal); 2 on a usage error.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatJson, formatTable, runBenchmarks, selectBenchmarks, summarizeProfile } from '@vmed/bench';
import { flag, parseArgs, stringOption } from '../args.js';

function usage(): string {
  return [
    'usage: vmed bench [--filter <substring>] [--rounds N] [--json] [--profile [dir]] [--tiny] [--check] [--list]',
    '  --filter s   run the benchmarks whose name contains s',
    '  --rounds N   alternating vmed/C rounds per benchmark (default 5); the figures are medians',
    '  --json       end with one JSON line of the results',
    '  --profile    profile each benchmark\'s vmed side once; write .cpuprofile files (default dir: the temp dir)',
    '  --tiny       a few operations per sample: checks that everything runs, the figures mean nothing',
    '  --check      exit 1 when a benchmark misses its goal',
    '  --list       list the benchmarks and whether they can run here',
  ].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (flag(args, 'help')) {
    console.log(usage());
    return 0;
  }
  const known = new Set(['filter', 'rounds', 'json', 'profile', 'tiny', 'check', 'list', 'help']);
  const unknown = [...args.options.keys()].filter((k) => !known.has(k));
  if (unknown.length > 0 || args.positional.length > 0) {
    console.error(`vmed bench: unknown argument ${unknown.length > 0 ? `--${unknown[0]}` : args.positional[0]}\n${usage()}`);
    return 2;
  }
  const roundsText = stringOption(args, 'rounds');
  const rounds = roundsText === undefined ? undefined : Number(roundsText);
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds >= 1)) {
    console.error(`vmed bench: --rounds takes a positive integer (got "${roundsText}")`);
    return 2;
  }
  const filterOption = args.options.get('filter');
  if (filterOption === true) {
    console.error('vmed bench: --filter takes a substring of the benchmark names');
    return 2;
  }
  const profileOption = args.options.get('profile');
  const profileDirectory = profileOption === undefined ? undefined : profileOption === true ? join(tmpdir(), 'vmed-bench-profiles') : profileOption;

  if (flag(args, 'list')) {
    for (const b of selectBenchmarks(filterOption)) {
      const available = b.available();
      console.log(`${b.name.padEnd(28)} ${b.unit.padEnd(14)} goal ≤ ${b.goal.toFixed(2)}  ${available === true ? b.description : `skipped: ${available}`}`);
    }
    return 0;
  }

  const report = await runBenchmarks({
    ...(filterOption === undefined ? {} : { filter: filterOption }),
    ...(rounds === undefined ? {} : { rounds }),
    ...(flag(args, 'tiny') ? { scale: 'tiny' as const } : {}),
    ...(profileDirectory === undefined ? {} : { profileDirectory }),
    log: (line) => console.error(line),
  });
  console.log(formatTable(report));
  for (const r of report.results) {
    if (r.profile === undefined) continue;
    console.log(`profile of ${r.name}: ${r.profile}`);
    for (const e of summarizeProfile(JSON.parse(readFileSync(r.profile, 'utf8')) as never, 8)) {
      console.log(`  ${e.selfPercent.toFixed(1).padStart(5)}%  ${e.function}${e.location === '' ? '' : `  ${e.location}`}`);
    }
  }
  if (flag(args, 'json')) console.log(formatJson(report));
  if (report.failed.length > 0) return 1;
  if (flag(args, 'check') && report.results.some((r) => !r.met)) return 1;
  return 0;
}
