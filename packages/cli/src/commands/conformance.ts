/**
 * `vmed conformance --backend <sim|kvm|xen> [--json] [--only a,b.] [--timeout ms]`: runs the
 * backend conformance suite and prints one line per scenario. With `--json` the last line is
 * the machine-readable result. Exits 1 if any scenario failed, 2 on a usage error.
 *
 * Each backend's target is loaded only when named, so a KVM host never loads Xen's bindings.
 */
import type { ConformanceTarget, ScenarioResult } from '@vmed/testkit';
import { flag, parseArgs, stringOption } from '../args.js';

type TargetFactory = (options: Record<string, unknown>) => ConformanceTarget | Promise<ConformanceTarget>;

/** Where each backend's conformance target lives. */
const TARGET_MODULES: Record<string, string> = {
  sim: '@vmed/testkit/sim',
  kvm: '@vmed/backend-kvm/conformance',
  xen: '@vmed/backend-xen/conformance',
};

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const backend = stringOption(args, 'backend');
  if (backend === undefined || !(backend in TARGET_MODULES)) {
    console.error(`vmed conformance: --backend must be one of ${Object.keys(TARGET_MODULES).join(', ')}${backend === undefined ? '' : ` (got "${backend}")`}`);
    return 2;
  }
  const timeoutText = stringOption(args, 'timeout');
  const timeoutMs = timeoutText === undefined ? undefined : Number(timeoutText);
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    console.error(`vmed conformance: --timeout must be a positive number of ms (got "${timeoutText}")`);
    return 2;
  }
  const only = stringOption(args, 'only')
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

  const specifier = TARGET_MODULES[backend] as string;
  let factory: TargetFactory;
  try {
    factory = await loadTargetFactory(specifier);
  } catch (e) {
    console.error(`vmed conformance: cannot load the ${backend} conformance target from ${specifier}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }

  const { runConformance } = await import('@vmed/testkit');
  const target = await factory({});
  let results: ScenarioResult[];
  try {
    results = await runConformance(target, {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(only === undefined ? {} : { only }),
      onResult: (r) => console.log(formatRow(r)),
    });
  } finally {
    await target.dispose?.();
  }

  const count = (s: ScenarioResult['status']) => results.filter((r) => r.status === s).length;
  console.log(`${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped`);
  if (flag(args, 'json')) {
    const json = results.map((r) => ({ scenario: r.scenario, status: r.status, ...(r.reason === undefined ? {} : { reason: r.reason }) }));
    console.log(JSON.stringify({ backend, results: json }));
  }
  return count('fail') > 0 ? 1 : 0;
}

/** Imports `specifier` and checks it exports `createConformanceTarget`. */
async function loadTargetFactory(specifier: string): Promise<TargetFactory> {
  const module: unknown = await import(specifier);
  const factory = (module as { createConformanceTarget?: unknown }).createConformanceTarget;
  if (typeof factory !== 'function') throw new Error('the module exports no createConformanceTarget()');
  return factory as TargetFactory;
}

const NAME_WIDTH = 40;

/** `scenario  PASS  12 ms`, with the reason on the same line for failures and skips. */
function formatRow(r: ScenarioResult): string {
  const status = r.status === 'pass' ? 'pass' : r.status === 'fail' ? 'FAIL' : 'skip';
  const reason = r.reason === undefined ? '' : `  ${r.reason.split('\n')[0]}`;
  return `${r.scenario.padEnd(NAME_WIDTH)} ${status}  ${String(r.ms).padStart(5)} ms${reason}`;
}
