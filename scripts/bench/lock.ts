/**
 * `npm run bench -- lock`: the lock service (apps/lock) over each backend — consensus (3-member Synod), etcd
 * (3-member etcd 3.4), redis (one Redis), redlock (three independent Redis), postgres (one PostgreSQL 15) —
 * driven over real gRPC by libs/client's LockClient, side by side, in the same run and on the same servers,
 * with two references that do not go through the lock service:
 *
 * - **etcd's own lock** (the anchor): the etcd server's v3lock service, `/v3lockpb.Lock/Lock` and `/Unlock`,
 *   called with a raw grpc-js client and hand-encoded messages, one lease per client granted once
 *   (`/etcdserverpb.Lease/LeaseGrant`), as etcd's concurrency.Session does. Measured before AND after the
 *   other subjects; the ratios use the mean of the two (their drift shows how steady the machine was).
 * - **the `redlock` npm package** (v5 beta) on the same three Redis servers: the anchor of the redlock backend.
 * - the `etcd3` npm package's lock recipe (lease grant + create-if-absent txn; release = lease revoke),
 *   uncontended only: it does not wait for a held lock (it fails at once), so it has no contended figure.
 *
 * Per subject: (a) uncontended — one client, acquire + release of a fresh lock name in a loop: p50/p99 of the
 * round, rounds/s; (b) contended — `--clients` workers (each its own LockClient / lease) on `--names` lock
 * names, each looping acquire (wait) → hold (`--hold-ms`; 0 = one event-loop turn) → release: grants/s and
 * p50/p99 of the wait (call → grant); (c) for the lock service's queue backends, the herd gauge: the delta of
 * `synod_lock_wakeups_total` / `synod_lock_releases_total` on the service's /metrics over the contended run.
 *
 * Correctness is checked while measuring: a grant on a name whose previous holder has not yet sent its
 * release is an overlap (counted; must be 0 for every queue backend and etcd; RedLock's safety rests on timing),
 * fencing tokens must grow per name in the order the grants reach the client, and errors, timeouts and failed
 * releases are counted. Every loop is bounded in count and in time; every process is stopped by pid at the
 * end, on an error and on Ctrl-C. Last line: one JSON object.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Command, Option } from 'commander';
import { Redis } from 'ioredis';
import { Etcd3 } from 'etcd3';
import { LockClient } from '@app/client';
import { LockServiceProcess } from '../../apps/lock/test/harness.js';
import { PostgresServer } from '../../libs/testing/src/servers/postgres.js';
import { RedisServers } from '../../libs/testing/src/servers/redis.js';
import { EtcdCluster, RawClient, SynodCluster, etcdVersion, installSignalCleanup, pbBytes, pbDecode, pbNum, pbVarint } from './clusters.js';
import { elapsedUs, f2, filesystemOf, firstLine, Histogram, latencyHistogram, loadAverage, machineConditions, nonNegativeInt, p50, p99, pkgVersion, positiveInt, rate, round, sleep } from './common.js';

interface LockBenchOptions {
  duration: number;
  uncontendedDuration: number;
  warmup: number;
  clients: number;
  names: number;
  holdMs: number;
  ttlMs: number;
  waitMs: number;
  only: string;
}

export function lockCommand(): Command {
  return new Command('lock')
    .description('lock service over each backend (consensus, etcd, redis, redlock, postgres) vs. etcd\'s own lock (v3lock) and the redlock npm package, same run, same servers')
    .addOption(new Option('--duration <s>', 'measured seconds of each contended run').default(8).argParser(positiveInt))
    .addOption(new Option('--uncontended-duration <s>', 'measured seconds of each uncontended run').default(4).argParser(positiveInt))
    .addOption(new Option('--warmup <s>', 'seconds before each measured window, same load, not counted').default(1).argParser(nonNegativeInt))
    .addOption(new Option('--clients <n>', 'concurrent clients of the contended runs').default(64).argParser(positiveInt))
    .addOption(new Option('--names <n>', 'lock names the contended clients share (client i uses name i mod n)').default(8).argParser(positiveInt))
    .addOption(new Option('--hold-ms <ms>', 'hold time of each grant in the contended runs (0 = one event-loop turn)').default(0).argParser(nonNegativeInt))
    .addOption(new Option('--ttl-ms <ms>', 'lease TTL of every grant (service, redlock npm; etcd\'s own lock: one lease per client for the whole run)').default(10_000).argParser(positiveInt))
    .addOption(new Option('--wait-ms <ms>', 'how long one acquire may wait before it counts as a timeout').default(10_000).argParser(positiveInt))
    .addOption(new Option('--only <list>', 'comma-separated subset of: consensus, etcd, redis, redlock, postgres, redlock_npm, etcd3_recipe (etcd\'s own lock always runs: it is the anchor)').default(''))
    .action(async (o: LockBenchOptions) => {
      await runLockBench(o);
    });
}


/** Settles with `p`, or rejects after `ms` (the timer is cleared either way). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);

// ---- the subjects ---------------------------------------------------------------------------------------------

interface Held {
  /** Fencing token, when the subject gives one. */
  token?: number;
  release(): Promise<void>;
}

