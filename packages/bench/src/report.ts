/**
 * The human table and the machine line of a {@link RunReport}.
 */
import { cpus } from 'node:os';
import { median } from './harness/rounds.js';
import type { RunReport } from './run.js';

/** The figures: name, unit, vmed, C, ratio, goal, met?, the spread of the per-round ratios; then skips, failures and peak RSS. */
export function formatTable(report: RunReport): string {
  const rows: string[][] = [['benchmark', 'unit', 'vmed', 'C', 'ratio', 'goal', 'met?', 'round ratios (IQR)']];
  for (const r of report.results) {
    rows.push([r.name, r.unit, fixed(r.vmed), fixed(r.c), r.ratio.toFixed(2), `≤ ${r.goal.toFixed(2)}`, r.met ? 'yes' : 'NO', `${r.ratioSpread[0].toFixed(2)}–${r.ratioSpread[1].toFixed(2)}`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length)));
  const line = (row: string[]) => row.map((cell, i) => (i >= 2 && i <= 4 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)];
  for (const r of report.results) {
    if (r.details === undefined) continue;
    const keys = new Set([...r.details.vmed, ...r.details.c].flatMap((d) => Object.keys(d)));
    for (const key of keys) {
      const side = (list: ReadonlyArray<Readonly<Record<string, number>>>) => {
        const values = list.map((d) => d[key]).filter((v): v is number => v !== undefined);
        return values.length === 0 ? '-' : String(median(values));
      };
      out.push(`${r.name}: ${key} (median): vmed ${side(r.details.vmed)}, C ${side(r.details.c)}`);
    }
  }
  for (const s of report.skipped) out.push(`${s.name}: skipped: ${s.skipped}`);
  for (const f of report.failed) out.push(`${f.name}: FAILED: ${f.error}`);
  out.push(`medians of ${report.rounds} alternating round${report.rounds === 1 ? '' : 's'} (${report.scale}); ratio = vmed / C, lower is better`);
  out.push(`load average ${report.load.before.toFixed(1)} before, ${report.load.after.toFixed(1)} after, on ${cpus().length} CPUs`);
  out.push(`peak RSS of the vmed process: ${(report.maxRssKiB / 1024).toFixed(1)} MiB`);
  return out.join('\n');
}

/** `{"results":[{"name","unit","vmed","c","ratio","goal","met","ratioSpread"}, …], "skipped", "failed", "maxRssKiB", "loadAverage"}`. */
export function formatJson(report: RunReport): string {
  return JSON.stringify({
    results: report.results.map((r) => ({ name: r.name, unit: r.unit, vmed: r.vmed, c: r.c, ratio: r.ratio, goal: r.goal, met: r.met, ratioSpread: r.ratioSpread })),
    skipped: report.skipped.map((s) => ({ name: s.name, reason: s.skipped })),
    failed: report.failed,
    maxRssKiB: report.maxRssKiB,
    loadAverage: report.load,
  });
}

function fixed(value: number): string {
  return value >= 100 ? value.toFixed(1) : value >= 10 ? value.toFixed(2) : value.toFixed(3);
}
