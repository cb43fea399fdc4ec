/**
 * Real-process harness for the lock service: spawns `apps/lock/src/main.ts` (node + tsx) on free loopback
 * ports with the given backend flags, waits until it serves, kills it by pid. Also spawns holder processes
 * (apps/lock/test/holder.ts) for the SIGKILL / SIGSTOP tests. Output goes to a log file in a temp dir, printed
 * when a wait fails.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { loadLockProto } from '@app/proto';
import { ROOT, freePort, sleep, waitFor } from '../../consensus/test/harness.js';
import { childEnv } from '../../../libs/testing/src/servers/process.js';

export { freePort, sleep, waitFor };

const MAIN = join(ROOT, 'apps/lock/src/main.ts');
const HOLDER = join(ROOT, 'apps/lock/test/holder.ts');

/**
 * A service process (the lock service by default; `main` picks another app with the same --listen-host /
 * --port / --metrics-port flags, e.g. apps/txn/src/main.ts) on free loopback ports.
 */
export class LockServiceProcess {
  proc: ChildProcess | undefined;
  port = 0;
  metricsPort = 0;
  private dir = '';
  private log: WriteStream | undefined;
  private exited: Promise<unknown> | undefined;

  constructor(
    private readonly args: string[],
    private readonly main: string = MAIN,
    private readonly env: Record<string, string> = {},
  ) {}

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  get metricsUrl(): string {
    return `http://127.0.0.1:${this.metricsPort}/metrics`;
  }

  get logText(): string {
    try {
      return readFileSync(join(this.dir, 'service.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async start(): Promise<void> {
    if (!this.dir) this.dir = await mkdtemp(join(tmpdir(), 'synod-lock-'));
    if (!this.port) this.port = await freePort();
    if (!this.metricsPort) this.metricsPort = await freePort();
    const args = ['--import', 'tsx', this.main, '--listen-host', '127.0.0.1', '--port', String(this.port), '--metrics-port', String(this.metricsPort), ...this.args];
    const proc = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(this.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.log = createWriteStream(join(this.dir, 'service.log'), { flags: 'a' });
    proc.stdout!.pipe(this.log, { end: false });
    proc.stderr!.pipe(this.log, { end: false });
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', r));
    try {
      await waitFor(`service ${this.main.split('/').slice(-3).join('/')} on ${this.endpoint}`, async () => {
        if (proc.exitCode !== null) throw new Error(`exited with ${proc.exitCode}`);
        const r = await fetch(`http://127.0.0.1:${this.metricsPort}/readyz`).catch(() => undefined);
        return r?.ok === true;
      }, 30_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- service log ---\n${this.logText}`);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    process.kill(p.pid!, signal);
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') return;
    const t = setTimeout(() => p.exitCode === null && p.signalCode === null && process.kill(p.pid!, 'SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
    this.proc = undefined;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid!, 'SIGCONT');
      } catch {
        // gone
      }
    }
    await this.kill('SIGKILL');
    this.log?.end();
    if (this.dir && !process.env.SYNOD_KEEP_TEST_DIRS) await rm(this.dir, { recursive: true, force: true });
  }

  async metric(name: string): Promise<number> {
    const text = await (await fetch(this.metricsUrl)).text();
    let sum = 0;
    let found = false;
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([\d.eE+-]+|NaN)$/.exec(line);
      if (m && m[1] === name) {
        sum += Number(m[3]);
        found = true;
      }
    }
    if (!found) throw new Error(`metric ${name} not found at ${this.metricsUrl}`);
    return sum;
  }
}

/** A raw gRPC client of the Lock service, for tests of the wire protocol and bad input. */
export function rawLockClient(endpoint: string): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
  const Ctor = loadLockProto().Lock;
  return new Ctor(endpoint, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
}

/** A separate process holding a lock (apps/lock/test/holder.ts): its stdout lines as they come. */
export class HolderProcess {
  readonly lines: string[] = [];
  proc!: ChildProcess;
  private exited!: Promise<unknown>;

  static async start(endpoint: string, name: string, ttlMs: number): Promise<HolderProcess> {
    const h = new HolderProcess();
    h.proc = spawn(process.execPath, ['--import', 'tsx', HOLDER, endpoint, name, String(ttlMs)], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    h.exited = new Promise((r) => h.proc.once('exit', r));
    createInterface({ input: h.proc.stdout! }).on('line', (l) => h.lines.push(l));
    let err = '';
    h.proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await waitFor('holder granted', () => {
      if (h.proc.exitCode !== null) throw new Error(`holder exited ${h.proc.exitCode}: ${err}`);
      return h.lines.some((l) => l.startsWith('GRANTED'));
    }, 30_000);
    return h;
  }

  get token(): number {
    return Number(this.lines.find((l) => l.startsWith('GRANTED'))!.split(' ')[1]);
  }

  signal(sig: NodeJS.Signals): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) process.kill(this.proc.pid!, sig);
  }

  async stop(): Promise<void> {
    this.signal('SIGCONT');
    this.signal('SIGKILL');
    await this.exited;
  }
}

export { LockServiceProcess as ServiceProcess };
export const TXN_MAIN = join(ROOT, 'apps/txn/src/main.ts');