interface LockWorker {
  /** undefined: not granted within waitMs. */
  acquire(name: string, waitMs: number): Promise<Held | undefined>;
  close(): Promise<void>;
}

interface Subject {
  /** JSON key prefix. */
  key: string;
  label: string;
  /** Has a contended run. */
  contended: boolean;
  /** Has a FIFO queue (tokens must grow, the herd gauge applies). */
  queue: boolean;
  service?: LockServiceProcess;
  worker(i: number): Promise<LockWorker>;
}

/** A LockClient of one lock-service process. */
function serviceSubject(key: string, service: LockServiceProcess, ttlMs: number, queue: boolean): Subject {
  return {
    key,
    label: `lock service, ${key} backend`,
    contended: true,
    queue,
    service,
    worker: async () => {
      const c = new LockClient({ endpoints: [service.endpoint] });
      return {
        acquire: async (name, waitMs) => {
          const h = await c.tryAcquire(name, { ttlMs, waitMs, signal: AbortSignal.timeout(waitMs + 5000) });
          return h && { token: h.token, release: async () => void (await h.release()) };
        },
        close: async () => c.close(),
      };
    },
  };
}

// etcd's own lock: v3lockpb (etcd 3.4 server/etcdserver/api/v3lock/v3lockpb/v3lock.proto) and the lease calls.
const V3LOCK_LOCK = '/v3lockpb.Lock/Lock';
const V3LOCK_UNLOCK = '/v3lockpb.Lock/Unlock';
const LEASE_GRANT = '/etcdserverpb.Lease/LeaseGrant';
const LEASE_REVOKE = '/etcdserverpb.Lease/LeaseRevoke';

/** LeaseGrantRequest {TTL = 1, ID = 2 (0: the server picks)} → LeaseGrantResponse {header = 1, ID = 2, TTL = 3, error = 4}. */
async function leaseGrant(c: RawClient, ttlS: number): Promise<bigint> {
  const r = pbDecode(await c.call(LEASE_GRANT, pbVarint(1, ttlS), 5000));
  const id = (r.get(2)?.[0] as bigint | undefined) ?? 0n;
  if (id === 0n || pbNum(r, 3) !== ttlS) throw new Error(`LeaseGrant: unexpected answer (ID ${id}, TTL ${pbNum(r, 3)})`);
  return id;
}

function etcdNativeSubject(key: string, clients: RawClient[], leaseTtlS: number): Subject {
  return {
    key,
    label: "etcd's own lock (v3lock Lock/Unlock, raw gRPC)",
    contended: true,
    queue: true,
    worker: async (i) => {
      const c = clients[i % clients.length];
      const lease = await leaseGrant(c, leaseTtlS);
      return {
        acquire: async (name, waitMs) => {
          // LockRequest {name = 1 (bytes), lease = 2 (int64)} → LockResponse {header = 1, key = 2}
          let resp: Buffer;
          try {
            resp = await c.call(V3LOCK_LOCK, Buffer.concat([pbBytes(1, name), pbVarint(2, lease)]), waitMs);
          } catch (e) {
            if ((e as { code?: number }).code === 4) return undefined; // DEADLINE_EXCEEDED: not granted within waitMs
            throw e;
          }
          const k = pbDecode(resp).get(2)?.[0] as Buffer | undefined;
          if (!k || k.length === 0) throw new Error('v3lock Lock: no key in the answer');
          // UnlockRequest {key = 1}
          return { release: async () => void (await c.call(V3LOCK_UNLOCK, pbBytes(1, k), 5000)) };
        },
        close: async () => void (await c.call(LEASE_REVOKE, pbVarint(1, lease), 5000).catch(() => undefined)),
      };
    },
  };
}

