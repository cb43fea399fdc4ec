/**
 * The transaction workload of the nemesis runner (scripts/nemesis/types.ts): bank transfers through the
 * two-phase-commit coordinator (apps/txn) while the runner faults the consensus cluster that holds the
 * coordinator's decision log.
 *
 * Setup: a real PostgreSQL (libs/testing's starter) with two databases bank1 / bank2 (`accounts` and a
 * per-branch `transfers` record, scripts/nemesis/workloads/bank.ts), one bank participant process per database
 * (scripts/nemesis/bank-participant.ts, libs/participant: real PREPARE TRANSACTION), and two coordinator
 * replicas (`--store consensus` on the run's endpoints, short timeouts as in apps/txn/test/txn.spec.ts). Logs
 * go to <ctx.dir>/txn-*.log.
 *
 * Load: `clients` loops; each transfer moves 1..20 between a random account of bank1 and one of bank2 (random
 * direction) as one global transaction with a caller-chosen global id: Begin, RegisterBranch debit / credit,
 * Commit. The outcome the client saw is COMMITTED, ABORTED or indeterminate (an error or a timeout).
 *
 * Check (after heal and recovery): nothing of the run left in doubt within 10 s (no PREPARING / ACTIVE /
 * NEEDS_ATTENTION record, no prepared transaction in either database); money conserved; no negative balance;
 * every balance equals its initial value plus its `transfers` rows; a transfer the client saw COMMITTED has its
 * row in both databases (else `lost`), an ABORTED one in neither, an indeterminate one in both or neither.
 *
 * Client-side fault (`kill`): the leading coordinator replica is SIGKILLed too and restarted ~2 s later.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, WriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { TxnClient } from '@app/client';
import type { TxnState } from '@app/client';
import { parseGid } from '@app/participant';
import type { Rng } from '@app/testing';
import { PostgresServer } from '../../../libs/testing/src/servers/postgres.js';
import { atMost, childEnv, freePort, sleep, trackPid, untrackPid } from '../../../libs/testing/src/servers/process.js';
import type { FaultKind, RunContext, Workload, WorkloadResult } from '../types.js';
import { balances, createBank, preparedGids, transferRows } from './bank.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const TXN_MAIN = join(ROOT, 'apps/txn/src/main.ts');
const PARTICIPANT_MAIN = join(ROOT, 'scripts/nemesis/bank-participant.ts');
/** Short timeouts for fault tests (as apps/txn/test/txn.spec.ts). */
const COORDINATOR_FLAGS = ['--session-timeout-ms', '1500', '--prepare-timeout-ms', '1500', '--phase-two-attempts', '4', '--phase-two-timeout-ms', '500', '--attention-retry-ms', '1000'];
const INITIAL_BALANCE = 1000;
/** Timeout of each global transaction (an ACTIVE one left by a failed client aborts after this). */
const TXN_TIMEOUT_MS = 5000;
/** Deadline of one Begin / RegisterBranch call (retries included) and of Commit. */
const CALL_DEADLINE_MS = 5000;
const COMMIT_DEADLINE_MS = 10_000;
/** Hard bound of a client loop, whatever the runner does. */
const MAX_LOAD_MS = 30 * 60_000;
const STOP_WAIT_MS = 10_000;
const RESOLVE_WITHIN_MS = 10_000;
const RESTART_AFTER_MS = 2000;
const OPEN_STATES = new Set<TxnState>(['ACTIVE', 'PREPARING', 'NEEDS_ATTENTION']);

export interface TxnWorkloadOptions {
  /** Concurrent transfer loops (default 4). */
  clients?: number;
  /** Accounts per bank (default 4). */
  accounts?: number;
}

type Outcome = 'COMMITTED' | 'ABORTED' | 'indeterminate' | 'in-flight';

interface Transfer {
  gid: string;
  /** bank1 account, bank2 account, amount; `fromBank1`: the debit is in bank1. */
  a1: string;
  a2: string;
  amount: number;
  fromBank1: boolean;
  outcome: Outcome;
  reason: string;
  /** The call in progress (named in an indeterminate outcome's reason). */
  step: 'begin' | 'register debit' | 'register credit' | 'commit';
  /** Commit was sent (else nobody ever asks to commit it: it must not be applied). */
  commitSent: boolean;
  startedAt: number;
}

