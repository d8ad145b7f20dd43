import { defineConfig } from 'vitest/config';

// Workspace tests run on src/ through the "source" export condition, without a build.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: {
    // koffi types are process-global per thread: fork per test file rather than vm isolation.
    pool: 'forks',
    include: ['packages/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
