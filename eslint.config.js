// ESLint flat config. The Raft core (libs/raft) must stay pure and deterministic: no timers, clocks,
// randomness, I/O, process access or NestJS. The block below enforces that; test/lint.spec.ts proves it bites.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export const raftPurityRules = {
  'no-restricted-globals': [
    'error',
    ...['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate',
      'queueMicrotask', 'Date', 'performance', 'process', 'require', 'fetch', 'Buffer', 'crypto', 'console',
      'WebSocket', 'XMLHttpRequest'].map((name) => ({
      name,
      message: `libs/raft and libs/tree are pure: '${name}' (time, I/O or host access) belongs in the driver (libs/raft-node) or the service.`,
    })),
  ],
  'no-restricted-properties': [
    'error',
    { object: 'Math', property: 'random', message: 'libs/raft: randomness must be injected through Config.random.' },
    { object: 'Date', property: 'now', message: 'libs/raft: no clocks; time advances only through tick().' },
    { object: 'globalThis', message: 'libs/raft: no access to host globals.' },
  ],
  'no-restricted-imports': [
    'error',
    {
      patterns: [
        { group: ['node:*'], message: 'libs/raft: no Node built-ins (I/O, timers, crypto) in the pure core.' },
        { group: ['@nestjs/*'], message: 'libs/raft: no NestJS in the pure core.' },
        { group: ['@app/*', '!@app/raft', '@grpc/*'], message: 'the pure libraries depend only on themselves (and libs/tree on @app/raft types).' },
        {
          group: ['fs', 'fs/*', 'net', 'dgram', 'http', 'https', 'http2', 'child_process', 'worker_threads', 'timers',
            'timers/*', 'crypto', 'os', 'path', 'process', 'perf_hooks', 'cluster', 'readline', 'events'],
          message: 'libs/raft: no Node built-ins (I/O, timers, crypto) in the pure core.',
        },
      ],
    },
  ],
  'no-restricted-syntax': [
    'error',
    { selector: "NewExpression[callee.name='Date']", message: 'libs/raft: no clocks in the pure core.' },
    { selector: 'ImportExpression', message: 'libs/raft: no dynamic imports in the pure core.' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.data/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly', process: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly',
        setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', Buffer: 'readonly',
        URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', performance: 'readonly',
        TextEncoder: 'readonly', TextDecoder: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // The Raft core and the replicated tree state machine must be deterministic (they run in the simulator).
    files: ['libs/raft/src/**/*.ts', 'libs/tree/src/**/*.ts'],
    rules: raftPurityRules,
  },
);