/** A node + tsx child process; output appended to `logFile`; stopped by pid. */
class NodeChild {
  proc: ChildProcess | undefined;
  readonly lines: string[] = [];
  private exited: Promise<void> = Promise.resolve();
  private log: WriteStream | undefined;

  constructor(
    readonly label: string,
    private readonly script: string,
    private readonly args: string[],
    private readonly logFile: string,
  ) {}

  get running(): boolean {
    const p = this.proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** The end of the log file (for error messages). */
  tail(chars = 2000): string {
    try {
      return readFileSync(this.logFile, 'utf8').slice(-chars);
    } catch {
      return '';
    }
  }

  spawn(): void {
    if (this.running) return;
    this.log ??= createWriteStream(this.logFile, { flags: 'a' });
    this.log.write(`--- ${new Date().toISOString()} start ${this.label}\n`);
    const proc = spawn(process.execPath, ['--import', 'tsx', this.script, ...this.args], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    if (proc.pid !== undefined) trackPid(proc.pid);
    proc.stdout!.pipe(this.log, { end: false });
    proc.stderr!.pipe(this.log, { end: false });
    this.lines.length = 0;
    createInterface({ input: proc.stdout! }).on('line', (l) => this.lines.length < 1000 && this.lines.push(l));
    this.exited = new Promise((r) => {
      proc.once('exit', () => r());
      proc.once('error', () => r());
    });
  }

  /** Sends `signal` by pid and waits (bounded) for the exit; SIGKILL if it is still there. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', waitMs = 5000): Promise<void> {
    const p = this.proc;
    if (!p || p.pid === undefined) return;
    if (this.running) {
      try {
        process.kill(p.pid, signal);
      } catch {
        // gone
      }
      await atMost(this.exited, waitMs);
      if (this.running) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
        await atMost(this.exited, 5000);
      }
    }
    untrackPid(p.pid);
    this.proc = undefined;
  }

  async close(): Promise<void> {
    await this.kill('SIGTERM');
    this.log?.end();
    this.log = undefined;
  }
}

/** Polls `f` until truthy, at most `ms`; throws naming `what` (with the process's state). */
async function waitUntil<T>(what: string, child: NodeChild, f: () => Promise<T | undefined> | T | undefined, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    if (!child.running) throw new Error(`${child.label} exited (${child.proc?.exitCode ?? child.proc?.signalCode ?? 'not started'}) while waiting for ${what}\n--- log ---\n${child.tail()}`);
    const v = await Promise.resolve(f()).catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}\n--- log ---\n${child.tail()}`);
    await sleep(100);
  }
}

class Coordinator {
  readonly child: NodeChild;
  constructor(
    readonly index: number,
    readonly port: number,
    readonly metricsPort: number,
    consensus: string[],
    dir: string,
  ) {
    const args = ['--listen-host', '127.0.0.1', '--port', String(port), '--metrics-port', String(metricsPort), '--store', 'consensus', '--consensus-endpoints', consensus.join(','), '--root', '/nemesis-txn', ...COORDINATOR_FLAGS];
    this.child = new NodeChild(`txn coordinator ${index}`, TXN_MAIN, args, join(dir, `txn-coordinator-${index}.log`));
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child.spawn();
    await waitUntil(`${this.child.label} ready`, this.child, async () => (await fetch(`http://127.0.0.1:${this.metricsPort}/readyz`, { signal: AbortSignal.timeout(1000) })).ok, 30_000);
  }

  async isLeader(): Promise<boolean> {
    if (!this.child.running) return false;
    const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(1000) })).text();
    return /^synod_txn_is_leader(\{[^}]*\})? 1$/m.test(text);
  }
}

