/**
 * The Raft core must stay pure: the ESLint block scoped to libs/raft/src forbids timers, clocks, randomness,
 * I/O, host globals and NestJS. These tests prove the rule bites, and that the core passes it today.
 */
import { ESLint } from 'eslint';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const eslint = new ESLint({ cwd: root });
const coreFile = path.join(root, 'libs/raft/src/__lint_probe__.ts');

async function lintCore(code: string): Promise<string[]> {
  const [res] = await eslint.lintText(code, { filePath: coreFile });
  return res.messages.map((m) => `${m.ruleId ?? 'parse'}: ${m.message}`);
}

const forbidden: [string, string][] = [
  ['a timer', 'export function f(): void { setTimeout(() => undefined, 10); }'],
  ['an interval', 'export function f(): void { setInterval(() => undefined, 10); }'],
  ['setImmediate', 'export function f(): void { setImmediate(() => undefined); }'],
  ['the wall clock', 'export const t = Date.now();'],
  ['a Date object', 'export const t = new Date();'],
  ['performance.now', 'export const t = performance.now();'],
  ['Math.random', 'export const r = Math.random();'],
  ['node:fs', "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;"],
  ['fs', "import * as fs from 'fs';\nexport const x = fs;"],
  ['node:crypto', "import { randomBytes } from 'node:crypto';\nexport const x = randomBytes;"],
  ['NestJS', "import { Injectable } from '@nestjs/common';\nexport const x = Injectable;"],
  ['process', 'export const env = process.env;'],
  ['console', "export function f(): void { console.log('x'); }"],
  ['a dynamic import', "export const m = import('node:fs');"],
];

describe('libs/raft purity lint rule', () => {
  test.each(forbidden)('forbids %s', async (_what, code) => {
    const msgs = await lintCore(code);
    expect(msgs.some((m) => /^no-restricted-/.test(m))).toBe(true);
  });

  test('accepts pure code', async () => {
    const msgs = await lintCore('export function add(a: number, b: number): number { return a + b; }\n');
    expect(msgs).toEqual([]);
  });

  test('the same code outside libs/raft is not restricted', async () => {
    const [res] = await eslint.lintText('export const t = Date.now();\n', {
      filePath: path.join(root, 'libs/raft-node/src/__lint_probe__.ts'),
    });
    expect(res.messages.filter((m) => m.ruleId?.startsWith('no-restricted-'))).toEqual([]);
  });

  test('the Raft core as it is today passes the rule', async () => {
    const results = await eslint.lintFiles(['libs/raft/src/**/*.ts']);
    expect(results.length).toBeGreaterThan(5);
    const problems = results.flatMap((r) => r.messages.map((m) => `${r.filePath}:${m.line} ${m.ruleId}: ${m.message}`));
    expect(problems).toEqual([]);
  });
});