/** The etcd3 npm package's lock recipe (etcd3 Lock: lease grant + txn create-if-absent; release = revoke). */
function etcd3RecipeSubject(hosts: string[], ttlS: number): Subject {
  return {
    key: 'etcd3_recipe',
    label: 'etcd3 npm lock recipe (lease + txn, no wait)',
    contended: false,
    queue: false,
    worker: async () => {
      const client = new Etcd3({ hosts: hosts.map((h) => `http://${h}`) });
      return {
        acquire: async (name) => {
          const l = client.lock(name).ttl(ttlS);
          await within(l.acquire(), 10_000, 'etcd3 lock acquire');
          return { release: async () => void (await within(l.release(), 10_000, 'etcd3 lock release')) };
        },
        close: async () => client.close(),
      };
    },
  };
}

/** The few members of the redlock v5 beta API used here (its package.json "exports" hides its typings from NodeNext resolution). */
interface RedlockLock {
  release(): Promise<unknown>;
}
interface RedlockSettings {
  driftFactor?: number;
  retryCount?: number;
  retryDelay?: number;
  retryJitter?: number;
}
interface RedlockInstance {
  acquire(resources: string[], duration: number, settings?: RedlockSettings): Promise<RedlockLock>;
  on(event: 'error', f: (e: unknown) => void): void;
}
type RedlockCtor = new (clients: Redis[], settings?: RedlockSettings) => RedlockInstance;

async function loadRedlock(): Promise<RedlockCtor> {
  const specifier = 'redlock';
  const mod = (await import(specifier)) as { default: RedlockCtor };
  return mod.default;
}

/** One Redlock over the three Redis servers, shared by all workers (the backend, too, shares one connection per server). */
function redlockNpmSubject(Redlock: RedlockCtor, urls: string[], ttlMs: number, redisClients: Redis[]): Subject {
  let shared: RedlockInstance | undefined;
  return {
    key: 'redlock_npm',
    label: 'redlock npm package (v5 beta), same 3 Redis',
    contended: true,
    queue: false,
    worker: async () => {
      if (!shared) {
        for (const u of urls) redisClients.push(new Redis(u, { commandTimeout: 2000, maxRetriesPerRequest: 1, lazyConnect: false }));
        // Same retry shape as the redlock backend: mean 100 ms, uniform in [50, 150] ms; drift factor 0.01.
        shared = new Redlock(redisClients, { driftFactor: 0.01, retryDelay: 100, retryJitter: 50 });
        shared.on('error', () => undefined); // failed votes while contended are expected; errors are counted by the caller
      }
      const rl = shared;
      return {
        acquire: async (name, waitMs) => {
          try {
            const lock = await within(rl.acquire([`bench:redlock-npm:${name}`], ttlMs, { retryCount: Math.floor(waitMs / 100) }), waitMs + 5000, 'redlock acquire');
            return { release: async () => void (await within(lock.release(), 5000, 'redlock release')) };
          } catch (e) {
            if ((e as Error).name === 'ExecutionError') return undefined; // every attempt lost the vote: not granted within waitMs
            throw e;
          }
        },
        close: async () => undefined,
      };
    },
  };
}

// ---- the runs -------------------------------------------------------------------------------------------------

interface Uncontended {
  rounds: number;
  seconds: number;
  hist: Histogram;
  errors: number;
  timeouts: number;
  firstError?: string;
  cpu: number;
}

