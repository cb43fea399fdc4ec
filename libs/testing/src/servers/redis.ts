/**
 * Real redis-server processes for tests and benchmarks: `RedisServers.start(n)` spawns n independent
 * `redis-server` processes (Debian package redis-server; `npm run setup` installs it) on free 127.0.0.1 ports,
 * each with its own temp dir and no persistence (no RDB, no AOF), waits until each answers PING, and
 * `stop()` kills each by pid and removes the dirs. `pause(i)` / `resume(i)` send SIGSTOP / SIGCONT (a server
 * that stops answering without closing its connections: the hardest failure for a client). When the binary is
 * missing, `start` throws — tests fail with a clear message, they never skip.
 *
 * Not exported from @app/testing's index: import this file relatively.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { atMost, findBinary, freePort, sleep, trackPid, untrackPid } from './process.js';
import { join } from 'node:path';

export interface RedisServerInfo {
  host: string;
  port: number;
  pid: number;
  /** redis://127.0.0.1:port */
  url: string;
  dir: string;
}

export interface RedisServersOptions {
  /** Extra `--option value` arguments for every server. */
  args?: string[];
  /** How long to wait for one server to answer PING. Default 10 s. */
  startTimeoutMs?: number;
}




export function findRedisServer(): string {
  return findBinary('redis-server', 'REDIS_SERVER', ['/usr/bin/redis-server', '/usr/sbin/redis-server', '/usr/local/bin/redis-server'], 'installs the Debian package redis-server');
}


/** One PING over a raw socket; true on +PONG within `timeoutMs`. */
function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((res) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      res(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

interface Proc {
  info: RedisServerInfo;
  child: ChildProcess;
  exited: Promise<void>;
  hasExited: boolean;
  output: string[];
  paused: boolean;
}

export class RedisServers {
  private constructor(
    private readonly bin: string,
    private readonly procs: Proc[],
  ) {}

  /** Starts `n` servers (in parallel); on any failure stops the ones already started and throws. */
  static async start(n: number, opts: RedisServersOptions = {}): Promise<RedisServers> {
    const bin = findRedisServer();
        const servers = new RedisServers(bin, []);
    const results = await Promise.allSettled(Array.from({ length: n }, () => servers.spawnOne(opts)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await servers.stop();
      throw failed.reason;
    }
    return servers;
  }

  get servers(): RedisServerInfo[] {
    return this.procs.map((p) => p.info);
  }

  get urls(): string[] {
    return this.procs.map((p) => p.info.url);
  }

  get size(): number {
    return this.procs.length;
  }

  server(i: number): RedisServerInfo {
    const p = this.procs[i];
    if (p === undefined) throw new Error(`no redis server #${i} (have ${this.procs.length})`);
    return p.info;
  }

  /** SIGSTOP: the server keeps its sockets open but answers nothing until resume(i). */
  pause(i: number): void {
    const p = this.proc(i);
    process.kill(p.info.pid, 'SIGSTOP');
    p.paused = true;
  }

  /** SIGCONT after pause(i). */
  resume(i: number): void {
    const p = this.proc(i);
    process.kill(p.info.pid, 'SIGCONT');
    p.paused = false;
  }

  /** Kills every server by pid (SIGKILL, also when paused), waits (bounded) for each to exit, removes the dirs. Idempotent. */
  async stop(): Promise<void> {
    const procs = this.procs.splice(0);
    for (const p of procs) {
      if (p.hasExited) continue;
      try {
        process.kill(p.info.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all(procs.map((p) => atMost(p.exited, 5000)));
    for (const p of procs) rmSync(p.info.dir, { recursive: true, force: true });
  }

  private proc(i: number): Proc {
    const p = this.procs[i];
    if (p === undefined) throw new Error(`no redis server #${i} (have ${this.procs.length})`);
    return p;
  }

  /** Spawns one server on a free port; retries with another port when the process exits at once (port raced away). */
  private async spawnOne(opts: RedisServersOptions): Promise<void> {
    const timeoutMs = opts.startTimeoutMs ?? 10_000;
    let lastError = '';
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const dir = await mkdtemp(join(tmpdir(), 'synod-redis-'));
      const child = spawn(
        this.bin,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning', ...(opts.args ?? [])],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      if (child.pid === undefined) {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`could not spawn ${this.bin}: run \`npm run setup\` to install redis-server`);
      }
      const pid = child.pid;
      trackPid(pid);
      const output: string[] = [];
      const keep = (d: Buffer): void => {
        output.push(d.toString('utf8'));
        if (output.length > 50) output.shift();
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      const proc: Proc = {
        info: { host: '127.0.0.1', port, pid, url: `redis://127.0.0.1:${port}`, dir },
        child,
        hasExited: false,
        output,
        paused: false,
        exited: new Promise<void>((res) => {
          child.once('exit', () => {
            proc.hasExited = true;
            untrackPid(pid);
            res();
          });
        }),
      };
      this.procs.push(proc);
      const end = Date.now() + timeoutMs;
      while (!proc.hasExited && Date.now() < end) {
        if (await ping(port, 500)) return;
        await sleep(20);
      }
      lastError = proc.hasExited ? `redis-server on port ${port} exited at once` : `redis-server on port ${port} (pid ${pid}) did not answer PING within ${timeoutMs} ms`;
      lastError += `; its output: ${output.join('').trim().slice(-2000) || '(none)'}`;
      // Stop this one and try another port.
      this.procs.splice(this.procs.indexOf(proc), 1);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await atMost(proc.exited, 5000);
      rmSync(dir, { recursive: true, force: true });
    }
    throw new Error(`could not start redis-server: ${lastError}`);
  }
}
