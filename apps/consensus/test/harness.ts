/**
 * Real-process test harness: spawns `apps/consensus/src/main.ts` (node + the tsx loader) once per member on
 * 127.0.0.1 with free ports and temp data dirs, talks to the members over real gRPC, and kills every child it
 * started by pid. Each member's output goes to <dir>/n<id>.log (printed when a wait fails).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadConsensusProto } from '@app/proto';
import { childEnv, freePort } from '../../../libs/testing/src/servers/process.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const MAIN = join(ROOT, 'apps/consensus/src/main.ts');

/** Fast timings for tests: 10 ms tick, 50 ms heartbeat, 300–600 ms election timeout. */
export const FAST = ['--tick-ms', '10', '--heartbeat-ms', '50', '--election-ms', '300', '--election-max-ms', '600', '--min-session-timeout-ms', '300', '--session-checkpoint-ms', '500'];

export { freePort };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value (or stops throwing); fails after `timeoutMs` with the last error. */
export async function waitFor<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

export type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
export type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A unary call as a promise; rejects with the grpc ServiceError (code, details, metadata). */
export function rpc(client: Client, method: string, req: Msg, timeoutMs = 5000): Promise<Msg> {
  return new Promise((res, rej) => {
    (client[method] as (r: Msg, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => void).call(
      client,
      req,
      { deadline: Date.now() + timeoutMs },
      (err, r) => (err ? rej(err) : res(r)),
    );
  });
}

/** Expects the call to fail with `code`; returns the error. */
export async function rpcError(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (e.code !== code) throw new Error(`expected ${grpc.status[code]}, got ${grpc.status[e.code] ?? e.code}: ${e.details ?? e.message}`);
    return e;
  }
  throw new Error(`expected ${grpc.status[code]}, but the call succeeded`);
}

export interface TlsPaths {
  ca: string;
  cert: string;
  key: string;
}

export interface Member {
  id: number;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  dataDir: string;
  proc?: ChildProcess;
  exited?: Promise<number | null>;
  log: string;
}

export class ProcessCluster {
  readonly members = new Map<number, Member>();
  private dir = '';
  private readonly clients = new Map<string, Client>();
  private readonly logs: WriteStream[] = [];
  /** Extra environment for member `id`'s process (e.g. SYNOD_TEST_HOOKS for the nemesis). */
  memberEnv: (id: number) => Record<string, string> = () => ({});

  constructor(
    readonly ids: number[],
    private readonly extraArgs: string[] = FAST,
    private readonly tls?: TlsPaths,
    private readonly clientCreds?: grpc.ChannelCredentials,
  ) {}

  get baseDir(): string {
    return this.dir;
  }

  /** Allocates ports and dirs for `id` (and for the initial members). */
  async prepare(id: number): Promise<Member> {
    if (!this.dir) this.dir = await mkdtemp(join(tmpdir(), 'synod-consensus-'));
    const m: Member = {
      id,
      clientPort: await freePort(),
      peerPort: await freePort(),
      metricsPort: await freePort(),
      dataDir: join(this.dir, `n${id}`),
      log: join(this.dir, `n${id}.log`),
    };
    this.members.set(id, m);
    return m;
  }

  peersArg(ids: number[] = [...this.members.keys()]): string {
    return ids.map((id) => `${id}=127.0.0.1:${this.members.get(id)!.peerPort}`).join(',');
  }

  clientUrlsArg(ids: number[] = [...this.members.keys()]): string {
    return ids.map((id) => `${id}=127.0.0.1:${this.members.get(id)!.clientPort}`).join(',');
  }

  async start(): Promise<void> {
    for (const id of this.ids) await this.prepare(id);
    for (const id of this.ids) this.spawn(id);
    await Promise.all(this.ids.map((id) => this.waitServing(id)));
  }

  /** Starts member `id`'s process (again). `state` 'existing' for a member joining after AddMember. */
  spawn(id: number, state: 'new' | 'existing' = 'new', peerIds: number[] = this.ids): ChildProcess {
    const m = this.members.get(id)!;
    const args = [
      '--import',
      'tsx',
      MAIN,
      '--node-id', String(id),
      '--peers', this.peersArg(peerIds.includes(id) ? peerIds : [...peerIds, id]),
      '--client-urls', this.clientUrlsArg(peerIds.includes(id) ? peerIds : [...peerIds, id]),
      '--initial-cluster-state', state,
      '--listen-host', '127.0.0.1',
      '--client-port', String(m.clientPort),
      '--metrics-port', String(m.metricsPort),
      '--data-dir', m.dataDir,
      ...this.extraArgs,
    ];
    if (this.tls) args.push('--tls-ca', this.tls.ca, '--tls-cert', this.tls.cert, '--tls-key', this.tls.key);
    const proc = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(this.memberEnv(id)), stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(m.log, { flags: 'a' });
    this.logs.push(out);
    proc.stdout!.pipe(out, { end: false });
    proc.stderr!.pipe(out, { end: false });
    m.proc = proc;
    m.exited = new Promise((r) => proc.once('exit', (code, sig) => r(code ?? (sig ? -1 : null))));
    return proc;
  }

