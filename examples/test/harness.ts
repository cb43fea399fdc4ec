/**
 * Runs one of the example services as a real child process (`node --import tsx examples/<svc>/main.ts ...`),
 * waits (bounded) for its `READY {...}` line, and stops it by pid. Output goes to a log file, printed when a
 * wait fails.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { WriteStream, createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT, waitFor } from '../../apps/consensus/test/harness.js';

export class ExampleService {
  proc: ChildProcess | undefined;
  ready: Record<string, unknown> | undefined;
  private dir = '';
  private log: WriteStream | undefined;
  private exited: Promise<unknown> | undefined;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly args: string[],
  ) {}

  get logText(): string {
    try {
      return readFileSync(join(this.dir, `${this.name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  async start(timeoutMs = 60_000): Promise<void> {
    if (!this.dir) this.dir = await mkdtemp(join(tmpdir(), `synod-example-${this.name}-`));
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, this.script), ...this.args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.ready = undefined;
    this.exited = new Promise((r) => proc.once('exit', r));
    const log = (this.log ??= createWriteStream(join(this.dir, `${this.name}.log`), { flags: 'a' }));
    proc.stderr!.pipe(log, { end: false });
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      log.write(`${l}\n`);
      if (l.startsWith('READY ')) this.ready = JSON.parse(l.slice(6)) as Record<string, unknown>;
    });
    try {
      await waitFor(`${this.name} ready`, () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${this.name} exited (${proc.exitCode ?? proc.signalCode})`);
        return this.ready !== undefined;
      }, timeoutMs, 100);
    } catch (err) {
      await this.kill('SIGKILL');
      throw new Error(`${(err as Error).message}\n--- ${this.name} log ---\n${this.logText}`);
    }
  }

  /** Sends `signal` by pid and waits (bounded: SIGKILL after 10 s) for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p) return;
    if (p.exitCode === null && p.signalCode === null) {
      process.kill(p.pid!, signal);
      const t = setTimeout(() => p.exitCode === null && p.signalCode === null && process.kill(p.pid!, 'SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(t);
    }
    this.proc = undefined;
  }

  /** SIGTERM (a clean Nest shutdown), bounded; then the log directory is removed. */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    this.log?.end();
    this.log = undefined;
    if (this.dir && !process.env.SYNOD_KEEP_TEST_DIRS) await rm(this.dir, { recursive: true, force: true });
  }
}

export interface HttpResult {
  status: number;
  body: Record<string, unknown>;
}

/** A bounded HTTP call with a JSON answer (`body` a string is sent as is, anything else as JSON). */
export async function http(method: string, url: string, body?: unknown, timeoutMs = 30_000): Promise<HttpResult> {
  const r = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await r.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text };
  }
  return { status: r.status, body: parsed };
}
