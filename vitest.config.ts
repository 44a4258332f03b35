import { defineConfig } from 'vitest/config';

// One fast-check seed per run, chosen here (the main process) so every test
// file shares it and it is printed once; FC_SEED replays a run, FC_PATH a
// single counterexample (with -t to pick its test).
const seed = process.env.FC_SEED ?? String((Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0);
process.env.FC_SEED = seed;
console.log(`fast-check seed: ${seed} (replay: FC_SEED=${seed} npm test)`);

export default defineConfig({
  resolve: {
    alias: [
      { find: /^sparsetune\/testing$/, replacement: new URL('./src/testing/index.ts', import.meta.url).pathname },
      { find: /^sparsetune\/node$/, replacement: new URL('./src/node/index.ts', import.meta.url).pathname },
      { find: /^sparsetune$/, replacement: new URL('./src/index.ts', import.meta.url).pathname },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'property-tests/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