  /** Sends `signal` to member `id`'s process (by pid) and waits for it to exit. */
  async kill(id: number, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 10_000): Promise<void> {
    const m = this.members.get(id)!;
    const p = m.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    process.kill(p.pid!, signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const t = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const outcome = await Promise.race([m.exited!, t]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      process.kill(p.pid!, 'SIGKILL');
      await m.exited;
    }
    m.proc = undefined;
    for (const [k, c] of this.clients) {
      if (k.endsWith(`:${id}`)) {
        c.close();
        this.clients.delete(k);
      }
    }
  }

  async stopAll(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    await Promise.all([...this.members.keys()].map((id) => this.kill(id, 'SIGKILL')));
    for (const l of this.logs) l.end();
    if (this.dir && !process.env.SYNOD_KEEP_TEST_DIRS) await rm(this.dir, { recursive: true, force: true });
  }

  logOf(id: number): string {
    try {
      return readFileSync(this.members.get(id)!.log, 'utf8');
    } catch {
      return '';
    }
  }

  private creds(): grpc.ChannelCredentials {
    return this.clientCreds ?? grpc.credentials.createInsecure();
  }

  coordination(id: number): Client {
    return this.client('Coordination', id);
  }

  cluster(id: number): Client {
    return this.client('Cluster', id);
  }

  private client(kind: 'Coordination' | 'Cluster', id: number): Client {
    const key = `${kind}:${id}`;
    let c = this.clients.get(key);
    if (!c) {
      const Ctor = loadConsensusProto()[kind];
      c = new Ctor(`127.0.0.1:${this.members.get(id)!.clientPort}`, this.creds(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Client;
      this.clients.set(key, c);
    }
    return c;
  }

  async status(id: number, timeoutMs = 2000): Promise<Msg> {
    return rpc(this.cluster(id), 'Status', {}, timeoutMs);
  }

  async waitServing(id: number, timeoutMs = 20_000): Promise<void> {
    await waitFor(`member ${id} to answer Status`, () => this.status(id, 1000), timeoutMs, 100).catch((err: Error) => {
      throw new Error(`${err.message}\n--- log of member ${id} ---\n${this.logOf(id)}`);
    });
  }

  running(): number[] {
    return [...this.members.values()].filter((m) => m.proc).map((m) => m.id);
  }

  /** Waits until every running member reports the same leader (among `ids`); returns it. */
  async waitLeader(ids: number[] = this.running(), timeoutMs = 15_000): Promise<number> {
    return waitFor(
      `one leader agreed by members ${ids.join(', ')}`,
      async () => {
        const st = await Promise.all(ids.map((id) => this.status(id, 1000)));
        const leader = st[0].leader as number;
        if (leader === 0 || !ids.includes(leader)) return undefined;
        return st.every((s) => s.leader === leader && s.term === st[0].term) ? leader : undefined;
      },
      timeoutMs,
    );
  }
}

export const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Opens a Watch stream and collects its responses. */
export class WatchClient {
  readonly responses: Msg[] = [];
  readonly call: grpc.ClientDuplexStream<Msg, Msg>;
  error: grpc.ServiceError | undefined;
  ended = false;

  constructor(client: Client) {
    this.call = (client.Watch as () => grpc.ClientDuplexStream<Msg, Msg>).call(client);
    this.call.on('data', (r: Msg) => this.responses.push(r));
    this.call.on('error', (e: grpc.ServiceError) => (this.error = e));
    this.call.on('end', () => (this.ended = true));
  }

  add(a: Msg): void {
    this.call.write({ add: a });
  }

  remove(watchId: number): void {
    this.call.write({ remove: { watchId } });
  }

  events(watchId?: number): Msg[] {
    return this.responses.flatMap((r) => (r.events ? (r.events.events as Msg[]) : [])).filter((e) => watchId === undefined || e.watchId === watchId);
  }

  async waitFor(what: string, pred: (w: WatchClient) => boolean, timeoutMs = 5000): Promise<void> {
    await waitFor(what, () => pred(this), timeoutMs, 20);
  }

  close(): void {
    this.call.cancel();
  }
}
