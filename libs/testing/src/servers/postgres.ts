/**
 * A real, throw-away PostgreSQL 15 server for tests (the lock backend `postgres`, 2PC participants).
 *
 * Runs the Debian binaries in /usr/lib/postgresql/15/bin (`npm run setup` installs package postgresql-15).
 * PostgreSQL refuses to run as root, so when the tests run as root, initdb and the server run as the
 * `postgres` OS user (spawned with its uid/gid) in a temp directory owned by that user. The server listens on
 * 127.0.0.1 on a free port (unix socket in the temp directory), trust auth for local and loopback
 * connections, fsync on, max_prepared_transactions=64. `stop()` does `pg_ctl stop -m fast`, SIGKILLs the
 * postmaster by pid if it is still there, and removes the directory. Every wait is bounded.
 *
 * Not exported from @app/testing's index on purpose (it spawns processes): import this file relatively.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, appendFileSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { freePort } from './process.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const MISSING = `PostgreSQL 15 not found in ${PG_BIN}: run \`npm run setup\` (installs package postgresql-15)`;

export interface PostgresServerOptions {
  /** Extra `name = value` lines for postgresql.conf. */
  settings?: Record<string, string | number>;
  /** How long to wait for the server to accept connections (ms, default 30000). */
  startTimeoutMs?: number;
}

interface RunAs {
  uid?: number;
  gid?: number;
  name: string;
}

/** Servers not stopped yet: SIGKILLed (by pid) and their directories removed if the process exits first. */
const live = new Set<PostgresServer>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const s of live) s.killNow();
  });
}

function runAs(): RunAs {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { name: 'current user' };
  const id = (flag: string): number => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8', timeout: 5000 });
    const n = Number(r.stdout?.trim());
    if (r.status !== 0 || !Number.isInteger(n)) throw new Error(`running as root, and PostgreSQL refuses to run as root; the OS user "postgres" (created by package postgresql-15) is missing: run \`npm run setup\``);
    return n;
  };
  return { uid: id('-u'), gid: id('-g'), name: 'postgres' };
}

