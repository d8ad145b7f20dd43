import { defineConfig } from 'tsup';

export default defineConfig({
  // The worker is its own entry: the waiter starts it from dist/ioreq/evtchn-worker.js.
  entry: { index: 'src/index.ts', conformance: 'src/conformance.ts', 'ioreq/evtchn-worker': 'src/ioreq/evtchn-worker.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
  external: ['@vmed/testkit'],
});
