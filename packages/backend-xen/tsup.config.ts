import { defineConfig } from 'tsup';

export default defineConfig({
  // The worker and the watchdog helper are entries of their own: the waiter starts the worker
  // from dist/ioreq/evtchn-worker.js, the watchdog client the helper from dist/watchdog/helper.js.
  entry: {
    index: 'src/index.ts',
    conformance: 'src/conformance.ts',
    'ioreq/evtchn-worker': 'src/ioreq/evtchn-worker.ts',
    'watchdog/helper': 'src/watchdog/helper.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
  external: ['@vmed/testkit'],
});