interface Contended {
  grants: number;
  seconds: number;
  wait: Histogram;
  errors: number;
  timeouts: number;
  releaseErrors: number;
  overlaps: number;
  tokenRegressions: number;
  firstError?: string;
  minPerClient: number;
  maxPerClient: number;
  wakeups?: number;
  releases?: number;
  cpu: number;
  drainS: number;
}

const MAX_ITERATIONS = 2_000_000;
let runSeq = 0;

function cpuShare(c0: NodeJS.CpuUsage, t0: number): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / Math.max(1, Date.now() - t0);
}

async function runUncontended(s: Subject, o: LockBenchOptions): Promise<Uncontended> {
  const run = `${process.pid}-${++runSeq}`;
  const w = await s.worker(0);
  const hist = latencyHistogram();
  const r: Uncontended = { rounds: 0, seconds: 0, hist, errors: 0, timeouts: 0, cpu: 0 };
  const start = Date.now();
  const warmEnd = start + o.warmup * 1000;
  const end = warmEnd + o.uncontendedDuration * 1000;
  const c0 = process.cpuUsage();
  try {
    for (let i = 0; i < MAX_ITERATIONS && Date.now() < end; i++) {
      const opStart = Date.now();
      const t = process.hrtime.bigint();
      try {
        const held = await w.acquire(`bench/u/${s.key}/${run}/${i}`, o.waitMs);
        if (!held) {
          r.timeouts++;
          continue;
        }
        await held.release();
        const us = elapsedUs(t);
        if (opStart >= warmEnd) {
          hist.recordValue(Math.max(1, Math.round(us)));
          r.rounds++;
        }
      } catch (e) {
        r.errors++;
        r.firstError ??= errText(e);
        await sleep(10);
      }
    }
    r.seconds = Math.max(0.001, (Date.now() - warmEnd) / 1000);
    r.cpu = cpuShare(c0, start);
  } finally {
    await w.close().catch(() => undefined);
  }
  return r;
}

async function runContended(s: Subject, o: LockBenchOptions): Promise<Contended> {
  const run = `${process.pid}-${++runSeq}`;
  const names = Array.from({ length: o.names }, (_, j) => `bench/c/${s.key}/${run}/${j}`);
  const state = new Map(names.map((n) => [n, { inside: 0, lastToken: -Infinity }]));
  const workers: LockWorker[] = [];
  const wait = latencyHistogram();
  const r: Contended = { grants: 0, seconds: o.duration, wait, errors: 0, timeouts: 0, releaseErrors: 0, overlaps: 0, tokenRegressions: 0, minPerClient: 0, maxPerClient: 0, cpu: 0, drainS: 0 };
  try {
    for (let i = 0; i < o.clients; i++) workers.push(await s.worker(i));
    const herd0 = s.service && s.queue ? { w: await s.service.metric('synod_lock_wakeups_total'), r: await s.service.metric('synod_lock_releases_total') } : undefined;
    const perClient = new Array<number>(o.clients).fill(0);
    const start = Date.now();
    const warmEnd = start + o.warmup * 1000;
    const end = warmEnd + o.duration * 1000;
    const c0 = process.cpuUsage();
    await Promise.all(
      workers.map(async (w, i) => {
        const name = names[i % names.length];
        const st = state.get(name)!;
        for (let it = 0; it < MAX_ITERATIONS && Date.now() < end; it++) {
          const t = process.hrtime.bigint();
          let held: Held | undefined;
          try {
            held = await w.acquire(name, o.waitMs);
          } catch (e) {
            r.errors++;
            r.firstError ??= errText(e);
            await sleep(10);
            continue;
          }
          if (!held) {
            r.timeouts++;
            continue;
          }
          const at = Date.now();
          if (st.inside > 0) r.overlaps++;
          st.inside++;
          if (held.token !== undefined) {
            if (s.queue && held.token <= st.lastToken) r.tokenRegressions++;
            st.lastToken = Math.max(st.lastToken, held.token);
          }
          if (at >= warmEnd && at <= end) {
            r.grants++;
            perClient[i]++;
            wait.recordValue(Math.max(1, Math.round(elapsedUs(t))));
          }
          // Hold: at least one event-loop turn, so that a second grant of this name arriving meanwhile is seen.
          if (o.holdMs > 0) await sleep(o.holdMs);
          else await new Promise<void>((res) => setImmediate(res));
          st.inside--;
          try {
            await held.release();
          } catch (e) {
            r.releaseErrors++;
            r.firstError ??= `release: ${errText(e)}`;
          }
        }
      }),
    );
    r.drainS = Math.max(0, (Date.now() - end) / 1000);
    r.cpu = cpuShare(c0, start);
    r.minPerClient = Math.min(...perClient);
    r.maxPerClient = Math.max(...perClient);
    if (herd0 && s.service) {
      await sleep(200); // the last releases' wake-ups
      r.wakeups = (await s.service.metric('synod_lock_wakeups_total')) - herd0.w;
      r.releases = (await s.service.metric('synod_lock_releases_total')) - herd0.r;
    }
  } finally {
    await Promise.allSettled(workers.map((w) => w.close()));
  }
  return r;
}

