#!/usr/bin/env node
/**
 * Second half of the release build (scripts/release.sh): make tsc's output runnable by plain `node`.
 *
 *   node scripts/release/finalize.mjs <release-dir>
 *
 * 1. Rewrites every `@app/<lib>` specifier in <release-dir>/dist/**.js to a relative path to
 *    dist/libs/<lib>/src/index.js. tsconfig `paths` are a compile-time fiction that node does not apply; the
 *    specifiers are found with TypeScript's own scanner (ts.preProcessFile: static imports, re-exports and
 *    `import('…')`), not with a regular expression, so string literals that merely look like imports are left
 *    alone. A specifier whose target was not emitted fails the build.
 * 2. Collects the bare package names the emitted code imports and writes <release-dir>/package.json with the
 *    root package.json's `dependencies` plus any devDependency that runtime code imports (promoted at the
 *    version the lock file holds, with a warning: it belongs in `dependencies`). A package imported at runtime
 *    but declared nowhere fails the build.
 */
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: finalize.mjs <release-dir>\n');
  process.exit(2);
}
const releaseDir = resolve(out);
const distDir = join(releaseDir, 'dist');

function* jsFiles(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* jsFiles(p);
    else if (e.isFile() && e.name.endsWith('.js')) yield p;
  }
}

const builtins = new Set(builtinModules);
const packageOf = (spec) => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
const used = new Map(); // package name -> first file importing it
let rewritten = 0;
const errors = [];

for (const file of jsFiles(distDir)) {
  const text = readFileSync(file, 'utf8');
  const { importedFiles } = ts.preProcessFile(text, true, true);
  const edits = [];
  for (const imp of importedFiles) {
    const spec = imp.fileName;
    const m = /^@app\/([a-z0-9-]+)$/.exec(spec);
    if (m) {
      const target = join(distDir, 'libs', m[1], 'src', 'index.js');
      if (!existsSync(target)) {
        errors.push(`${relative(releaseDir, file)}: imports ${spec} but ${relative(releaseDir, target)} was not emitted`);
        continue;
      }
      let rel = relative(dirname(file), target).split(sep).join('/');
      if (!rel.startsWith('.')) rel = `./${rel}`;
      // Locate the specifier's text: TypeScript 5 reports pos at the opening quote; accept either convention.
      const at = [imp.pos + 1, imp.pos].find((p) => text.slice(p, p + spec.length) === spec && /['"]/.test(text[p - 1] ?? ''));
      if (at === undefined) {
        errors.push(`${relative(releaseDir, file)}: cannot locate the specifier ${spec} (escaped string?)`);
        continue;
      }
      edits.push({ pos: at, end: at + spec.length, text: rel });
    } else if (spec.startsWith('@app/')) {
      errors.push(`${relative(releaseDir, file)}: unsupported @app specifier ${spec} (only @app/<lib> is mapped)`);
    } else if (!spec.startsWith('.') && !spec.startsWith('/') && !spec.startsWith('node:') && !builtins.has(spec.split('/')[0])) {
      const name = packageOf(spec);
      if (!used.has(name)) used.set(name, relative(releaseDir, file));
    }
  }
  if (edits.length > 0) {
    let next = text;
    for (const e of edits.sort((a, b) => b.pos - a.pos)) next = next.slice(0, e.pos) + e.text + next.slice(e.end);
    writeFileSync(file, next);
    rewritten += edits.length;
  }
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
const deps = { ...(pkg.dependencies ?? {}) };
const dev = pkg.devDependencies ?? {};
for (const [name, file] of [...used].sort()) {
  if (deps[name]) continue;
  if (dev[name]) {
    const locked = lock.packages?.[`node_modules/${name}`]?.version;
    deps[name] = locked ?? dev[name];
    process.stderr.write(`release: warning: ${name} is a devDependency but ${file} imports it at runtime; ` +
      `the release ships it (${deps[name]}) — move it to "dependencies" in package.json\n`);
    continue;
  }
  errors.push(`${file} imports ${name}, which package.json does not declare`);
}

if (errors.length > 0) {
  for (const e of errors) process.stderr.write(`release: ${e}\n`);
  process.exit(1);
}

const sorted = Object.fromEntries(Object.entries(deps).sort(([a], [b]) => a.localeCompare(b)));
const prod = {
  name: pkg.name,
  version: pkg.version,
  private: true,
  description: pkg.description,
  type: 'module',
  engines: pkg.engines,
  ...(pkg.overrides ? { overrides: pkg.overrides } : {}),
  dependencies: sorted,
};
writeFileSync(join(releaseDir, 'package.json'), `${JSON.stringify(prod, null, 2)}\n`);
process.stdout.write(`release: rewrote ${rewritten} @app/* imports; runtime packages: ${[...used.keys()].sort().join(', ')}\n`);
