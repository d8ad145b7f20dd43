/**
 * Starting the package's worker threads (vCPU threads and the eventfd poller) both from the
 * built package and from TypeScript sources.
 *
 * Built (`dist/`): each worker is a tsup entry next to the bundle (`dist/vcpu-worker.js`).
 * Sources (`src/`, vitest, `--conditions=source`): the worker file is TypeScript. Node 20
 * does not apply `--import tsx` given in a Worker's `execArgv` to the worker's entry, so the
 * worker starts with a tiny bootstrap that registers tsx's ESM loader and then imports the
 * entry; `--conditions=source` makes workspace packages resolve to their sources there too.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UnsupportedError } from '@vmed/core';

export type WorkerEntry = 'vcpu-worker' | 'poller-worker';

const SOURCE_PATHS: Readonly<Record<WorkerEntry, string>> = {
  'vcpu-worker': '../vcpu/vcpu-worker.ts',
  'poller-worker': '../poller/poller-worker.ts',
};

let tsxApi: string | undefined;

function tsxEsmApi(): string {
  if (tsxApi !== undefined) return tsxApi;
  try {
    const require = createRequire(import.meta.url);
    const manifestPath = require.resolve('tsx/package.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      exports?: Record<string, { import?: { default?: string } } | string>;
    };
    const entry = manifest.exports?.['./esm/api'];
    const relative = typeof entry === 'object' ? entry.import?.default : undefined;
    if (relative === undefined) throw new Error('tsx has no ./esm/api export');
    tsxApi = pathToFileURL(join(dirname(manifestPath), relative)).href;
    return tsxApi;
  } catch (cause) {
    throw new UnsupportedError('kvm.spawnWorker', 'running the KVM backend from TypeScript sources needs tsx', { cause });
  }
}

/** Starts worker `entry` with `workerData`. */
export function spawnWorker(entry: WorkerEntry, workerData: unknown): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) {
    return new Worker(new URL(`./${entry}.js`, here), { workerData });
  }
  const target = new URL(SOURCE_PATHS[entry], here).href;
  const bootstrap =
    `import(${JSON.stringify(tsxEsmApi())}).then((api) => { api.register(); return import(${JSON.stringify(target)}); });`;
  return new Worker(bootstrap, { eval: true, workerData, execArgv: ['--conditions=source'] });
}
