import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e tests build hosts with namespaces and mounts: run files one at a time.
    fileParallelism: false,
    pool: 'forks',
  },
});