export class TxnWorkload implements Workload {
  readonly name = 'txn';
  private readonly clients: number;
  private readonly accounts: number;
  private ctx!: RunContext;
  private server: PostgresServer | undefined;
  private pools: pg.Pool[] = [];
  private participants: NodeChild[] = [];
  private participantAddrs: string[] = [];
  private coordinators: Coordinator[] = [];
  private client: TxnClient | undefined;
  private initialTotal = 0;
  private readonly transfers = new Map<string, Transfer>();
  private loops: Promise<void>[] = [];
  private stopping = false;
  private frozen = false;
  private committed = 0;
  private aborted = 0;
  private indeterminate = 0;
  private startedAt = 0;
  private stoppedAt = 0;
  private healedAt = 0;
  private kills = 0;
  private closed = false;
  /** The background kill-and-restart of a coordinator replica (onFault 'kill'), awaited by onHeal. */
  private restarting: Promise<void> | undefined;

  constructor(opts: TxnWorkloadOptions = {}) {
    this.clients = opts.clients ?? 4;
    this.accounts = opts.accounts ?? 4;
    if (!Number.isInteger(this.clients) || this.clients < 1) throw new Error(`txn workload: clients must be a positive integer, got ${opts.clients}`);
    if (!Number.isInteger(this.accounts) || this.accounts < 1) throw new Error(`txn workload: accounts must be a positive integer, got ${opts.accounts}`);
  }

  private account(bank: 1 | 2, i: number): string {
    return `${bank === 1 ? 'a' : 'b'}${i + 1}`;
  }

  async setup(ctx: RunContext): Promise<void> {
    this.ctx = ctx;
    const ports = await Promise.all([0, 1, 2, 3].map(() => freePort()));
    this.coordinators = [0, 1].map((i) => new Coordinator(i, ports[2 * i], ports[2 * i + 1], ctx.endpoints, ctx.dir));
    const pgStart = PostgresServer.start().then((s) => (this.server = s));
    // the replicas only need the consensus cluster: start them while initdb runs (all settled before a failure
    // is thrown, so teardown finds everything that did start)
    const failed = (await Promise.allSettled([pgStart, ...this.coordinators.map((c) => c.start())])).find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const server = this.server!;
    const admin = new pg.Pool({ connectionString: server.connectionString, max: 1 });
    try {
      await admin.query('CREATE DATABASE bank1');
      await admin.query('CREATE DATABASE bank2');
    } finally {
      await admin.end();
    }
    this.pools = ['bank1', 'bank2'].map((db) => {
      const pool = new pg.Pool({ connectionString: server.connectionStringFor(db), max: 2 });
      pool.on('error', () => undefined);
      return pool;
    });
    for (const bank of [1, 2] as const) {
      const accounts: Record<string, number> = {};
      for (let i = 0; i < this.accounts; i++) accounts[this.account(bank, i)] = INITIAL_BALANCE;
      await createBank(this.pools[bank - 1], accounts);
    }
    this.initialTotal = 2 * this.accounts * INITIAL_BALANCE;
    const endpoints = this.coordinators.map((c) => c.endpoint).join(',');
    this.participants = [1, 2].map((bank) => new NodeChild(`bank${bank} participant`, PARTICIPANT_MAIN, [server.connectionStringFor(`bank${bank}`), `bank${bank}`, '0', endpoints], join(ctx.dir, `txn-bank${bank}-participant.log`)));
    for (const p of this.participants) p.spawn();
    this.participantAddrs = await Promise.all(
      this.participants.map(async (p) => {
        const line = await waitUntil(`${p.label} listening`, p, () => p.lines.find((l) => l.startsWith('LISTENING ')), 30_000);
        return `127.0.0.1:${line.split(' ')[1]}`;
      }),
    );
    this.client = new TxnClient({ endpoints: this.coordinators.map((c) => c.endpoint), deadlineMs: CALL_DEADLINE_MS });
    ctx.log(`txn: PostgreSQL on ${server.port}, participants ${this.participantAddrs.join(' ')}, coordinators ${endpoints}, ${this.accounts}×${INITIAL_BALANCE} per bank`);
  }

  start(): void {
    this.startedAt = Date.now();
    this.loops = Array.from({ length: this.clients }, (_, i) => this.loop(i, this.ctx.rng.fork(`txn-client-${i}`)));
  }

