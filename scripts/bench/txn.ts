/**
 * `npm run bench -- txn`: two-participant transfer transactions through Synod's transaction coordinator
 * (apps/txn) vs. the anchor — native PostgreSQL two-phase commit driven by this process with no coordinator —
 * on the same PostgreSQL databases, the same rows, the same work and the same concurrency, in one run.
 *
 * Started once, all on 127.0.0.1: a 3-member Synod consensus cluster (`SynodCluster`, defaults: the decision
 * log), one PostgreSQL 15 (fsync on) with two databases `bank1` and `bank2` (an `accounts` table each, as in
 * apps/txn/test/bank.ts), two coordinator replicas (real processes; one leads) and two `PostgresParticipant`s
 * (libs/participant, work = bank.ts's `bankWork`), each in its own child process — this same file run with
 * `--participant` — so the participants do not share the benchmark's event loop.
 *
 * Subjects, each at every `--concurrency` (closed loop: N workers, each one transaction at a time):
 * - **native** (the anchor, measured before AND after the Synod runs; the ratios use the mean): per transaction
 *   on a dedicated connection per worker and database: BEGIN; bankWork (SELECT … FOR UPDATE; UPDATE); PREPARE
 *   TRANSACTION 'gid' on both databases in parallel, then COMMIT PREPARED on both in parallel.
 * - **synod** (decision durable): TxnClient Begin, RegisterBranch ×2 (debit on bank1, credit on bank2), Commit;
 *   the latency ends when Commit returns (the COMMITTED record acknowledged by the consensus cluster); phase
 *   two runs in the background.
 * - **synod-wait**: the same with Commit `wait: true` (returns once phase two reached both branches).
 *
 * Worker w transfers 1 from `a<w>_<k>` (bank1) to `b<w>_<k>` (bank2), k cycling over `--accounts-per-worker`
 * accounts, so workers never contend for rows; a Synod transaction may still wait on a row its own worker's
 * previous transaction holds prepared until that one's phase two ends (reported as it happens).
 *
 * Checked while measuring, printed after every run and at the end: the total balance over both databases is
 * conserved, bank2 grew by exactly the number of committed transactions, and pg_prepared_xacts is empty once the
 * run drained. Where the time goes: client-side per-step latencies (Begin / RegisterBranch / Commit), the
 * leader coordinator's `synod_txn_phase_duration_seconds` and `synod_txn_commit_duration_seconds`, and the
 * consensus cluster's handled calls (Multi = guarded writes, Get, GetChildren) per transaction. Every loop is
 * bounded in count and time; every process is stopped by pid at the end, on an error and on Ctrl-C. Last line:
 * one JSON object.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import pg from 'pg';
import { SynodClient, TxnClient } from '@app/client';
import { PostgresParticipant } from '@app/participant';
import type { Branch } from '@app/participant';
import { ServiceProcess, TXN_MAIN } from '../../apps/lock/test/harness.js';
import { ROOT } from '../../apps/consensus/test/harness.js';
import { bankWork, createAccounts } from '../../apps/txn/test/bank.js';
import { PostgresServer } from '../../libs/testing/src/servers/postgres.js';
import { SynodCluster, handledByCode, installSignalCleanup } from './clusters.js';
import { elapsedUs, f2, filesystemOf, firstLine, Histogram, latencyHistogram, loadAverage, machineConditions, nonNegativeInt, p50, p99, pkgVersion, positiveInt, rate, round, sleep } from './common.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const INITIAL_BALANCE = 1_000_000;

interface TxnBenchOptions {
  duration: number;
  warmup: number;
  concurrency: string;
  accountsPerWorker: number;
  maxTxns: number;
  participantPool: number;
  coordinatorArgs: string;
}

export function txnCommand(): Command {
  return new Command('txn')
    .description('two-participant transfers through the Synod transaction coordinator (decision durable, and until phase two) vs. native PostgreSQL 2PC driven directly (the anchor), same databases, same run')
    .addOption(new Option('--duration <s>', 'measured seconds of each run').default(10).argParser(positiveInt))
    .addOption(new Option('--warmup <s>', 'seconds before each measured window, same load, not counted').default(2).argParser(nonNegativeInt))
    .addOption(new Option('--concurrency <list>', 'comma-separated numbers of concurrent workers (closed loop)').default('1,16'))
    .addOption(new Option('--accounts-per-worker <n>', 'accounts each worker cycles over in each database (rows are never shared between workers)').default(8).argParser(positiveInt))
    .addOption(new Option('--max-txns <n>', 'bound on the transactions of one run (warm-up included)').default(200_000).argParser(positiveInt))
    .addOption(new Option('--participant-pool <n>', 'PostgreSQL pool size of each participant process').default(24).argParser(positiveInt))
    .addOption(new Option('--coordinator-args <args>', 'extra flags for both coordinator replicas, e.g. "--retention-ms 5000" (default: none, the coordinator\'s defaults)').default(''))
    .action(async (o: TxnBenchOptions) => {
      await runTxnBench(o);
    });
}


const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 240);

/** Settles with `p`, or rejects after `ms` (the timer is cleared either way). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

// ---- a participant in its own process (this file run with --participant) --------------------------------------

/**
 * Child mode: `node --import tsx scripts/bench/txn.ts --participant <connection string> <name> <coordinators> <pool>`.
 * Serves a PostgresParticipant (work = bankWork, the SDK's default recovery settings) on a free port, prints
 * `LISTENING <port>`; on SIGTERM or when stdin closes (the benchmark died) prints `STATS <json>` and exits.
 */
