// Lint: typescript-eslint's strict, type-aware rules, plus import rules that
// fail on import cycles and on the agent and the controller importing each other.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

export default tseslint.config(
  { ignores: ['**/dist/**', 'dist-bundle/**', 'node_modules/**', 'bench/out/**', 'test-results/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  importX.flatConfigs.typescript,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.eslint.json', tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.eslint.json' })] },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // Numbers and booleans read fine in messages; objects and undefined do not.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // noUncheckedIndexedAccess makes every indexed read optional; `!` marks an index the code has
      // just bounded (tar headers, fixed-size fields). Kept reviewable, not forbidden.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Escaping control characters is what several modules are for.
      'no-control-regex': 'off',
      // Async methods that implement an async interface without awaiting anything themselves.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            { target: './packages/agent', from: './packages/controller', message: 'the agent never imports the controller' },
            { target: './packages/controller', from: './packages/agent', message: 'the controller never imports the agent' },
            { target: './packages/protocol', from: './packages/agent' },
            { target: './packages/protocol', from: './packages/controller' },
          ],
        },
      ],
    },
  },
  {
    // Tests index results they have just asserted, and match control characters on purpose.
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {
      // Flags flipped in callbacks, values a killed process leaves undefined, expect.* matchers:
      // the type checker cannot see these, and a test that guards them anyway is fine.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-unnecessary-type-conversion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-dynamic-delete': 'off',
    },
  },
);
