/**
 * Starting a TypeScript fixture in a worker thread, the way the package starts its own
 * workers from sources (`src/threads/spawn.ts`): a bootstrap registers tsx's ESM loader, then
 * imports the fixture, with `--conditions=source` so workspace packages resolve to `src/`.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

export function startTsWorker(fixture: URL, workerData: unknown): Worker {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve('tsx/package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
  const api = pathToFileURL(join(dirname(manifestPath), manifest.exports['./esm/api']?.import.default ?? '')).href;
  const bootstrap = `import(${JSON.stringify(api)}).then((api) => { api.register(); return import(${JSON.stringify(fixture.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData, execArgv: ['--conditions=source'] });
}

/** The first message of `worker`; rejects if it fails or exits first. */
export function firstMessage<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', (m: T) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the worker exited with ${code} before reporting`)));
  });
}