async function participantMain(argv: string[]): Promise<void> {
  const [conn, name, coordinators, poolMax] = argv;
  const pool = new pg.Pool({ connectionString: conn, max: Number(poolMax) || 24, connectionTimeoutMillis: 10_000 });
  pool.on('error', (e) => process.stderr.write(`participant ${name}: idle connection failed: ${e.message}\n`));
  const p = new PostgresParticipant({ pool, name, work: bankWork, coordinator: coordinators.split(',') });
  const port = await p.listen('127.0.0.1', 0);
  console.log(`LISTENING ${port}`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log(`STATS ${JSON.stringify(p.stats())}`);
    const hard = setTimeout(() => process.exit(1), 5000);
    void p
      .close()
      .then(() => pool.end())
      .finally(() => {
        clearTimeout(hard);
        process.exit(0);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}

interface ParticipantStatsLine {
  prepared: number;
  votedNo: number;
  workRuns: number;
  committed: number;
  aborted: number;
  recovered: number;
  recoveryRuns: number;
}

class ParticipantProcess {
  proc: ChildProcess | undefined;
  port = 0;
  stats: ParticipantStatsLine | undefined;
  private readonly lines: string[] = [];
  private stderr = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly conn: string,
    private readonly coordinators: string[],
    private readonly poolMax: number,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async start(timeoutMs = 30_000): Promise<void> {
    const proc = spawn(process.execPath, ['--import', 'tsx', THIS_FILE, '--participant', this.conn, this.name, this.coordinators.join(','), String(this.poolMax)], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', () => r()));
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      this.lines.push(l);
      if (l.startsWith('STATS ')) this.stats = JSON.parse(l.slice(6)) as ParticipantStatsLine;
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    const end = Date.now() + timeoutMs;
    for (;;) {
      const l = this.lines.find((x) => x.startsWith('LISTENING '));
      if (l) {
        this.port = Number(l.split(' ')[1]);
        return;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`participant ${this.name} exited (${proc.exitCode ?? proc.signalCode}) during start-up:\n${this.stderr}`);
      if (Date.now() > end) throw new Error(`participant ${this.name} not listening within ${timeoutMs} ms:\n${this.stderr}`);
      await sleep(50);
    }
  }

  get errors(): string {
    return this.stderr;
  }

  /** SIGTERM (it prints its counters), then SIGKILL by pid after 6 s. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    try {
      process.kill(p.pid!, 'SIGTERM');
    } catch {
      // gone
    }
    await Promise.race([this.exited, sleep(6000)]);
    if (p.exitCode === null && p.signalCode === null) killByPid(p.pid);
    await Promise.race([this.exited, sleep(2000)]);
  }
}

function killByPid(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

// ---- Prometheus text ------------------------------------------------------------------------------------------

type Scrape = { series: string; name: string; labels: string; value: number }[];

async function scrape(url: string): Promise<Scrape> {
  const text = await within(fetch(url).then((r) => r.text()), 5000, `GET ${url}`);
  const out: Scrape = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([\d.eE+-]+|NaN|[+-]Inf)$/.exec(line);
    if (m) out.push({ series: m[1] + (m[2] ?? ''), name: m[1], labels: m[2] ?? '', value: Number(m[3]) });
  }
  return out;
}

/** Sum of the series named `name` whose labels include every `k="v"` of `labels`. */
function metricSum(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const x of s) if (x.name === name && Object.entries(labels).every(([k, v]) => x.labels.includes(`${k}="${v}"`))) sum += x.value;
  return sum;
}

// ---- the runs -------------------------------------------------------------------------------------------------

type Kind = 'native' | 'synod' | 'synod-wait';

interface Run {
  kind: Kind;
  tag: string;
  concurrency: number;
  seconds: number;
  /** Transactions completed (committed) inside the measured window. */
  count: number;
  hist: Histogram;
  /** Per step, measured window only (synod: begin, register, commit; native: phase1, phase2). */
  steps: Map<string, Histogram>;
  /** Committed over the whole run (warm-up and drain included) — for the balance check. */
  committedAll: number;
  /** Aborted by a decision (synod) — 0 expected. */
  aborted: number;
  errors: number;
  firstError?: string;
  /** Completions per second of the measured window (to see a drift within the window). */
  perSecond: number[];
  /** Synod without wait: time after the run until pg_prepared_xacts was empty. */
  drainS: number;
  /** Coordinator and consensus deltas over the whole run (warm-up and drain included). */
  coord?: CoordDelta;
  consensus?: ConsensusDelta;
  txnsAll: number;
  load: string;
  check: string;
  checkOk: boolean;
  cpu: number;
}

interface CoordDelta {
  prepareMeanMs: number;
  prepareCount: number;
  commitPhaseMeanMs: number;
  commitPhaseCount: number;
  decisionMeanMs: number;
  decisionCount: number;
  endToEndMeanMs: number;
  endToEndCount: number;
  inDoubtAfter: number;
  recordsAfter: number;
}

interface ConsensusDelta {
  multi: number;
  get: number;
  getChildren: number;
  other: number;
  raftCommitted: number;
}

function cpuShare(c0: NodeJS.CpuUsage, wall0: bigint): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (elapsedUs(wall0) || 1);
}

function newRun(kind: Kind, tag: string, concurrency: number, duration: number): Run {
  return {
    kind,
    tag,
    concurrency,
    seconds: duration,
    count: 0,
    hist: latencyHistogram(),
    steps: new Map(),
    committedAll: 0,
    aborted: 0,
    errors: 0,
    perSecond: new Array<number>(duration).fill(0),
    drainS: 0,
    txnsAll: 0,
    load: '',
    check: '',
    checkOk: true,
    cpu: 0,
  };
}

/** Shared by the runs: servers and clients started once. */
interface Env {
  bank1: pg.Pool;
  bank2: pg.Pool;
  admin: pg.Pool;
  txn: TxnClient;
  p1: ParticipantProcess;
  p2: ParticipantProcess;
  replicas: ServiceProcess[];
  synod: SynodCluster;
  accountsPerWorker: number;
  /** Expected state: committed transfers so far (each moves 1 from bank1 to bank2). */
  committed: number;
  /** Synod transactions whose outcome was not known to the client (error): resolved by Status at the end. */
  unknown: string[];
}

const payload = (account: string, delta: number): string => JSON.stringify({ account, delta });

/** The common closed loop: `workers` workers run `one(w, n)` until the window closes or the count bound is hit. */
async function closedLoop(r: Run, o: TxnBenchOptions, one: (w: number, n: number, measured: () => boolean) => Promise<'committed' | 'aborted'>): Promise<void> {
  const wall0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const t0 = Date.now();
  const wStart = t0 + o.warmup * 1000;
  const wEnd = wStart + o.duration * 1000;
  let started = 0;
  await Promise.all(
    Array.from({ length: r.concurrency }, async (_, w) => {
      for (let n = 0; Date.now() < wEnd && started < o.maxTxns; n++) {
        started++;
        r.txnsAll++;
        const s = process.hrtime.bigint();
        // counted when it completes inside the window (steady state: a transaction begun in the warm-up counts)
        const measured = (): boolean => {
          const now = Date.now();
          return now >= wStart && now <= wEnd;
        };
        try {
          const outcome = await one(w, n, measured);
          if (outcome === 'committed') r.committedAll++;
          else r.aborted++;
          if (measured() && outcome === 'committed') {
            r.count++;
            r.hist.recordValue(Math.max(1, Math.round(elapsedUs(s))));
            const sec = Math.floor((Date.now() - wStart) / 1000);
            if (sec >= 0 && sec < r.perSecond.length) r.perSecond[sec]++;
          }
        } catch (e) {
          r.errors++;
          r.firstError ??= errText(e);
          if (r.errors > 1000) throw new Error(`${r.kind}: over 1000 errors; first: ${r.firstError}`);
          await sleep(20);
        }
      }
    }),
  );
  r.cpu = cpuShare(c0, wall0);
  // a transaction still running at the end of the window is not counted
}

function step(r: Run, name: string, s: bigint, measured: boolean): void {
  if (!measured) return;
  let h = r.steps.get(name);
  if (!h) r.steps.set(name, (h = latencyHistogram()));
  h.recordValue(Math.max(1, Math.round(elapsedUs(s))));
}

async function runNative(env: Env, o: TxnBenchOptions, concurrency: number, tag: string): Promise<Run> {
  const r = newRun('native', tag, concurrency, o.duration);
  const conns: { c1: pg.PoolClient; c2: pg.PoolClient }[] = [];
  try {
    for (let w = 0; w < concurrency; w++) conns.push({ c1: await env.bank1.connect(), c2: await env.bank2.connect() });
    const runId = `${tag}-${Date.now().toString(36)}`;
    const phaseOne = async (c: pg.PoolClient, gid: string, account: string, delta: number): Promise<void> => {
      await c.query('BEGIN');
      try {
        const branch: Branch = { globalId: gid, branchId: 'b', payload: Buffer.from(payload(account, delta)) };
        const verdict = await bankWork(c, branch);
        if (verdict) throw new Error(`work voted no: ${verdict.reason}`);
        const tag2 = (await c.query(`PREPARE TRANSACTION '${gid}'`)).command;
        if (tag2 !== 'PREPARE') throw new Error(`PREPARE TRANSACTION answered ${tag2}`);
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    };
    await closedLoop(r, o, async (w, n, measured) => {
      const { c1, c2 } = conns[w];
      const k = n % env.accountsPerWorker;
      const g1 = `native-${runId}-${w}-${n}-1`;
      const g2 = `native-${runId}-${w}-${n}-2`;
      let s = process.hrtime.bigint();
      const p1 = await Promise.allSettled([phaseOne(c1, g1, `a${w}_${k}`, -1), phaseOne(c2, g2, `b${w}_${k}`, 1)]);
      if (p1.some((x) => x.status === 'rejected')) {
        // roll back the side that prepared; the other rolled back itself
        await Promise.allSettled([
          p1[0].status === 'fulfilled' ? c1.query(`ROLLBACK PREPARED '${g1}'`) : Promise.resolve(),
          p1[1].status === 'fulfilled' ? c2.query(`ROLLBACK PREPARED '${g2}'`) : Promise.resolve(),
        ]);
        throw (p1.find((x) => x.status === 'rejected') as PromiseRejectedResult).reason;
      }
      step(r, 'phase one (both, parallel)', s, measured());
      s = process.hrtime.bigint();
      await Promise.all([c1.query(`COMMIT PREPARED '${g1}'`), c2.query(`COMMIT PREPARED '${g2}'`)]);
      step(r, 'phase two (both, parallel)', s, measured());
      return 'committed';
    });
  } finally {
    for (const { c1, c2 } of conns) {
      c1.release();
      c2.release();
    }
  }
  env.committed += r.committedAll;
  return r;
}

async function runSynod(env: Env, o: TxnBenchOptions, concurrency: number, wait: boolean, tag: string): Promise<Run> {
  const r = newRun(wait ? 'synod-wait' : 'synod', tag, concurrency, o.duration);
  await closedLoop(r, o, async (w, n, measured) => {
    const k = n % env.accountsPerWorker;
    let s = process.hrtime.bigint();
    const { globalId } = await env.txn.begin({ timeoutMs: 30_000 });
    step(r, 'Begin', s, measured());
    try {
      s = process.hrtime.bigint();
      await env.txn.registerBranch(globalId, 'debit', env.p1.address, payload(`a${w}_${k}`, -1));
      step(r, 'RegisterBranch (1st)', s, measured());
      s = process.hrtime.bigint();
      await env.txn.registerBranch(globalId, 'credit', env.p2.address, payload(`b${w}_${k}`, 1));
      step(r, 'RegisterBranch (2nd)', s, measured());
      s = process.hrtime.bigint();
      const res = await env.txn.commit(globalId, { wait, deadlineMs: 60_000 });
      step(r, wait ? 'Commit (wait: phase two done)' : 'Commit (decision durable)', s, measured());
      if (res.state === 'COMMITTED') return 'committed';
      if (res.state === 'ABORTED') {
        r.firstError ??= `aborted: ${res.reason}`;
        return 'aborted';
      }
      throw new Error(`Commit answered ${res.state}: ${res.reason}`);
    } catch (e) {
      env.unknown.push(globalId);
      throw e;
    }
  });
  env.committed += r.committedAll;
  return r;
}

// ---- checks ---------------------------------------------------------------------------------------------------

async function preparedAll(admin: pg.Pool): Promise<number> {
  const r = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_xacts');
  return r.rows[0].n;
}

async function sums(env: Env): Promise<{ a: number; b: number }> {
  const q = 'SELECT coalesce(sum(balance), 0)::bigint AS s FROM accounts';
  const [a, b] = await Promise.all([env.bank1.query<{ s: string }>(q), env.bank2.query<{ s: string }>(q)]);
  return { a: Number(a.rows[0].s), b: Number(b.rows[0].s) };
}

/** Waits (≤ timeoutMs) until no prepared transaction is left; returns the seconds it took, or -1. */
async function drainPrepared(env: Env, timeoutMs: number): Promise<number> {
  const t = Date.now();
  while (Date.now() - t < timeoutMs) {
    if ((await preparedAll(env.admin)) === 0) return (Date.now() - t) / 1000;
    await sleep(50);
  }
  return -1;
}

/**
 * The unit costs of the decision log on this machine, now: `n` sequential guarded writes (a Multi of a check and
 * a set, as every coordinator log write is) and `n` sequential linearizable Gets, through SynodClient.
 */
async function logProbe(endpoints: string[], n: number): Promise<{ write: Histogram; read: Histogram }> {
  const c = new SynodClient({ endpoints, deadlineMs: 10_000 });
  const write = latencyHistogram();
  const read = latencyHistogram();
  try {
    await c.create('/bench-txn-probe').catch(() => undefined);
    await c.create('/bench-txn-probe/k', Buffer.from('x')).catch(() => undefined);
    const value = Buffer.alloc(400, 'x'); // about the size of a transaction record with two branches
    for (let i = 0; i < n; i++) {
      const s = process.hrtime.bigint();
      const r = await c.multi([{ op: 'check', path: '/bench-txn-probe' }, { op: 'set', path: '/bench-txn-probe/k', data: value }]);
      if (!r.succeeded) throw new Error('probe: the guarded write failed');
      write.recordValue(Math.max(1, Math.round(elapsedUs(s))));
    }
    for (let i = 0; i < n; i++) {
      const s = process.hrtime.bigint();
      await c.get('/bench-txn-probe/k');
      read.recordValue(Math.max(1, Math.round(elapsedUs(s))));
    }
  } finally {
    c.close();
  }
  return { write, read };
}

// ---- the benchmark ----------------------------------------------------------------------------------------------

const tps = (r: Run): number => r.count / r.seconds;
const drift = (a: number, b: number): string => `${b >= a ? '+' : ''}${(((b - a) / a) * 100).toFixed(0)} %`;

async function runTxnBench(o: TxnBenchOptions): Promise<void> {
  const out = (s = ''): void => console.log(s);
  const t0 = Date.now();
  const levels = [...new Set(o.concurrency.split(',').map((x) => positiveInt(x.trim())))];
  const maxC = Math.max(...levels);
  const extraCoordArgs = o.coordinatorArgs.split(/\s+/).filter(Boolean);

  // Ctrl-C: the coordinators and participants are not in clusters.ts's registry; this handler kills them by pid
  // first (listeners run in registration order), then installSignalCleanup's handler kills the Synod members and
  // exits, and PostgresServer's exit hook kills the postmaster by pid.
  const replicas: ServiceProcess[] = [];
  const parts: ParticipantProcess[] = [];
  const killChildren = (): void => {
    for (const s of replicas) {
      if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) killByPid(s.proc.pid);
      const dir = (s as unknown as { dir?: string }).dir; // the harness's private log dir
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    for (const p of parts) killByPid(p.pid);
  };
  process.once('SIGINT', killChildren);
  process.once('SIGTERM', killChildren);
  installSignalCleanup();

  const synod = new SynodCluster([]);
  let server: PostgresServer | undefined;
  const pools: pg.Pool[] = [];
  let txn: TxnClient | undefined;
  let shuttingDown = false;
  try {
    out('# txn benchmark: two-participant transfers through the Synod coordinator vs. native PostgreSQL 2PC (the anchor), same run, same databases');
    out();
    out('conditions:');
    for (const c of machineConditions()) out(`  ${c}`);
    out(`  ${firstLine('/usr/lib/postgresql/15/bin/postgres', ['--version'])}; pg ${pkgVersion('pg')}, @grpc/grpc-js ${pkgVersion('@grpc/grpc-js')}; commit ${firstLine('git', ['rev-parse', '--short', 'HEAD'])}`);
    out('  all on 127.0.0.1: Synod consensus 3 members (defaults), PostgreSQL 15 (fsync on, max_prepared_transactions 256) with databases bank1 and bank2,');
    out(`  2 coordinator replicas (apps/txn, ${extraCoordArgs.length ? `flags: ${extraCoordArgs.join(' ')}` : 'defaults'}), 2 PostgresParticipant child processes (pool ${o.participantPool}, SDK default recovery)`);
    out(`  data dirs in ${tmpdir()}: ${filesystemOf(tmpdir())}`);
    out(`  runs: concurrency ${levels.join(', ')} (closed loop), ${o.warmup} s warm-up + ${o.duration} s measured each; ${o.accountsPerWorker} account pairs per worker, no row shared between workers`);
    out();

    const startT = Date.now();
    const started = await Promise.allSettled([PostgresServer.start({ settings: { max_prepared_transactions: 256 } }), synod.start()]);
    if (started[0].status === 'fulfilled') server = started[0].value;
    const failed = started.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed || !server) throw failed?.reason ?? new Error('start-up failed');
    const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
    pools.push(admin);
    await admin.query('CREATE DATABASE bank1');
    await admin.query('CREATE DATABASE bank2');
    const bank1 = new pg.Pool({ connectionString: server.connectionStringFor('bank1'), max: maxC + 4, statement_timeout: 30_000 });
    const bank2 = new pg.Pool({ connectionString: server.connectionStringFor('bank2'), max: maxC + 4, statement_timeout: 30_000 });
    pools.push(bank1, bank2);
    for (const p of pools) p.on('error', (e) => void (shuttingDown || console.error(`(idle PostgreSQL connection failed: ${e.message})`)));
    const a: Record<string, number> = {};
    const b: Record<string, number> = {};
    for (let w = 0; w < maxC; w++)
      for (let k = 0; k < o.accountsPerWorker; k++) {
        a[`a${w}_${k}`] = INITIAL_BALANCE;
        b[`b${w}_${k}`] = INITIAL_BALANCE;
      }
    await Promise.all([createAccounts(bank1, a), createAccounts(bank2, b)]);
    const initial = await sums({ bank1, bank2 } as Env);

    const consensusEps = synod.ids.map((i) => synod.clientAddress(i)).join(',');
    for (let i = 0; i < 2; i++) replicas.push(new ServiceProcess(['--consensus-endpoints', consensusEps, '--root', '/txn-bench', '--log-level', 'warn', ...extraCoordArgs], TXN_MAIN));
    await Promise.all(replicas.map((s) => s.start()));
    const endpoints = replicas.map((s) => s.endpoint);
    parts.push(new ParticipantProcess('bench-bank1', server.connectionStringFor('bank1'), endpoints, o.participantPool));
    parts.push(new ParticipantProcess('bench-bank2', server.connectionStringFor('bank2'), endpoints, o.participantPool));
    await Promise.all(parts.map((p) => p.start()));
    const leaderAt = async (): Promise<ServiceProcess> => {
      const end = Date.now() + 30_000;
      for (;;) {
        for (const s of replicas) if ((await s.metric('synod_txn_is_leader').catch(() => 0)) === 1) return s;
        if (Date.now() > end) throw new Error('no coordinator leader within 30 s');
        await sleep(100);
      }
    };
    const coordLeader = await leaderAt();
    const consensusLeader = await synod.leader();
    txn = new TxnClient({ endpoints, deadlineMs: 20_000 });
    const env: Env = { bank1, bank2, admin, txn, p1: parts[0], p2: parts[1], replicas, synod, accountsPerWorker: o.accountsPerWorker, committed: 0, unknown: [] };
    // one transaction end to end before measuring (connections, the coordinator's participant channels)
    const probe = await txn.begin({ timeoutMs: 30_000 });
    await txn.registerBranch(probe.globalId, 'debit', parts[0].address, payload('a0_0', -1));
    await txn.registerBranch(probe.globalId, 'credit', parts[1].address, payload('b0_0', 1));
    if ((await txn.commit(probe.globalId, { wait: true })).state !== 'COMMITTED') throw new Error('the probe transaction did not commit');
    env.committed++;

    out(`started in ${((Date.now() - startT) / 1000).toFixed(1)} s: Synod pids ${synod.ids.map((i) => synod.pid(i)).join(',')} (leader n${consensusLeader}), postgres pid ${server.pid},`);
    out(`  coordinators ${replicas.map((s) => `${s.endpoint} pid ${s.proc?.pid}`).join(', ')} (leader ${coordLeader.endpoint}), participants ${parts.map((p) => `${p.name} ${p.address} pid ${p.pid}`).join(', ')}`);
    out(`  ${loadAverage()} (after start-up)`);
    const consensusEpList = synod.ids.map((i) => synod.clientAddress(i));
    const probeBefore = await logProbe(consensusEpList, 40);
    out(`decision-log unit costs (SynodClient, 40 sequential each): guarded write (Multi: check + set, 400 B) p50 ${f2(p50(probeBefore.write))} ms, mean ${f2(probeBefore.write.mean / 1000)} ms; ` +
      `linearizable Get p50 ${f2(p50(probeBefore.read))} ms, mean ${f2(probeBefore.read.mean / 1000)} ms`);
    out();

    const coordSnap = async (): Promise<Scrape> => scrape(coordLeader.metricsUrl);
    const consSnap = async (): Promise<{ calls: Map<string, number>; raft: number }> => {
      const calls = new Map<string, number>();
      for (const id of synod.ids) {
        for (const m of ['Multi', 'Get', 'GetChildren', 'Create', 'Set', 'Delete', 'Exists']) {
          const byCode = await handledByCode(synod.metricsUrl(id), m);
          calls.set(m, (calls.get(m) ?? 0) + [...byCode.values()].reduce((x, y) => x + y, 0));
        }
      }
      const raft = metricSum(await scrape(synod.metricsUrl(consensusLeader)), 'synod_raft_proposals_committed_total');
      return { calls, raft };
    };
    const hmean = (a0: Scrape, a1: Scrape, name: string, labels: Record<string, string>): { mean: number; count: number } => {
      const c = metricSum(a1, `${name}_count`, labels) - metricSum(a0, `${name}_count`, labels);
      const s = metricSum(a1, `${name}_sum`, labels) - metricSum(a0, `${name}_sum`, labels);
      return { mean: c > 0 ? (s / c) * 1000 : NaN, count: c };
    };

    const check = async (r: Run): Promise<void> => {
      const d = await drainPrepared(env, 60_000);
      r.drainS = d;
      const { a: sa, b: sb } = await sums(env);
      const prepared = await preparedAll(admin);
      const conserved = sa + sb === initial.a + initial.b;
      const moved = sb - initial.b;
      const exact = moved === env.committed && initial.a - sa === env.committed;
      r.checkOk = conserved && prepared === 0 && (exact || env.unknown.length > 0);
      r.check = `total ${rate(sa + sb)} (${conserved ? 'conserved' : `NOT conserved: expected ${rate(initial.a + initial.b)}`}), ` +
        `bank2 +${rate(moved)} for ${rate(env.committed)} committed so far${exact ? ' (exact)' : env.unknown.length > 0 ? ` (${env.unknown.length} outcome(s) unknown to the client, resolved at the end)` : ' (MISMATCH)'}, ` +
        `pg_prepared_xacts ${prepared}${d > 0 ? ` (emptied ${d.toFixed(2)} s after the run)` : d < 0 ? ' (NOT emptied within 60 s)' : ''}`;
    };

    const printRun = (r: Run): void => {
      const name = `${r.kind} c=${r.concurrency}${r.tag ? ` (${r.tag})` : ''}`;
      const ps = r.perSecond;
      const half = Math.floor(ps.length / 2);
      const first = ps.slice(0, half).reduce((x, y) => x + y, 0) / Math.max(1, half);
      const second = ps.slice(half).reduce((x, y) => x + y, 0) / Math.max(1, ps.length - half);
      out(`${name.padEnd(26)} ${rate(tps(r)).padStart(6)} txn/s, p50 ${f2(p50(r.hist))} ms, p99 ${f2(p99(r.hist))} ms, max ${f2(r.hist.maxValue / 1000)} ms; ` +
        `${r.count} in the window (1st half ${rate(first)}/s, 2nd half ${rate(second)}/s), ${r.aborted} aborted, ${r.errors} errors; bench CPU ${(r.cpu * 100).toFixed(0)} %`);
      if (r.firstError) out(`${''.padEnd(26)}   first error: ${r.firstError}`);
      for (const [k, h] of r.steps) out(`${''.padEnd(26)}   ${k.padEnd(32)} p50 ${f2(p50(h))} ms, p99 ${f2(p99(h))} ms, mean ${f2(h.mean / 1000)} ms`);
      if (r.coord) {
        const c = r.coord;
        out(`${''.padEnd(26)}   leader coordinator (means over the run): decision (Commit call → COMMITTED durable) ${f2(c.decisionMeanMs)} ms of which phase one (Prepare ×2, parallel) ${f2(c.prepareMeanMs)} ms; ` +
          `phase two (Commit ×2) ${f2(c.commitPhaseMeanMs)} ms; Begin → phase two done ${f2(c.endToEndMeanMs)} ms; transactions begun since start ${c.recordsAfter}, in doubt ${c.inDoubtAfter}`);
      }
      if (r.consensus && r.txnsAll > 0) {
        const x = r.consensus;
        const n = r.committedAll + r.aborted;
        out(`${''.padEnd(26)}   consensus calls per transaction (all 3 members, whole run, ${n} txns): Multi (guarded writes) ${f2(x.multi / n)}, Get ${f2(x.get / n)}, GetChildren ${f2(x.getChildren / n)}, other ${f2(x.other / n)}; raft entries committed ${f2(x.raftCommitted / n)}`);
      }
      out(`${''.padEnd(26)}   check: ${r.check}`);
      out(`${''.padEnd(26)}   (${r.load})`);
    };

    const runs: Run[] = [];
    const measure = async (kind: Kind, c: number, tag: string): Promise<Run> => {
      const co0 = kind === 'native' ? undefined : await coordSnap();
      const cs0 = kind === 'native' ? undefined : await consSnap();
      const r = kind === 'native' ? await runNative(env, o, c, tag) : await runSynod(env, o, c, kind === 'synod-wait', tag);
      await check(r);
      if (co0 && cs0) {
        await sleep(300); // the last phase two's completion write
        const co1 = await coordSnap();
        const cs1 = await consSnap();
        const prep = hmean(co0, co1, 'synod_txn_phase_duration_seconds', { phase: 'prepare' });
        const com = hmean(co0, co1, 'synod_txn_phase_duration_seconds', { phase: 'commit' });
        const dec = hmean(co0, co1, 'synod_txn_commit_duration_seconds', { stage: 'decision' });
        const e2e = hmean(co0, co1, 'synod_txn_commit_duration_seconds', { stage: 'end_to_end' });
        r.coord = {
          prepareMeanMs: prep.mean,
          prepareCount: prep.count,
          commitPhaseMeanMs: com.mean,
          commitPhaseCount: com.count,
          decisionMeanMs: dec.mean,
          decisionCount: dec.count,
          endToEndMeanMs: e2e.mean,
          endToEndCount: e2e.count,
          inDoubtAfter: metricSum(co1, 'synod_txn_in_doubt'),
          recordsAfter: metricSum(co1, 'synod_txn_transactions_total', { outcome: 'begun' }),
        };
        const d = (m: string): number => (cs1.calls.get(m) ?? 0) - (cs0.calls.get(m) ?? 0);
        r.consensus = { multi: d('Multi'), get: d('Get'), getChildren: d('GetChildren'), other: d('Create') + d('Set') + d('Delete') + d('Exists'), raftCommitted: cs1.raft - cs0.raft };
      }
      r.load = loadAverage();
      printRun(r);
      runs.push(r);
      return r;
    };

    const nativeBefore = new Map<number, Run>();
    const nativeAfter = new Map<number, Run>();
    const synodRuns = new Map<number, Run>();
    const waitRuns = new Map<number, Run>();
    for (const c of levels) nativeBefore.set(c, await measure('native', c, 'before'));
    for (const c of levels) synodRuns.set(c, await measure('synod', c, ''));
    for (const c of levels) waitRuns.set(c, await measure('synod-wait', c, ''));
    for (const c of levels) nativeAfter.set(c, await measure('native', c, 'after'));

    // ---- outcomes the client did not learn (errors): ask the coordinator ----
    let unknownCommitted = 0;
    for (const gid of env.unknown.slice(0, 1000)) {
      const s = await txn.status(gid).catch(() => undefined);
      if (s?.decision === 'COMMITTED') unknownCommitted++;
    }
    env.committed += unknownCommitted;

    // ---- summary ----
    out();
    out('| run | concurrency | txn/s | p50 | p99 | txn/s ÷ native | p50 ÷ native | p99 ÷ native |');
    out('|---|---|---|---|---|---|---|---|');
    const json: Record<string, number | string | boolean | null> = {};
    for (const c of levels) {
      const nb = nativeBefore.get(c)!;
      const na = nativeAfter.get(c)!;
      const nT = (tps(nb) + tps(na)) / 2;
      const n50 = (p50(nb.hist) + p50(na.hist)) / 2;
      const n99 = (p99(nb.hist) + p99(na.hist)) / 2;
      out(`| native 2PC (anchor, mean of before/after: ${rate(tps(nb))} → ${rate(tps(na))} txn/s, ${drift(tps(nb), tps(na))}) | ${c} | ${rate(nT)} | ${f2(n50)} ms | ${f2(n99)} ms | 1 | 1 | 1 |`);
      json[`native_c${c}_txn_per_s`] = round(nT, 1);
      json[`native_c${c}_p50_ms`] = round(n50);
      json[`native_c${c}_p99_ms`] = round(n99);
      json[`native_c${c}_drift`] = round((tps(na) - tps(nb)) / tps(nb));
      for (const [label, key, r] of [
        ['Synod, decision durable', 'synod', synodRuns.get(c)!],
        ['Synod, wait (phase two done)', 'synod_wait', waitRuns.get(c)!],
      ] as const) {
        out(`| ${label} | ${c} | ${rate(tps(r))} | ${f2(p50(r.hist))} ms | ${f2(p99(r.hist))} ms | ${f2(tps(r) / nT)} | ${f2(p50(r.hist) / n50)} | ${f2(p99(r.hist) / n99)} |`);
        json[`${key}_c${c}_txn_per_s`] = round(tps(r), 1);
        json[`${key}_c${c}_p50_ms`] = round(p50(r.hist));
        json[`${key}_c${c}_p99_ms`] = round(p99(r.hist));
        json[`${key}_c${c}_ratio`] = round(tps(r) / nT);
        json[`${key}_c${c}_p50_ratio`] = round(p50(r.hist) / n50);
        json[`${key}_c${c}_p99_ratio`] = round(p99(r.hist) / n99);
        json[`${key}_c${c}_errors`] = r.errors + r.aborted;
      }
    }

    // ---- where the time goes (the lowest concurrency: no queueing) ----
    const c1 = Math.min(...levels);
    const sr = synodRuns.get(c1)!;
    const nb = nativeBefore.get(c1)!;
    const meanOf = (r: Run, k: string): number => (r.steps.get(k)?.mean ?? NaN) / 1000;
    out();
    out(`where Synod's time goes at concurrency ${c1} (means, ms):`);
    const begin = meanOf(sr, 'Begin');
    const reg = meanOf(sr, 'RegisterBranch (1st)') + meanOf(sr, 'RegisterBranch (2nd)');
    const commit = meanOf(sr, 'Commit (decision durable)');
    const dec = sr.coord?.decisionMeanMs ?? NaN;
    const prep = sr.coord?.prepareMeanMs ?? NaN;
    out(`  client: Begin ${f2(begin)} (1 guarded write), RegisterBranch ×2 ${f2(reg)} (2 × (1 read + 1 guarded write)), Commit ${f2(commit)} → total ${f2(sr.hist.mean / 1000)}`);
    out(`  inside Commit, on the leader coordinator: decision ${f2(dec)} = phase one ${f2(prep)} (Prepare on both participants in parallel) + ${f2(dec - prep)} (read, PREPARING write, COMMITTED write and their reads);`);
    out(`    the rest of Commit, ${f2(commit - dec)}, is the client ↔ coordinator gRPC hop`);
    out(`  native at the same concurrency: phase one ${f2(meanOf(nb, 'phase one (both, parallel)'))}, phase two ${f2(meanOf(nb, 'phase two (both, parallel)'))} → total ${f2(nb.hist.mean / 1000)}`);
    out(`  so Synod's path to a durable decision = native phase one × ${f2(prep / meanOf(nb, 'phase one (both, parallel)'))} (the participant SDK's extra statements) + ${f2(sr.hist.mean / 1000 - prep)} ms of coordinator/log work;`);
    out(`  phase two, off the decision path: coordinator ${f2(sr.coord?.commitPhaseMeanMs ?? NaN)} (reads + Commit ×2 in parallel + the completion write) vs. native ${f2(meanOf(nb, 'phase two (both, parallel)'))}`);
    const W = probeBefore.write.mean / 1000;
    const R = probeBefore.read.mean / 1000;
    out(`  round trips in series on the path to a durable decision: 4 client → coordinator calls; 5 guarded log writes (Begin's create, 2 × RegisterBranch,`);
    out(`    PREPARING, COMMITTED) and 5 linearizable log reads (one per RegisterBranch, three in Commit); 1 Prepare round (2 participants in parallel).`);
    out(`    With this run's unit costs (write ${f2(W)}, read ${f2(R)}): 5 × ${f2(W)} + 5 × ${f2(R)} = ${f2(5 * W + 5 * R)} ms of log round trips + phase one ${f2(prep)} = ${f2(5 * W + 5 * R + prep)} ms, measured ${f2(sr.hist.mean / 1000)} ms`);
    if (sr.consensus) {
      const n = sr.committedAll + sr.aborted;
      out(`  consensus calls per transaction (measured over the run): Multi ${f2(sr.consensus.multi / n)} (= 6 guarded writes: the 5 above + "completed" in phase two), raft entries ${f2(sr.consensus.raftCommitted / n)},`);
      out(`    Get ${f2(sr.consensus.get / n)}, GetChildren ${f2(sr.consensus.getChildren / n)}: 5 reads on the decision path + 3 in phase two = 8 expected; any excess is the leader's scans of`);
      out(`    the log (TxnEngine.refreshGauges / gc → store.list('tx'): one GetChildren + one Get per record kept, --retention-ms) and, with wait, waitCompleted's 25 ms polling`);
    }

    // ---- final correctness ----
    const { a: sa, b: sb } = await sums(env);
    const prepared = await preparedAll(admin);
    const conserved = sa + sb === initial.a + initial.b;
    const exact = sb - initial.b === env.committed && initial.a - sa === env.committed;
    out();
    out(`final check: total balance ${rate(sa + sb)} over ${2 * maxC * o.accountsPerWorker} accounts (${conserved ? 'conserved' : `NOT CONSERVED, expected ${rate(initial.a + initial.b)}`}); ` +
      `bank2 +${rate(sb - initial.b)}, bank1 −${rate(initial.a - sa)} for ${rate(env.committed)} committed transfers (${exact ? 'exact' : 'MISMATCH'}); ` +
      `pg_prepared_xacts: ${prepared} row(s)${prepared === 0 ? ' (empty)' : ''}; outcomes unknown to the client: ${env.unknown.length} (${unknownCommitted} of them committed)`);
    await Promise.all(parts.map((p) => p.stop()));
    out(`participants: ${parts.map((p) => `${p.name} ${p.stats ? `prepared ${p.stats.prepared}, committed ${p.stats.committed}, voted no ${p.stats.votedNo}, aborted ${p.stats.aborted}, finished by recovery ${p.stats.recovered}` : 'no counters'}`).join('; ')}`);
    for (const p of parts) if (p.errors.trim()) out(`  ${p.name} stderr (tail): ${p.errors.trim().split('\n').slice(-3).join(' | ')}`);
    out(`at the end: ${loadAverage()}; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);

    const top = maxC;
    const nT = (tps(nativeBefore.get(top)!) + tps(nativeAfter.get(top)!)) / 2;
    json.synod_txn_per_s = round(tps(synodRuns.get(top)!), 1);
    json.native_txn_per_s = round(nT, 1);
    json.ratio = round(tps(synodRuns.get(top)!) / nT);
    json.synod_p99_ms = round(p99(synodRuns.get(top)!.hist));
    json.native_p99_ms = round((p99(nativeBefore.get(top)!.hist) + p99(nativeAfter.get(top)!.hist)) / 2);
    json.synod_wait_txn_per_s = round(tps(waitRuns.get(top)!), 1);
    json.synod_wait_ratio = round(tps(waitRuns.get(top)!) / nT);
    json.concurrency = top;
    json.total_conserved = conserved;
    json.committed_exact = exact;
    json.prepared_left = prepared;
    json.duration_s = o.duration;
    json.load_avg_1m_end = round(loadavg()[0], 2);
    out(JSON.stringify(json));
  } finally {
    shuttingDown = true; // PostgreSQL's shutdown terminates idle pooled connections: expected from here on
    txn?.close();
    await Promise.allSettled(parts.map((p) => p.stop()));
    await Promise.allSettled(replicas.map((s) => s.stop()));
    await Promise.allSettled(pools.map((p) => p.end()));
    await Promise.allSettled([synod.stop(), server?.stop()]);
    process.off('SIGINT', killChildren);
    process.off('SIGTERM', killChildren);
  }
}

// child mode (see participantMain): only when this file itself is the entry point
if (process.argv[2] === '--participant' && process.argv[1] !== undefined && resolve(process.argv[1]) === THIS_FILE) await participantMain(process.argv.slice(3));