// ---- the benchmark ------------------------------------------------------------------------------------------


async function runLockBench(o: LockBenchOptions): Promise<void> {
  const out = (s = ''): void => console.log(s);
  const t0 = Date.now();
  const only = new Set(o.only.split(',').map((x) => x.trim()).filter(Boolean));
  const want = (k: string): boolean => only.size === 0 || only.has(k);

  // Ctrl-C: the lock services and the Redis servers are not in clusters.ts's registry; this handler kills them by
  // pid and removes their temp dirs first (listeners run in registration order), then installSignalCleanup's
  // handler kills the Synod and etcd members and exits, and PostgresServer's exit hook kills the postmaster by pid.
  const services = new Map<string, LockServiceProcess>();
  let redis: RedisServers | undefined;
  let pg: PostgresServer | undefined;
  const killByPid = (pid: number | undefined): void => {
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  const killChildren = (): void => {
    for (const s of services.values()) {
      if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) killByPid(s.proc.pid);
      const dir = (s as unknown as { dir?: string }).dir; // the harness's private log dir
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    for (const r of redis?.servers ?? []) {
      killByPid(r.pid);
      rmSync(r.dir, { recursive: true, force: true });
    }
  };
  process.once('SIGINT', killChildren);
  process.once('SIGTERM', killChildren);
  installSignalCleanup();

  const synod = new SynodCluster([]);
  const etcd = new EtcdCluster();
  const raw: RawClient[] = [];
  const redisClients: Redis[] = [];
  try {
    out('# lock benchmark: the lock service over each backend vs. etcd\'s own lock and the redlock npm package, same run, same servers');
    out();
    out('conditions:');
    for (const c of machineConditions()) out(`  ${c}`);
    out(`  ${await etcdVersion()}; ${firstLine('redis-server', ['--version'])}; ${firstLine('/usr/lib/postgresql/15/bin/postgres', ['--version'])}`);
    out(`  npm: redlock ${pkgVersion('redlock')}, ioredis ${pkgVersion('ioredis')}, etcd3 ${pkgVersion('etcd3')}, @grpc/grpc-js ${pkgVersion('@grpc/grpc-js')}; commit ${firstLine('git', ['rev-parse', '--short', 'HEAD'])}`);
    out('  servers, all on 127.0.0.1, all running during every measurement: Synod 3 members (defaults), etcd 3 members (defaults: heartbeat 100 ms,');
    out('    election 1000 ms), 3 independent redis-server (no persistence), 1 PostgreSQL 15 (fsync on); one lock-service process per backend');
    out(`  data dirs in ${tmpdir()}: ${filesystemOf(tmpdir())}`);
    out(`  uncontended: 1 client, fresh lock name per round, ${o.warmup} s warm-up + ${o.uncontendedDuration} s measured`);
    out(`  contended: ${o.clients} clients on ${o.names} names, hold ${o.holdMs === 0 ? 'one event-loop turn' : `${o.holdMs} ms`}, ${o.warmup} s warm-up + ${o.duration} s measured; TTL ${o.ttlMs} ms, wait ≤ ${o.waitMs} ms`);
    out();

    const startT = Date.now();
    const started = await Promise.allSettled([RedisServers.start(3), PostgresServer.start(), synod.start(), etcd.start()]);
    if (started[0].status === 'fulfilled') redis = started[0].value;
    if (started[1].status === 'fulfilled') pg = started[1].value;
    const failed = started.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed || !redis || !pg) throw failed?.reason ?? new Error('start-up failed');
    const synodEps = synod.ids.map((i) => synod.clientAddress(i));
    const eLeader = await etcd.leader();
    const etcdEps = [eLeader, ...etcd.ids.filter((i) => i !== eLeader)].map((i) => etcd.clientAddress(i));
    const args: Record<string, string[]> = {
      consensus: ['--backend', 'consensus', '--consensus-endpoints', synodEps.join(',')],
      etcd: ['--backend', 'etcd', '--etcd-endpoints', etcdEps.join(',')],
      redis: ['--backend', 'redis', '--redis-url', redis.urls[0]],
      redlock: ['--backend', 'redlock', '--redlock-urls', redis.urls.join(',')],
      postgres: ['--backend', 'postgres', '--postgres-url', pg.connectionString],
    };
    for (const [k, a] of Object.entries(args)) if (want(k)) services.set(k, new LockServiceProcess([...a, '--log-level', 'warn']));
    await Promise.all([...services.values()].map((s) => s.start()));
    out(`started in ${((Date.now() - startT) / 1000).toFixed(1)} s: Synod pids ${synod.ids.map((i) => synod.pid(i)).join(',')}, etcd pids ${etcd.ids.map((i) => etcd.pid(i)).join(',')} (leader e${eLeader}),`);
    out(`  redis pids ${redis.servers.map((s) => s.pid).join(',')}, postgres pid ${pg.pid}, lock services ${[...services].map(([k, s]) => `${k} ${s.proc?.pid}`).join(', ')}`);
    out(`  ${loadAverage()} (after start-up)`);
    out();

    for (const ep of etcdEps) raw.push(new RawClient(ep));
    const leaseTtlS = Math.ceil((2 * o.warmup + o.duration + o.uncontendedDuration) + o.waitMs / 1000 + 60);
    const anchor = etcdNativeSubject('etcd_native', raw, leaseTtlS);
    const subjects: Subject[] = [];
    if (want('etcd3_recipe')) subjects.push(etcd3RecipeSubject(etcdEps, Math.max(2, Math.ceil(o.ttlMs / 1000))));
    for (const k of ['consensus', 'etcd', 'redis', 'postgres', 'redlock']) {
      const s = services.get(k);
      if (s) subjects.push(serviceSubject(k, s, o.ttlMs, k !== 'redlock'));
    }
    if (want('redlock_npm')) subjects.push(redlockNpmSubject(await loadRedlock(), redis.urls, o.ttlMs, redisClients));

    interface Row {
      s: Subject;
      u: Uncontended;
      c?: Contended;
      load: string;
    }
    const rows: Row[] = [];
    const measure = async (s: Subject, tag = ''): Promise<Row> => {
      const u = await runUncontended(s, o);
      const c = s.contended ? await runContended(s, o) : undefined;
      const row = { s, u, c, load: loadAverage() };
      const name = `${s.key}${tag}`;
      out(`${name.padEnd(18)} uncontended: ${rate(u.rounds / u.seconds).padStart(6)} rounds/s, p50 ${f2(p50(u.hist))} ms, p99 ${f2(p99(u.hist))} ms, max ${f2(u.hist.maxValue / 1000)} ms; ` +
        `${u.errors} errors, ${u.timeouts} timeouts; bench CPU ${(u.cpu * 100).toFixed(0)} %`);
      if (u.firstError) out(`${''.padEnd(18)}   first error: ${u.firstError}`);
      if (c) {
        const herd = c.wakeups !== undefined && c.releases ? `, wake-ups/release ${f2(c.wakeups / c.releases)} (${c.wakeups}/${c.releases})` : '';
        out(`${''.padEnd(18)} contended:   ${rate(c.grants / c.seconds).padStart(6)} grants/s, wait p50 ${f2(p50(c.wait))} ms, p99 ${f2(p99(c.wait))} ms, max ${f2(c.wait.maxValue / 1000)} ms; ` +
          `grants per client ${c.minPerClient}..${c.maxPerClient}; overlaps ${c.overlaps}, token regressions ${s.queue ? c.tokenRegressions : 'n/a'}, ` +
          `${c.errors} errors, ${c.timeouts} timeouts, ${c.releaseErrors} failed releases${herd}; drain ${c.drainS.toFixed(1)} s; bench CPU ${(c.cpu * 100).toFixed(0)} %`);
        if (c.firstError) out(`${''.padEnd(18)}   first error: ${c.firstError}`);
      }
      out(`${''.padEnd(18)} (${row.load})`);
      return row;
    };

    const before = await measure(anchor, ' (before)');
    for (const s of subjects) rows.push(await measure(s));
    const after = await measure(anchor, ' (after)');

    // ---- the anchor: mean of before and after ----
    const aP50 = (p50(before.u.hist) + p50(after.u.hist)) / 2;
    const aP99 = (p99(before.u.hist) + p99(after.u.hist)) / 2;
    const aURate = (before.u.rounds / before.u.seconds + after.u.rounds / after.u.seconds) / 2;
    const aOps = (before.c!.grants / before.c!.seconds + after.c!.grants / after.c!.seconds) / 2;
    const aWaitP50 = (p50(before.c!.wait) + p50(after.c!.wait)) / 2;
    const aWaitP99 = (p99(before.c!.wait) + p99(after.c!.wait)) / 2;
    const drift = (a: number, b: number): string => `${b >= a ? '+' : ''}${(((b - a) / a) * 100).toFixed(0)} %`;
    out();
    out(`anchor (etcd's own lock), before → after: uncontended p50 ${f2(p50(before.u.hist))} → ${f2(p50(after.u.hist))} ms (${drift(p50(before.u.hist), p50(after.u.hist))}), ` +
      `contended ${rate(before.c!.grants / before.c!.seconds)} → ${rate(after.c!.grants / after.c!.seconds)} grants/s (${drift(before.c!.grants / before.c!.seconds, after.c!.grants / after.c!.seconds)}); the ratios use the mean`);
    out();

    const npm = rows.find((r) => r.s.key === 'redlock_npm');
    const json: Record<string, number | string | null> = {};
    json.etcd_native_uncontended_p50_ms = round(aP50);
    json.etcd_native_uncontended_p99_ms = round(aP99);
    json.etcd_native_uncontended_ops = Math.round(aURate);
    json.etcd_native_contended_ops = Math.round(aOps);
    json.etcd_native_contended_wait_p50_ms = round(aWaitP50);
    json.etcd_native_contended_wait_p99_ms = round(aWaitP99);
    json.etcd_native_overlaps = before.c!.overlaps + after.c!.overlaps;
    json.etcd_native_errors = before.u.errors + after.u.errors + before.c!.errors + after.c!.errors + before.c!.releaseErrors + after.c!.releaseErrors;
    json.etcd_native_timeouts = before.u.timeouts + after.u.timeouts + before.c!.timeouts + after.c!.timeouts;

    out('| subject | uncontended p50 / p99 | rounds/s | p50 ÷ etcd own lock | contended grants/s | wait p50 / p99 | grants/s ÷ etcd own lock | wake-ups per release | overlaps | errors / timeouts |');
    out('|---|---|---|---|---|---|---|---|---|---|');
    out(`| **etcd's own lock** (anchor, mean of before/after) | ${f2(aP50)} / ${f2(aP99)} ms | ${rate(aURate)} | 1 | ${rate(aOps)} | ${f2(aWaitP50)} / ${f2(aWaitP99)} ms | 1 | n/a (waits on its predecessor's key only) | ${json.etcd_native_overlaps} | ${json.etcd_native_errors} / ${json.etcd_native_timeouts} |`);
    for (const { s, u, c } of rows) {
      const k = s.key;
      const uP50 = p50(u.hist);
      const ops = c ? c.grants / c.seconds : NaN;
      const wpr = c && c.wakeups !== undefined && c.releases ? c.wakeups / c.releases : NaN;
      json[`${k}_uncontended_p50_ms`] = round(uP50);
      json[`${k}_uncontended_p99_ms`] = round(p99(u.hist));
      json[`${k}_uncontended_ops`] = Math.round(u.rounds / u.seconds);
      json[`${k}_uncontended_p50_ratio`] = round(uP50 / aP50);
      if (c) {
        json[`${k}_contended_ops`] = Math.round(ops);
        json[`${k}_contended_wait_p50_ms`] = round(p50(c.wait));
        json[`${k}_contended_wait_p99_ms`] = round(p99(c.wait));
        json[`${k}_contended_ops_ratio`] = round(ops / aOps);
        json[`${k}_overlaps`] = c.overlaps;
        if (s.queue) json[`${k}_token_regressions`] = c.tokenRegressions;
        json[`${k}_timeouts`] = u.timeouts + c.timeouts;
        json[`${k}_min_grants_per_client`] = c.minPerClient;
      }
      json[`${k}_errors`] = u.errors + (c ? c.errors + c.releaseErrors : 0);
      if (s.service) json[`${k}_wakeups_per_release`] = Number.isFinite(wpr) ? round(wpr) : null;
      let vsNpm = '';
      if (k === 'redlock' && npm) {
        const nOps = npm.c ? npm.c.grants / npm.c.seconds : NaN;
        json.redlock_vs_npm_uncontended_p50_ratio = round(uP50 / p50(npm.u.hist));
        json.redlock_vs_npm_contended_ops_ratio = round(ops / nOps);
        vsNpm = ` (${f2(uP50 / p50(npm.u.hist))} × redlock npm)`;
      }
      const opsCell = c ? `${rate(ops)}` : 'n/a (no wait)';
      const vsNpmOps = k === 'redlock' && npm?.c ? ` (${f2(ops / (npm.c.grants / npm.c.seconds))} × redlock npm)` : '';
      out(`| ${s.label} | ${f2(uP50)} / ${f2(p99(u.hist))} ms | ${rate(u.rounds / u.seconds)} | ${f2(uP50 / aP50)}${vsNpm} | ${opsCell} | ${c ? `${f2(p50(c.wait))} / ${f2(p99(c.wait))} ms` : 'n/a'} | ${c ? f2(ops / aOps) : 'n/a'}${vsNpmOps} | ` +
        `${s.service ? (s.queue ? f2(wpr) : 'n/a (no queue)') : 'n/a'} | ${c ? c.overlaps : 'n/a'} | ${u.errors + (c ? c.errors + c.releaseErrors : 0)} / ${u.timeouts + (c ? c.timeouts : 0)} |`);
    }
    json.wakeups_per_release = (json.consensus_wakeups_per_release as number | null | undefined) ?? null;
    json.duration_s = o.duration;
    json.uncontended_duration_s = o.uncontendedDuration;
    json.clients = o.clients;
    json.names = o.names;
    out();
    out('notes: ratios of p50 latency: > 1 = slower than etcd\'s own lock; ratios of grants/s: < 1 = fewer. The benchmark process (all clients)');
    out('  shares the 2 cores with every server and lock service; its own CPU share is printed per run. Overlaps are grants seen by a client while the');
    out('  previous holder of the name had not yet sent its release (0 expected; RedLock\'s exclusion rests on timing); token regressions: a');
    out('  fencing token not above the last one seen for that name (queue backends; not checked for redlock, whose tokens are not safe).');
    out(`at the end: ${loadAverage()}; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    out(JSON.stringify(json));
  } finally {
    for (const c of raw) c.close();
    await Promise.allSettled(redisClients.map((c) => within(c.quit().then(() => undefined), 2000, 'redis quit').catch(() => c.disconnect())));
    await Promise.allSettled([...services.values()].map((s) => s.stop()));
    await Promise.allSettled([synod.stop(), etcd.stop(), redis?.stop(), pg?.stop()]);
    process.off('SIGINT', killChildren);
    process.off('SIGTERM', killChildren);
  }
}