/** Runs a binary to completion as `user`, bounded by `timeoutMs`; throws with its output on failure. */
function runTool(user: RunAs, bin: string, args: string[], timeoutMs: number): void {
  const r = spawnSync(join(PG_BIN, bin), args, {
    uid: user.uid,
    gid: user.gid,
    cwd: tmpdir(),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' },
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  if (r.error !== undefined) throw new Error(`${bin} ${args.join(' ')} failed: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${(r.stderr || r.stdout || '').trim()}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether a TCP connection to 127.0.0.1:port opens within `timeoutMs`. */
function tcpOpen(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, '127.0.0.1', () => done(true));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class PostgresServer {
  private proc: ChildProcess | undefined;
  private exited: Promise<void>;
  private stopped = false;

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly user: RunAs,
  ) {
    this.exited = Promise.resolve();
  }

  /** The data directory (owned by the server's OS user). */
  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** The unix socket directory. */
  get socketDir(): string {
    return this.dir;
  }

  get host(): string {
    return '127.0.0.1';
  }

  /** The postmaster's pid (undefined once stopped). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Superuser `postgres`, database `postgres`, trust auth. */
  get connectionString(): string {
    return this.connectionStringFor('postgres');
  }

  connectionStringFor(database: string): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  get logFile(): string {
    return join(this.dir, 'postgres.log');
  }

  /** The last `bytes` of the server log (for error messages). */
  logTail(bytes = 4000): string {
    try {
      const text = readFileSync(this.logFile, 'utf8');
      return text.slice(-bytes);
    } catch {
      return '';
    }
  }

  /** initdb + start; resolves once the server accepts connections. Throws (cleaning up) otherwise. */
  static async start(options: PostgresServerOptions = {}): Promise<PostgresServer> {
    for (const bin of ['initdb', 'postgres', 'pg_ctl', 'pg_isready']) if (!existsSync(join(PG_BIN, bin))) throw new Error(MISSING);
    const user = runAs();
    installExitHook();
    let lastError: unknown;
    // A free port can be taken between picking and binding: retry a few times on a fresh port.
    for (let attempt = 0; attempt < 3; attempt++) {
      const dir = mkdtempSync(join(tmpdir(), 'synod-pg-'));
      const server = new PostgresServer(dir, await freePort(), user);
      try {
        await server.boot(options);
        return server;
      } catch (e) {
        lastError = e;
        await server.stop();
        if (!/could not bind|address already in use/i.test(String(e))) break;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }

  private async boot(options: PostgresServerOptions): Promise<void> {
    live.add(this);
    if (this.user.uid !== undefined) chownSync(this.dir, this.user.uid, this.user.gid ?? this.user.uid);
    // --no-sync only skips initdb's final flush of the fresh cluster; the server itself runs with fsync on.
    runTool(this.user, 'initdb', ['-D', this.dataDir, '-U', 'postgres', '--auth=trust', '--no-locale', '-E', 'UTF8', '--no-sync'], 60000);
    const settings: Record<string, string | number> = {
      listen_addresses: "'127.0.0.1'",
      port: this.port,
      unix_socket_directories: `'${this.dir}'`,
      fsync: 'on',
      max_prepared_transactions: 64,
      max_connections: 200,
      logging_collector: 'off',
      ...options.settings,
    };
    appendFileSync(join(this.dataDir, 'postgresql.conf'), '\n# synod test server\n' + Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
    // initdb --auth=trust already trusts local and loopback; state it explicitly.
    appendFileSync(join(this.dataDir, 'pg_hba.conf'), '\nlocal all all trust\nhost all all 127.0.0.1/32 trust\n');

    const log = openSync(this.logFile, 'a');
    if (this.user.uid !== undefined) chownSync(this.logFile, this.user.uid, this.user.gid ?? this.user.uid);
    try {
      this.proc = spawn(join(PG_BIN, 'postgres'), ['-D', this.dataDir], {
        uid: this.user.uid,
        gid: this.user.gid,
        cwd: this.dir,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' },
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    const proc = this.proc;
    this.exited = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      proc.once('exit', () => resolve());
      proc.once('error', () => resolve());
    });
    let spawnError: Error | undefined;
    proc.once('error', (e) => (spawnError = e));

    const deadline = Date.now() + (options.startTimeoutMs ?? 30000);
    while (Date.now() < deadline) {
      if (spawnError !== undefined) throw new Error(`could not spawn postgres: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`postgres exited during start-up (${proc.exitCode ?? proc.signalCode}); log:\n${this.logTail()}`);
      if ((await tcpOpen(this.port, 1000)) && this.ready()) return;
      await sleep(100);
    }
    throw new Error(`postgres did not accept connections on 127.0.0.1:${this.port} within ${options.startTimeoutMs ?? 30000} ms; log:\n${this.logTail()}`);
  }

  /** pg_isready: accepting connections (not still starting up). */
  private ready(): boolean {
    const r = spawnSync(join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', 'postgres', '-t', '2'], { timeout: 5000, encoding: 'utf8' });
    return r.status === 0;
  }

  /** Resolves when the postmaster has exited or after `ms` (the timer does not outlive the wait). */
  private async waitExit(ms: number): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.exited, new Promise<void>((resolve) => (t = setTimeout(resolve, ms)))]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Stops the server (fast shutdown, then SIGKILL by pid) and removes its directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const proc = this.proc;
    if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      try {
        runTool(this.user, 'pg_ctl', ['stop', '-D', this.dataDir, '-m', 'fast', '-w', '-t', '10'], 15000);
      } catch {
        // falls through to SIGKILL
      }
      await this.waitExit(5000);
      if (proc.exitCode === null && proc.signalCode === null && alive(proc.pid)) {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        await this.waitExit(5000);
      }
    }
    this.proc = undefined;
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** Synchronous last resort (process exit): SIGKILL the postmaster by pid, remove the directory. */
  killNow(): void {
    const pid = this.proc?.pid;
    if (pid !== undefined && this.proc?.exitCode === null && this.proc?.signalCode === null) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.stopped = true;
    live.delete(this);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
}
