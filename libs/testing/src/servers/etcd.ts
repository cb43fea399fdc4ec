/**
 * A real single-member etcd (3.4, Debian package etcd-server; `npm run setup` installs it) for tests:
 * `EtcdServer.start()` spawns `etcd` on free 127.0.0.1 ports (client + peer) with a temp data dir, waits until
 * `GET /health` answers `{"health":"true"}` (the member has elected itself leader and serves), and `stop()`
 * kills it by pid and removes the dir. When the binary is missing, `start` throws — tests fail with a clear
 * message, they never skip.
 *
 * Timings: by default a 25 ms heartbeat and a 250 ms election timeout, so the member is up fast and etcd's
 * minimum lease TTL (ceil(1.5 × election timeout), in whole seconds) is 1 s, as short as etcd allows.
 *
 * Not exported from @app/testing's index: import this file relatively.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { atMost, findBinary, freePort, sleep, trackPid, untrackPid } from './process.js';
import { join } from 'node:path';

export interface EtcdServerOptions {
  /** etcd `--heartbeat-interval`, ms. Default 25. */
  heartbeatMs?: number;
  /** etcd `--election-timeout`, ms. Default 250. */
  electionMs?: number;
  /** Extra command-line arguments. */
  args?: string[];
  /** How long to wait for the member to serve. Default 20 s. */
  startTimeoutMs?: number;
}




export function findEtcd(): string {
  return findBinary('etcd', 'ETCD_BIN', ['/usr/bin/etcd', '/usr/local/bin/etcd'], 'installs Debian etcd-server');
}


/** true when etcd's /health says the member serves (it has a leader), within `timeoutMs`. */
async function healthy(clientPort: number, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${clientPort}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === 'true';
  } catch {
    return false;
  }
}

export class EtcdServer {
  private hasExited = false;

  private constructor(
    child: ChildProcess,
    readonly pid: number,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dir: string,
    private readonly output: string[],
    private readonly exited: Promise<void>,
  ) {
    child.once('exit', () => {
      this.hasExited = true;
    });
  }

  /** The client endpoint, `127.0.0.1:<port>` (what etcd3 and EtcdQueueStore take). */
  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  /** The client URL, `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://${this.endpoint}`;
  }

  get running(): boolean {
    return !this.hasExited;
  }

  /** The last lines etcd printed (for failure messages). */
  logTail(): string {
    return this.output.join('').trim().slice(-4000);
  }

  /** Starts one member; retries on other ports when the process exits at once (a port raced away). Throws when etcd is missing or does not serve in time (after killing it). */
  static async start(opts: EtcdServerOptions = {}): Promise<EtcdServer> {
    const bin = findEtcd();
        const timeoutMs = opts.startTimeoutMs ?? 20_000;
    let lastError = '';
    for (let attempt = 0; attempt < 5; attempt++) {
      const clientPort = await freePort();
      let peerPort = await freePort();
      while (peerPort === clientPort) peerPort = await freePort();
      const dir = await mkdtemp(join(tmpdir(), 'synod-etcd-'));
      const name = 'synod-test';
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const clientUrl = `http://127.0.0.1:${clientPort}`;
      const args = [
        '--name', name,
        '--data-dir', join(dir, 'data'),
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', `${name}=${peerUrl}`,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', `synod-test-${process.pid}-${clientPort}`,
        '--heartbeat-interval', String(opts.heartbeatMs ?? 25),
        '--election-timeout', String(opts.electionMs ?? 250),
        '--logger', 'zap',
        '--log-level', 'warn',
        ...(opts.args ?? []),
      ]; // prettier-ignore
      const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      if (child.pid === undefined) {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`could not spawn ${bin}: etcd not found: run \`npm run setup\` (installs Debian etcd-server)`);
      }
      const pid = child.pid;
      trackPid(pid);
      child.once('error', () => undefined); // reported through 'exit' / the health wait
      const output: string[] = [];
      const keep = (d: Buffer): void => {
        output.push(d.toString('utf8'));
        if (output.length > 100) output.shift();
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      const exited = new Promise<void>((res) => {
        child.once('exit', () => {
          untrackPid(pid);
          res();
        });
      });
      const server = new EtcdServer(child, pid, clientPort, peerPort, dir, output, exited);
      const end = Date.now() + timeoutMs;
      while (server.running && Date.now() < end) {
        if (await healthy(clientPort, 1000)) return server;
        await sleep(25);
      }
      lastError = server.running ? `etcd (pid ${pid}, client port ${clientPort}) did not report healthy within ${timeoutMs} ms` : `etcd (client port ${clientPort}, peer port ${peerPort}) exited at once`;
      lastError += `; its output: ${server.logTail() || '(none)'}`;
      await server.stop();
      if (server.running) break; // could not even kill it: do not start more
    }
    throw new Error(`could not start etcd: ${lastError}`);
  }

  /** Kills the member by pid (SIGKILL), waits (bounded, 5 s) for it to exit, removes its dir. Idempotent. */
  async stop(): Promise<void> {
    if (!this.hasExited) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await atMost(this.exited, 5000);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** SIGSTOP: etcd keeps its sockets open but answers nothing until resume(). */
  pause(): void {
    process.kill(this.pid, 'SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    process.kill(this.pid, 'SIGCONT');
  }
}