  private async loop(c: number, rng: Rng): Promise<void> {
    const end = Date.now() + MAX_LOAD_MS;
    for (let seq = 0; !this.stopping && Date.now() < end; seq++) {
      const t: Transfer = {
        gid: `nem-${this.ctx.seed}-c${c}-${seq}`,
        a1: this.account(1, rng.int(this.accounts)),
        a2: this.account(2, rng.int(this.accounts)),
        amount: rng.range(1, 20),
        fromBank1: rng.int(2) === 0,
        outcome: 'in-flight',
        reason: '',
        step: 'begin',
        commitSent: false,
        startedAt: Date.now(),
      };
      this.transfers.set(t.gid, t);
      let outcome: Outcome;
      try {
        const r = await this.transfer(t);
        outcome = r.state === 'COMMITTED' ? 'COMMITTED' : r.state === 'ABORTED' ? 'ABORTED' : 'indeterminate';
        t.reason = r.reason || r.state;
      } catch (err) {
        outcome = 'indeterminate';
        t.reason = `${t.step}: ${(err as Error).message}`;
      }
      if (this.frozen) return; // stop() gave up on it: it stays indeterminate
      t.outcome = outcome;
      if (outcome === 'COMMITTED') this.committed++;
      else if (outcome === 'ABORTED') this.aborted++;
      else {
        this.indeterminate++;
        await sleep(100 + rng.int(200));
      }
    }
  }

  /** One transfer, as apps/txn/test/txn.spec.ts does it: Begin, RegisterBranch debit / credit, Commit. */
  private async transfer(t: Transfer): Promise<{ state: TxnState; reason: string }> {
    const c = this.client!;
    const [p1, p2] = this.participantAddrs;
    const debit = t.fromBank1 ? { account: t.a1, at: p1 } : { account: t.a2, at: p2 };
    const credit = t.fromBank1 ? { account: t.a2, at: p2 } : { account: t.a1, at: p1 };
    const { globalId } = await c.begin({ timeoutMs: TXN_TIMEOUT_MS, globalId: t.gid });
    t.step = 'register debit';
    await c.registerBranch(globalId, 'debit', debit.at, JSON.stringify({ account: debit.account, delta: -t.amount }));
    t.step = 'register credit';
    await c.registerBranch(globalId, 'credit', credit.at, JSON.stringify({ account: credit.account, delta: t.amount }));
    t.step = 'commit';
    t.commitSent = true;
    return c.commit(globalId, { deadlineMs: COMMIT_DEADLINE_MS });
  }

  completed(): number {
    return this.committed + this.aborted;
  }

  async onFault(kind: FaultKind): Promise<void> {
    if (kind !== 'kill') return;
    const leader = await this.leader(5000);
    if (!leader) {
      this.ctx.log('txn: no coordinator leader found to kill');
      return;
    }
    this.ctx.log(`txn: SIGKILL coordinator ${leader.index} (leader, pid ${leader.child.pid}); restart in ${RESTART_AFTER_MS} ms`);
    await leader.child.kill('SIGKILL');
    this.kills++;
    this.restarting = (async () => {
      await sleep(RESTART_AFTER_MS);
      await this.restart(leader);
    })();
  }

  private async restart(c: Coordinator): Promise<void> {
    if (c.child.running || this.closed) return;
    try {
      await c.start();
      this.ctx.log(`txn: coordinator ${c.index} restarted (pid ${c.child.pid})`);
    } catch (err) {
      this.ctx.log(`txn: restart of coordinator ${c.index} failed: ${(err as Error).message}`);
      await c.child.kill('SIGKILL');
    }
  }

  async onHeal(): Promise<void> {
    this.healedAt = Date.now();
    if (this.restarting) await this.restarting;
    this.restarting = undefined;
    // whatever happened, every replica runs again after the heal
    for (const c of this.coordinators) if (!c.child.running) await this.restart(c);
  }

