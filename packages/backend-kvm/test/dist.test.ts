/**
 * The built package spawns its worker threads from its own files (tsup entries
 * `vcpu-worker`, `poller-worker` next to the bundle), not from TypeScript sources: a build
 * (without declarations) runs a guest in worker mode with a doorbell.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type * as Entry from '../src/index.js';
import { assemble } from './helpers/assemble.js';

type PackageEntry = typeof Entry;
import { KVM_SKIP, RecordingSink, until } from './helpers/kvm.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
// Inside the package's node_modules so the bundle resolves koffi as an installed package would.
const outDir = join(packageDir, 'node_modules', '.cache', `vmed-dist-test-${process.pid}`);

describe('built package', () => {
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it('runs vCPU and poller workers from dist files', async (ctx) => {
    ctx.skip(KVM_SKIP !== undefined, KVM_SKIP);
    mkdirSync(outDir, { recursive: true });
    const { build } = await import('tsup');
    const config = (await import('../tsup.config.js')).default as { entry: Record<string, string> };
    const entry = Object.fromEntries(Object.entries(config.entry).map(([name, file]) => [name, join(packageDir, file)]));
    // @vmed/core is bundled from its sources (it has no build here); koffi stays external.
    await build({
      ...config,
      entry,
      external: ['koffi'],
      noExternal: ['@vmed/core'],
      esbuildOptions: (options) => {
        options.conditions = ['source', 'import', 'default'];
      },
      dts: false,
      sourcemap: false,
      format: ['esm'],
      outDir,
      silent: true,
      config: false,
    });
    const url = pathToFileURL(join(outDir, 'index.js')).href;
    const { createBackend } = (await import(/* @vite-ignore */ url)) as PackageEntry;
    const backend = await createBackend({ mode: 'standalone', memoryMiB: 1, vcpus: 1 });
    try {
      const sink = new RecordingSink();
      backend.attach(sink);
      let rings = 0;
      backend.registerIoEvent({ space: 'pio', address: 0x5a0n, length: 1 }, (n) => {
        rings += n;
      });
      backend.guest.load(0x1000n, assemble(`.code32\n  mov $0x5a0, %dx\n  out %al, %dx\n  mov $0x5a1, %dx\n  out %al, %dx\n  mov $0x1234, %dx\n  out %al, %dx\n`, 0x1000));
      backend.guest.setEntry(0, { mode: 'protected32', ip: 0x1000 });
      const result = await backend.guest.run({ execution: 'worker', donePort: 0x1234 });
      expect(result.vcpus[0]?.reason).toBe('done');
      expect(sink.accesses.map((a) => a.address)).toEqual([0x5a1n]);
      await until(() => rings === 1);
    } finally {
      await backend.close();
    }
  });
});
