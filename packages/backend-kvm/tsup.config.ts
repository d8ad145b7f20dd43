import { defineConfig } from 'tsup';

export default defineConfig({
  // The worker entries are spawned by URL next to the bundle (see src/threads/spawn.ts).
  entry: {
    index: 'src/index.ts',
    conformance: 'src/conformance.ts',
    'vcpu-worker': 'src/vcpu/vcpu-worker.ts',
    'poller-worker': 'src/poller/poller-worker.ts',
  },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts', conformance: 'src/conformance.ts' } },
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
});