  private async leader(ms: number): Promise<Coordinator | undefined> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      for (const c of this.coordinators) if (await c.isLeader().catch(() => false)) return c;
      await sleep(100);
    }
    return undefined;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await atMost(Promise.allSettled(this.loops), STOP_WAIT_MS);
    this.frozen = true;
    this.stoppedAt = Date.now();
    for (const t of this.transfers.values()) {
      if (t.outcome !== 'in-flight') continue;
      t.outcome = 'indeterminate';
      t.reason = `still in flight ${STOP_WAIT_MS} ms after stop`;
      this.indeterminate++;
    }
  }

  async check(): Promise<WorkloadResult> {
    const violations: string[] = [];
    const lost: string[] = [];
    const checkStart = Date.now();
    if (this.restarting) await this.restarting;
    for (const c of this.coordinators) if (!c.child.running) await this.restart(c);
    const client = this.client!;
    const [bank1, bank2] = this.pools;

    // (a) nothing of the run in doubt within 10 s: no undecided/unfinished record, no prepared transaction
    const inDoubt = async (): Promise<string[]> => {
      // undecided (ACTIVE, PREPARING), stuck (NEEDS_ATTENTION), or decided with phase two not finished
      const open = (await client.list([], 10_000))
        .filter((t) => OPEN_STATES.has(t.state) || !t.completed)
        .map((t) => `${t.globalId} (${t.state}${t.decision !== 'TXN_STATE_UNSPECIFIED' && t.decision !== t.state ? `, decision ${t.decision}` : ''}${t.completed ? '' : ', phase two pending'})`);
      const prepared = [...(await preparedGids(bank1)).map((g) => ['bank1', g]), ...(await preparedGids(bank2)).map((g) => ['bank2', g])].map(([db, g]) => {
        const p = parseGid(g);
        return `${p ? p.globalId : g} (prepared in ${db})`;
      });
      return [...open, ...prepared];
    };
    let left: string[] = ['(not checked yet)'];
    let lastError = '';
    const deadline = checkStart + RESOLVE_WITHIN_MS;
    for (;;) {
      try {
        left = await inDoubt();
        lastError = '';
      } catch (err) {
        lastError = (err as Error).message;
      }
      if ((left.length === 0 && !lastError) || Date.now() > deadline) break;
      await sleep(200);
    }
    const resolvedAt = Date.now();
    if (lastError) violations.push(`could not read the in-doubt transactions within ${RESOLVE_WITHIN_MS} ms: ${lastError}`);
    if (left.length > 0) violations.push(`in doubt ${RESOLVE_WITHIN_MS} ms after heal (${left.length}): ${left.slice(0, 20).join(', ')}${left.length > 20 ? ', ...' : ''}`);

    // (b) conservation, (c) no negative balance, balances agree with the transfer records
    const bal = { ...(await balances(bank1)), ...(await balances(bank2)) };
    const total = Object.values(bal).reduce((a, b) => a + b, 0);
    if (total !== this.initialTotal) violations.push(`money not conserved: total ${total}, initially ${this.initialTotal} (${JSON.stringify(bal)})`);
    for (const [id, b] of Object.entries(bal)) if (b < 0) violations.push(`negative balance: ${id} = ${b}`);
    const rows = [...(await transferRows(bank1)).map((r) => ({ ...r, db: 1 })), ...(await transferRows(bank2)).map((r) => ({ ...r, db: 2 }))];
    const expected: Record<string, number> = Object.fromEntries(Object.keys(bal).map((id) => [id, INITIAL_BALANCE]));
    for (const r of rows) expected[r.account] = (expected[r.account] ?? 0) + r.delta;
    for (const [id, b] of Object.entries(bal)) if (expected[id] !== b) violations.push(`balance of ${id} is ${b}, its transfer records say ${expected[id]}`);

    // (d) per transfer: what the client saw against what the databases hold
    const byGid = new Map<string, { db: number; branchId: string; account: string; delta: number }[]>();
    for (const r of rows) byGid.set(r.gid, [...(byGid.get(r.gid) ?? []), r]);
    const indeterminateFinal: Record<string, number> = { applied: 0, 'not applied': 0 };
    for (const t of this.transfers.values()) {
      const got = byGid.get(t.gid) ?? [];
      byGid.delete(t.gid);
      const debitDb = t.fromBank1 ? 1 : 2;
      const creditDb = t.fromBank1 ? 2 : 1;
      const debit = got.find((r) => r.branchId === 'debit');
      const credit = got.find((r) => r.branchId === 'credit');
      const wrong = got.filter((r) => !((r.branchId === 'debit' && r.db === debitDb && r.delta === -t.amount && r.account === (t.fromBank1 ? t.a1 : t.a2)) || (r.branchId === 'credit' && r.db === creditDb && r.delta === t.amount && r.account === (t.fromBank1 ? t.a2 : t.a1))));
      if (wrong.length > 0) violations.push(`${t.gid}: unexpected transfer records ${JSON.stringify(wrong)}`);
      const applied = debit !== undefined && credit !== undefined;
      const partial = (debit === undefined) !== (credit === undefined);
      const what = `${t.gid} (${t.amount} ${t.fromBank1 ? `${t.a1}→${t.a2}` : `${t.a2}→${t.a1}`})`;
      if (t.outcome === 'COMMITTED') {
        if (!applied) lost.push(`${what}: acknowledged COMMITTED, ${debit ? '' : `debit missing in bank${debitDb}`}${!debit && !credit ? ', ' : ''}${credit ? '' : `credit missing in bank${creditDb}`}`);
      } else if (t.outcome === 'ABORTED') {
        if (debit || credit) violations.push(`${what}: acknowledged ABORTED (${t.reason}) but ${[debit && `debit applied in bank${debitDb}`, credit && `credit applied in bank${creditDb}`].filter(Boolean).join(' and ')}`);
      } else {
        if (partial) violations.push(`${what}: indeterminate (${t.reason}) and only half applied: ${debit ? `debit in bank${debitDb}` : `credit in bank${creditDb}`}, no ${debit ? 'credit' : 'debit'} (atomicity)`);
        else if (applied && !t.commitSent) violations.push(`${what}: applied, but the client never sent Commit (it failed before: ${t.reason})`);
        else indeterminateFinal[applied ? 'applied' : 'not applied']++;
      }
    }
    const unknown = [...this.transfers.values()].filter((t) => t.outcome === 'indeterminate');
    if (unknown.length > 0) this.ctx.log(`txn: indeterminate transfers: ${unknown.slice(0, 5).map((t) => `${t.gid} (${t.reason})`).join('; ')}${unknown.length > 5 ? '; ...' : ''}`);
    for (const [gid, rs] of byGid) violations.push(`transfer records of a global id the clients never issued: ${gid} ${JSON.stringify(rs)}`);

    const elapsed = ((this.stoppedAt || Date.now()) - this.startedAt) / 1000;
    return {
      ops: this.committed + this.aborted,
      indeterminate: this.indeterminate,
      violations,
      lost,
      stats: {
        committed: this.committed,
        aborted: this.aborted,
        indeterminate: this.indeterminate,
        indeterminateApplied: indeterminateFinal.applied,
        indeterminateNotApplied: indeterminateFinal['not applied'],
        indeterminateCommitSent: unknown.filter((t) => t.commitSent).length,
        transfersPerSec: elapsed > 0 ? Math.round(((this.committed + this.aborted) / elapsed) * 10) / 10 : 0,
        resolvedAfterHealMs: resolvedAt - (this.healedAt || checkStart),
        resolvedInCheckMs: resolvedAt - checkStart,
        coordinatorKills: this.kills,
        total,
      },
    };
  }

  async teardown(): Promise<void> {
    this.stopping = true;
    this.frozen = true;
    this.closed = true;
    if (this.restarting) await atMost(this.restarting, 35_000);
    this.client?.close();
    this.client = undefined;
    await Promise.allSettled(this.participants.map((p) => p.close()));
    await Promise.allSettled(this.coordinators.map((c) => c.child.close()));
    await Promise.allSettled(this.pools.map((p) => p.end()));
    this.pools = [];
    await this.server?.stop();
    this.server = undefined;
  }
}
