/**
 * The image's contents, checked without a Docker engine: build the release with scripts/release.sh (what the
 * Dockerfile's build stage runs) into a temp dir, then start every program exactly as the image does — through
 * docker/entrypoint.sh with SYNOD_RELEASE_DIR pointing at the release (/app in the image), from a working
 * directory outside the repository and without SYNOD_PROTO_ROOT, so nothing can come from the source tree or
 * its node_modules. A 1-member consensus cluster, then the lock service and the transaction coordinator
 * pointed at it; each must become ready (/readyz) and serve a request. Every process is stopped by pid.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { freePort } from '../libs/testing/src/servers/process.js';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LockClient, TxnClient } from '@app/client';

const ROOT = resolve(import.meta.dirname, '..');
const ENTRYPOINT = join(ROOT, 'docker/entrypoint.sh');
const BUILD_TIMEOUT_MS = 300_000;
const READY_TIMEOUT_MS = 30_000;

let work = '';
let release = '';
let buildSeconds = 0;
const procs: { name: string; proc: ChildProcess; log: string[] }[] = [];

/** The environment of a program started from the release: no jest NODE_OPTIONS, no proto root from the tree. */
function releaseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, SYNOD_RELEASE_DIR: release };
  delete env.NODE_OPTIONS;
  delete env.NODE_PATH;
  delete env.SYNOD_PROTO_ROOT;
  return env;
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { env: opts.env ?? releaseEnv(), cwd: opts.cwd ?? work, timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      res({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts `entrypoint.sh <args>` from the release; resolves once GET /readyz on metricsPort answers 200. */
async function startService(name: string, args: string[], metricsPort: number): Promise<ChildProcess> {
  const proc = spawn(ENTRYPOINT, args, { cwd: work, env: releaseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  proc.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  proc.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  procs.push({ name, proc, log });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    try {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { signal: AbortSignal.timeout(2000) });
      last = `${r.status} ${(await r.text()).trim()}`;
      if (r.ok) return proc;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(200);
  }
  throw new Error(`${name} did not become ready within ${READY_TIMEOUT_MS} ms (exit ${proc.exitCode ?? proc.signalCode ?? 'none'}; last /readyz: ${last})\n--- ${name} output ---\n${log.join('')}`);
}

/** SIGTERM (graceful), SIGKILL after 10 s; by pid. */
async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  process.kill(proc.pid!, 'SIGTERM');
  const t = setTimeout(() => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, 'SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(t);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'synod-release-'));
  release = join(work, 'release');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const t0 = Date.now();
  const r = await run('bash', [join(ROOT, 'scripts/release.sh'), release], { env, cwd: ROOT, timeoutMs: BUILD_TIMEOUT_MS });
  buildSeconds = (Date.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`scripts/release.sh failed (exit ${r.code}) after ${buildSeconds} s\n${r.stdout}\n${r.stderr}`);
  process.stdout.write(`release build: ${buildSeconds.toFixed(1)} s\n`);
}, BUILD_TIMEOUT_MS + 10_000);

afterAll(async () => {
  for (const { proc } of procs.reverse()) await stop(proc);
  if (work && !process.env.SYNOD_KEEP_TEST_DIRS) await rm(work, { recursive: true, force: true });
}, 60_000);

describe('release (scripts/release.sh, the image contents)', () => {
  it('ships proto/, the four entry points and production dependencies only', async () => {
    expect(existsSync(join(release, 'proto/synod/consensus/v1/coordination.proto'))).toBe(true);
    expect(existsSync(join(release, 'proto/synod/lock/v1/lock.proto'))).toBe(true);
    expect(existsSync(join(release, 'proto/synod/txn/v1/txn.proto'))).toBe(true);
    for (const app of ['consensus', 'lock', 'txn', 'cli']) expect(existsSync(join(release, `dist/apps/${app}/src/main.js`))).toBe(true);

    const pkg = JSON.parse(await readFile(join(release, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.type).toBe('module');
    expect(pkg.devDependencies).toBeUndefined();
    const root = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const dep of Object.keys(root.dependencies)) expect(existsSync(join(release, 'node_modules', dep, 'package.json'))).toBe(true);
    for (const dev of ['jest', 'typescript', 'tsx', '@swc/core', '@swc/jest', 'eslint', 'fast-check', 'ts-jest']) {
      expect({ dev, present: existsSync(join(release, 'node_modules', dev)) }).toEqual({ dev, present: false });
    }
    // No source, no tests, no tsconfig path left for node to trip on.
    const files = (await readdir(join(release, 'dist'), { recursive: true })).map(String);
    expect(files.filter((f) => f.endsWith('.ts') || f.includes('.spec.'))).toEqual([]);
    const withAlias: string[] = [];
    for (const f of files.filter((x) => x.endsWith('.js'))) {
      if (/(from|import)\s*\(?\s*['"]@app\//.test(readFileSync(join(release, 'dist', f), 'utf8'))) withAlias.push(f);
    }
    expect(withAlias).toEqual([]);
  });

  it('entrypoint: an unknown or missing command prints the usage and exits 2', async () => {
    const unknown = await run(ENTRYPOINT, ['zookeeper'], { timeoutMs: 10_000 });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'zookeeper'");
    expect(unknown.stderr).toMatch(/usage: entrypoint\.sh <command>[\s\S]*consensus[\s\S]*lock[\s\S]*txn[\s\S]*synodctl/);
    const none = await run(ENTRYPOINT, [], { timeoutMs: 10_000 });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('usage: entrypoint.sh');
  });

  it('has no test hooks: SYNOD_TEST_HOOKS makes a release member refuse to start, with the reason', async () => {
    const files = (await readdir(join(release, 'dist'), { recursive: true })).map(String);
    expect(files.filter((f) => f.includes('member-hooks') || f.includes('libs/testing'))).toEqual([]);
    const r = await run(ENTRYPOINT, ['consensus', '--node-id', '1', '--peers', '1=127.0.0.1:1', '--data-dir', join(work, 'hooks-data')], {
      env: { ...releaseEnv(), SYNOD_TEST_HOOKS: join(work, 'hooks.json') },
      timeoutMs: 20_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('SYNOD_TEST_HOOKS is set');
    expect(r.stderr).toContain('release builds leave them out');
  });

  let clientPort = 0;

  it('a 1-member consensus cluster from the release becomes ready and takes a write through synodctl', async () => {
    clientPort = await freePort();
    const peerPort = await freePort();
    const metricsPort = await freePort();
    const proc = await startService('consensus', [
      'consensus', '--node-id', '1', '--peers', `1=127.0.0.1:${peerPort}`, '--listen-host', '127.0.0.1',
      '--client-port', String(clientPort), '--metrics-port', String(metricsPort), '--data-dir', join(work, 'data-1'),
    ], metricsPort);
    // The entrypoint execs node: the pid we hold is the server's, so SIGTERM from Kubernetes reaches it.
    expect(readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').split('\0')).toContain(join(release, 'dist/apps/consensus/src/main.js'));

    const endpoints = `127.0.0.1:${clientPort}`;
    const created = await run(ENTRYPOINT, ['synodctl', '--endpoints', endpoints, 'create', '/x', 'hello'], { timeoutMs: 30_000 });
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
    expect(created.stdout.trim()).toBe('/x');
    const got = await run(ENTRYPOINT, ['synodctl', '--endpoints', endpoints, 'get', '/x'], { timeoutMs: 30_000 });
    expect({ code: got.code, stdout: got.stdout.trim() }).toEqual({ code: 0, stdout: 'hello' });
  }, 90_000);

  it('the lock service from the release, pointed at the consensus member, becomes ready and grants a lock', async () => {
    expect(clientPort).toBeGreaterThan(0);
    const port = await freePort();
    const metricsPort = await freePort();
    await startService('lock', [
      'lock', '--backend', 'consensus', '--consensus-endpoints', `127.0.0.1:${clientPort}`, '--listen-host', '127.0.0.1',
      '--port', String(port), '--metrics-port', String(metricsPort),
    ], metricsPort);
    const client = new LockClient({ endpoints: [`127.0.0.1:${port}`] });
    try {
      const handle = await client.acquire('release-test', { ttlMs: 10_000, waitMs: 10_000 });
      expect(handle.token).toBeGreaterThan(0);
      expect(await handle.release()).toBe(true);
    } finally {
      client.close();
    }
  }, 90_000);

  it('the transaction coordinator from the release, pointed at the consensus member, becomes ready and begins a transaction', async () => {
    expect(clientPort).toBeGreaterThan(0);
    const port = await freePort();
    const metricsPort = await freePort();
    await startService('txn', [
      'txn', '--consensus-endpoints', `127.0.0.1:${clientPort}`, '--listen-host', '127.0.0.1',
      '--port', String(port), '--metrics-port', String(metricsPort), '--advertise', `127.0.0.1:${port}`,
    ], metricsPort);
    const client = new TxnClient({ endpoints: [`127.0.0.1:${port}`] });
    try {
      const { globalId } = await client.begin({ timeoutMs: 30_000 });
      expect(globalId).toBeTruthy();
      expect(await client.abort(globalId, 'release test')).toBe('ABORTED');
    } finally {
      client.close();
    }
  }, 90_000);
});
