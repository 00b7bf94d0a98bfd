import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // $OUTRIGGER_TOKEN: the test control planes' admin token (test/helpers/tokens.ts).
    setupFiles: ['test/helpers/env.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Integration tests measure latency and memory of real processes: one file at a time keeps them honest.
    fileParallelism: false,
    coverage: {
      provider: 'v8',
      include: ['common/src/**/*.ts', 'sidecar/src/**/*.ts', 'control-plane/src/**/*.ts', 'demo/src/**/*.ts', 'cli/src/**/*.ts'],
      reporter: ['text-summary', 'text'],
    },
  },
});
