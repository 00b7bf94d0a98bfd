import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const noClockOrRandom = [
  { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Use the injected Clock (common/src/clock.ts).' },
  { selector: "CallExpression[callee.object.name='Math'][callee.property.name='random']", message: 'Use the injected Random (common/src/random.ts).' },
];

// The floors: common/src (ground: clock, timers, random, errors, logger, config, listen helpers) is shared by
// sidecar/src and control-plane/src, which do not import each other; demo/src and cli/src (the `outrigger`
// command, top floor) may import anything. No import runs back up.
const FLOORS = {
  common: ['sidecar', 'control-plane', 'demo', 'cli'],
  sidecar: ['control-plane', 'demo', 'cli'],
  'control-plane': ['sidecar', 'demo', 'cli'],
};
const floorRules = Object.entries(FLOORS).map(([floor, banned]) => {
  const message = `${floor}/ may not import ${banned.map((b) => `${b}/`).join(', ')} (the floors in eslint.config.js).`;
  return {
    files: [`${floor}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: `^(\\.\\./)+(${banned.join('|')})/`, message }] }],
      // The same for import(), which no-restricted-imports does not see. \x2F is "/" (an esquery regex cannot hold one).
      'no-restricted-syntax': ['error', ...noClockOrRandom, { selector: `ImportExpression[source.value=/^(\\.\\.\\x2F)+(${banned.join('|')})\\x2F/]`, message }],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', 'node_modules/**', 'bench/.work/**', '**/generated/**', 'proto/gen/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', ...noClockOrRandom],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', Buffer: 'readonly', performance: 'readonly', fetch: 'readonly' } },
  },
  ...floorRules,
  {
    // The injected clock and random source are the only readers of the system clock and Math.random.
    files: ['common/src/clock.ts', 'common/src/random.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
