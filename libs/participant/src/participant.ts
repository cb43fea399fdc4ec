/**
 * PostgresParticipant: a branch of a Synod two-phase-commit transaction, done in PostgreSQL with real
 * two-phase commit (PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED). docs/participant.md.
 *
 * Phase one (`prepare`): BEGIN; insert the branch's row into `synod_participant_branches` (outcome 'prepared');
 * run the application's `work` in that transaction; `PREPARE TRANSACTION '<gid>'`. The work and the branch row
 * become durable-but-undecided together; COMMIT PREPARED makes both visible, ROLLBACK PREPARED removes both,
 * after which the SDK records outcome 'aborted' in a statement of its own. A no vote (work returned `{ vote:
 * 'no' }` or threw) rolls back and records 'aborted' with the reason.
 *
 * Every step on one branch (prepare, commit, abort, recovery) runs under the branch's lock: an in-process
 * mutex per gid, then a PostgreSQL session advisory lock on (class, hash(gid)) for replicas of the same
 * participant sharing the database. Both waits are bounded (`lockWaitMs`).
 *
 * Recovery (`recover()`, at start and every `recoveryIntervalMs`): the branches of this participant still in
 * pg_prepared_xacts after `recoverAfterMs` are finished by the decision their coordinator made (a
 * {@link DecisionSource}; by default Coordinator.Status over gRPC); undecided ones are left for later.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { loadTxnProto } from '@app/proto';
import { CoordinatorDecisions, Decision, DecisionSource, coordinatorDecisions } from './decisions.js';
import { ParticipantError, isUnavailable, messageOf, toServiceError } from './errors.js';
import { branchGid, gidPrefix, parseGid, validateName } from './gid.js';

export const BRANCHES_TABLE = 'synod_participant_branches';

/** The branch a Prepare carries. */
export interface Branch {
  globalId: string;
  branchId: string;
  /** The payload registered with the coordinator (empty if none). */
  payload: Buffer;
}

/** What `work` returns to vote no (throwing votes no too, with the error's message as the reason). */
export interface NoVote {
  vote: 'no';
  reason: string;
}

/**
 * The branch's work: runs inside the branch's transaction on `client` (do not COMMIT, ROLLBACK or PREPARE it;
 * do not use another connection for the work). Resolve to vote yes, resolve to {@link NoVote} or throw to vote
 * no. Keep it bounded (statement_timeout): a Prepare of the same branch waits for it.
 */
export type Work = (client: pg.PoolClient, branch: Branch) => Promise<void | NoVote>;

export interface ParticipantLogger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface PostgresParticipantOptions {
  /** The pool to use (not closed by `close()`), or `connectionString` for a pool the participant owns. */
  pool?: pg.Pool;
  connectionString?: string;
  /** Participant name: part of every gid; one name per (application, database). */
  name: string;
  work: Work;
  /** Coordinator endpoints (host:port) for recovery's default decision source. */
  coordinator?: string[];
  /** Decision source for recovery (overrides `coordinator`). Neither: no recovery. */
  decisions?: DecisionSource;
  /** Recovery period (ms, default 2000; 0 = only explicit `recover()` calls and the one at start). */
  recoveryIntervalMs?: number;
  /** Recovery leaves branches prepared for less than this to the coordinator's phase two (ms, default 5000). */
  recoverAfterMs?: number;
  /** Bound on waiting for another operation on the same branch (ms, default 30000): then UNAVAILABLE. */
  lockWaitMs?: number;
  /** Finished branches are remembered this long (ms, default 7 days; 0 = forever). */
  retentionMs?: number;
  /** Deadline of the default decision source's Status calls (ms, default 3000). */
  coordinatorTimeoutMs?: number;
  logger?: ParticipantLogger;
}

export interface PrepareRequest {
  globalId: string;
  branchId: string;
  payload?: Buffer | Uint8Array;
}

/** The vote (as PrepareResponse). */
export interface PrepareResult {
  prepared: boolean;
  reason: string;
}

/**
 * What a Commit / Abort did: `committed` / `aborted` = this call finished the prepared branch;
 * `already-committed` / `already-aborted` = it had been finished before; `unknown` = no trace of the branch
 * (never prepared here, or finished and forgotten after `retentionMs`). Abort of an unknown branch records it
 * as aborted, so a Prepare arriving later votes no.
 */
export type PhaseTwoResult = 'committed' | 'aborted' | 'already-committed' | 'already-aborted' | 'unknown';

export interface ParticipantStats {
  /** Fresh PREPAREs (yes votes that ran the work). */
  prepared: number;
  /** No votes that ran (or tried to run) the work. */
  votedNo: number;
  /** Times `work` was called. */
  workRuns: number;
  /** COMMIT PREPARED / ROLLBACK PREPARED done (by the coordinator's calls or by recovery). */
  committed: number;
  aborted: number;
  /** Branches finished by recovery (included in committed / aborted). */
  recovered: number;
  /** Recovery passes run. */
  recoveryRuns: number;
}

export interface PreparedBranch {
  gid: string;
  globalId: string;
  branchId: string;
  preparedAt: Date;
}

export interface RecoveryReport {
  /** Prepared branches looked at (old enough). */
  examined: number;
  committed: number;
  aborted: number;
  /** Left prepared: undecided, no answer from the decision source, or busy. */
  left: number;
  errors: string[];
}

const LOCK_CLASS = createHash('sha256').update('synod_participant').digest().readInt32BE(0);

const defaultLogger: ParticipantLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (m) => process.stderr.write(`${new Date().toISOString()} warn  [participant] ${m}\n`),
  error: (m) => process.stderr.write(`${new Date().toISOString()} error [participant] ${m}\n`),
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function redact(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(connection string)';
  }
}

/** PostgreSQL's "prepared transaction with identifier ... does not exist". */
const UNDEFINED_OBJECT = '42704';

type Outcome = { outcome: string; reason: string | null } | undefined;

export class PostgresParticipant {
  readonly name: string;
  readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly work: Work;
  private readonly prefix: string;
  private readonly log: ParticipantLogger;
  private readonly decisions: DecisionSource | undefined;
  private readonly ownedDecisions: CoordinatorDecisions | undefined;
  private readonly recoveryIntervalMs: number;
  private readonly recoverAfterMs: number;
  private readonly lockWaitMs: number;
  private readonly retentionMs: number;
  private readonly where: string;
  private readonly locks = new Map<string, Promise<void>>();
  private readonly counters: ParticipantStats = { prepared: 0, votedNo: 0, workRuns: 0, committed: 0, aborted: 0, recovered: 0, recoveryRuns: 0 };
  private starting: Promise<void> | undefined;
  private initialized: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private recovering: Promise<RecoveryReport> | undefined;
  private lastPurge = 0;
  private server: grpc.Server | undefined;

  constructor(options: PostgresParticipantOptions) {
    this.name = validateName(options.name);
    if (typeof options.work !== 'function') throw new ParticipantError('INVALID_ARGUMENT', 'participant: `work` (the branch work function) is required');
    if (options.pool !== undefined) {
      this.pool = options.pool;
      this.ownsPool = false;
      this.where = 'PostgreSQL';
    } else if (options.connectionString !== undefined) {
      this.pool = new pg.Pool({ connectionString: options.connectionString, max: 10, connectionTimeoutMillis: 5000 });
      // An idle client that loses its connection must not crash the process.
      this.pool.on('error', (e) => this.log.warn(`idle PostgreSQL connection failed: ${e.message}`));
      this.ownsPool = true;
      this.where = `PostgreSQL ${redact(options.connectionString)}`;
    } else throw new ParticipantError('INVALID_ARGUMENT', 'participant: `pool` or `connectionString` is required');
    this.work = options.work;
    this.prefix = gidPrefix(this.name);
    this.log = options.logger ?? defaultLogger;
    if (options.decisions !== undefined) this.decisions = options.decisions;
    else if (options.coordinator !== undefined && options.coordinator.length > 0) {
      this.ownedDecisions = coordinatorDecisions(options.coordinator, { timeoutMs: options.coordinatorTimeoutMs });
      this.decisions = this.ownedDecisions;
    }
    this.recoveryIntervalMs = options.recoveryIntervalMs ?? 2000;
    this.recoverAfterMs = options.recoverAfterMs ?? 5000;
    this.lockWaitMs = options.lockWaitMs ?? 30_000;
    this.retentionMs = options.retentionMs ?? 7 * 24 * 3600_000;
  }

  /** Counters (a copy). */
  stats(): ParticipantStats {
    return { ...this.counters };
  }

  /** The gid of a branch of this participant (throws INVALID_ARGUMENT for ids that cannot be one). */
  gid(globalId: string, branchId: string): string {
    return branchGid(this.name, globalId, branchId);
  }

  // ---- lifecycle ------------------------------------------------------------------------------------------

  /**
   * Creates the branches table, checks max_prepared_transactions, runs a first recovery pass (when there is a
   * decision source) and starts the periodic one. Idempotent.
   */
  start(): Promise<void> {
    this.starting ??= this.doStart().catch((e: unknown) => {
      this.starting = undefined; // a later start() tries again (e.g. once PostgreSQL is back)
      throw e;
    });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    await this.ready();
    if (this.decisions !== undefined) {
      await this.doRecover(this.recoverAfterMs, this.decisions).catch((e: unknown) => this.log.warn(`recovery at start: ${messageOf(e)}`));
      this.schedule();
    }
    this.log.info(`participant "${this.name}" started on ${this.where}${this.decisions ? `; recovery every ${this.recoveryIntervalMs} ms for branches prepared over ${this.recoverAfterMs} ms` : '; no decision source: no recovery'}`);
  }

  /** The table exists and PREPARE TRANSACTION is enabled (once; retried after a failure). */
  private ready(): Promise<void> {
    if (this.closed) return Promise.reject(new ParticipantError('UNAVAILABLE', `participant "${this.name}" is closed`));
    this.initialized ??= this.init().catch((e: unknown) => {
      this.initialized = undefined;
      throw e;
    });
    return this.initialized;
  }

  private async init(): Promise<void> {
    const client = await this.connect('start');
    try {
      const r = await client.query<{ mpt: string }>("SELECT current_setting('max_prepared_transactions') AS mpt");
      if (Number(r.rows[0].mpt) <= 0)
        throw new ParticipantError('FAILED_PRECONDITION', `${this.where}: max_prepared_transactions is 0, so PREPARE TRANSACTION is disabled; set it (postgresql.conf, restart) to at least max_connections`);
      // Serialized by a transaction-level advisory lock: concurrent CREATE TABLE IF NOT EXISTS can collide.
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_CLASS]);
      await client.query(`CREATE TABLE IF NOT EXISTS ${BRANCHES_TABLE} (gid text PRIMARY KEY, outcome text NOT NULL, finished_at timestamptz NOT NULL DEFAULT now(), reason text)`);
      await client.query('COMMIT');
      client.release();
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release(true);
      throw this.wrap('start', e);
    }
  }

  private schedule(): void {
    if (this.closed || this.recoveryIntervalMs <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.recover()
        .catch((e: unknown) => this.log.warn(`recovery: ${messageOf(e)}`))
        .finally(() => this.schedule());
    }, this.recoveryIntervalMs);
    this.timer.unref();
  }

  /** Starts (if needed) and serves the Participant gRPC service on host:port (0 = any); returns the port. */
  async listen(host: string, port: number, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    await this.start();
    if (this.server !== undefined) throw new Error('participant: already listening');
    const server = new grpc.Server();
    server.addService(loadTxnProto().Participant.service, this.implementation());
    const h = host.includes(':') ? `[${host}]` : host;
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${h}:${port}`, credentials, (err, p) => (err ? reject(new Error(`participant: cannot listen on ${h}:${port}: ${err.message}`)) : resolve(p))),
    );
    this.server = server;
    return bound;
  }

  /** Stops recovery and the gRPC server (bounded: 1 s grace), then ends the pool if the participant owns it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const server = this.server;
    this.server = undefined;
    if (server !== undefined)
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    await this.recovering?.catch(() => undefined);
    await this.starting?.catch(() => undefined);
    // Let operations holding a branch lock finish (each is bounded by its statements and lockWaitMs).
    if (this.locks.size > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.locks.values()]), new Promise<void>((r) => (t = setTimeout(r, this.lockWaitMs)))]).finally(() => clearTimeout(t));
    }
    this.ownedDecisions?.close();
    if (this.ownsPool) await this.pool.end().catch((e: unknown) => this.log.warn(`closing the pool: ${messageOf(e)}`));
  }

  // ---- gRPC ---------------------------------------------------------------------------------------------

  /** Handlers for `loadTxnProto().Participant.service`. */
  implementation(): grpc.UntypedServiceImplementation {
    const unary =
      <Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
      (call, callback) => {
        fn(call.request).then(
          (res) => callback(null, res),
          (e: unknown) => callback(toServiceError(e)),
        );
      };
    return {
      Prepare: unary(async (req: PrepareRequest) => this.prepare(req)),
      Commit: unary(async (req: { globalId: string; branchId: string }) => {
        await this.commit(req.globalId, req.branchId);
        return {};
      }),
      Abort: unary(async (req: { globalId: string; branchId: string }) => {
        await this.abort(req.globalId, req.branchId);
        return {};
      }),
    };
  }

  // ---- phase one ----------------------------------------------------------------------------------------

  /** Phase one of branch (globalId, branchId): see the file comment. Idempotent. */
  async prepare(req: PrepareRequest): Promise<PrepareResult> {
    const gid = this.gid(req?.globalId, req?.branchId);
    const branch: Branch = { globalId: req.globalId, branchId: req.branchId, payload: req.payload === undefined ? Buffer.alloc(0) : Buffer.from(req.payload) };
    await this.ready();
    const r = await this.withBranch(gid, 'Prepare', false, (client) => this.prepareLocked(client, gid, branch));
    return r!;
  }

  private async prepareLocked(client: pg.PoolClient, gid: string, branch: Branch): Promise<PrepareResult> {
    if (await this.isPrepared(client, gid)) return { prepared: true, reason: 'already prepared' };
    const done = await this.outcome(client, gid);
    if (done !== undefined) return done.outcome === 'aborted' ? { prepared: false, reason: `already aborted${done.reason ? `: ${done.reason}` : ''}` } : { prepared: true, reason: 'already committed' };

    await client.query('BEGIN');
    try {
      await client.query(`INSERT INTO ${BRANCHES_TABLE} (gid, outcome, finished_at) VALUES ($1, 'prepared', now())`, [gid]);
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
    let verdict: void | NoVote;
    try {
      this.counters.workRuns++;
      verdict = await this.work(client, branch);
    } catch (e) {
      verdict = { vote: 'no', reason: `work failed: ${messageOf(e) || String(e)}` };
    }
    if (verdict !== undefined && verdict !== null && verdict.vote === 'no') {
      await this.rollbackOrUnavailable(client, gid, verdict.reason);
      return this.votedNo(client, gid, verdict.reason || 'the participant voted no');
    }
    let tag: string;
    try {
      tag = (await client.query(`PREPARE TRANSACTION '${gid}'`)).command;
    } catch (e) {
      // An answer from the server means "not prepared"; a lost connection leaves it unknown (a retry finds out).
      if (isUnavailable(e)) throw this.wrap(`PREPARE TRANSACTION of ${gid} (outcome unknown: retry the Prepare)`, e);
      await this.rollbackOrUnavailable(client, gid, messageOf(e));
      return this.votedNo(client, gid, `PREPARE TRANSACTION failed: ${messageOf(e)}`);
    }
    if (tag !== 'PREPARE') return this.votedNo(client, gid, 'the transaction was aborted by an error inside work (PREPARE TRANSACTION rolled it back)');
    this.counters.prepared++;
    this.log.debug(`prepared ${gid}`);
    return { prepared: true, reason: '' };
  }

  /** ROLLBACK after a no vote; if the connection cannot even do that, the database is unavailable. */
  private async rollbackOrUnavailable(client: pg.PoolClient, gid: string, why: string): Promise<void> {
    try {
      await client.query('ROLLBACK');
    } catch (e) {
      throw new ParticipantError('UNAVAILABLE', `${this.where}: Prepare of ${gid} failed (${why}) and ROLLBACK failed too: ${messageOf(e)}; retry`);
    }
  }

  /** Records a no vote (so a repeated Prepare answers the same) and returns it. */
  private async votedNo(client: pg.PoolClient, gid: string, reason: string): Promise<PrepareResult> {
    this.counters.votedNo++;
    try {
      await client.query(`INSERT INTO ${BRANCHES_TABLE} (gid, outcome, finished_at, reason) VALUES ($1, 'aborted', now(), $2) ON CONFLICT (gid) DO NOTHING`, [gid, reason]);
    } catch (e) {
      // Still a valid no: the work was rolled back. A retried Prepare may run it again, which is safe.
      this.log.warn(`could not record the no vote of ${gid}: ${messageOf(e)}`);
    }
    this.log.debug(`voted no on ${gid}: ${reason}`);
    return { prepared: false, reason };
  }

  // ---- phase two ----------------------------------------------------------------------------------------

  /**
   * COMMIT PREPARED. Idempotent: an unknown or already committed branch is success; a branch recorded as
   * aborted is FAILED_PRECONDITION (the coordinator contradicts itself).
   */
  async commit(globalId: string, branchId: string): Promise<PhaseTwoResult> {
    const gid = this.gid(globalId, branchId);
    await this.ready();
    return (await this.withBranch(gid, 'Commit', false, (client) => this.commitLocked(client, gid)))!;
  }

  private async commitLocked(client: pg.PoolClient, gid: string): Promise<PhaseTwoResult> {
    try {
      await client.query(`COMMIT PREPARED '${gid}'`);
    } catch (e) {
      if ((e as { code?: string }).code !== UNDEFINED_OBJECT) throw e;
      const done = await this.outcome(client, gid);
      if (done === undefined) return 'unknown';
      if (done.outcome === 'aborted') throw new ParticipantError('FAILED_PRECONDITION', `branch ${gid} was aborted${done.reason ? ` (${done.reason})` : ''}: it cannot be committed`);
      return 'already-committed';
    }
    this.counters.committed++;
    this.log.debug(`committed ${gid}`);
    await client.query(`UPDATE ${BRANCHES_TABLE} SET outcome = 'committed', finished_at = now() WHERE gid = $1`, [gid]).catch((e: unknown) => this.log.warn(`marking ${gid} committed: ${messageOf(e)} (the commit itself is done)`));
    return 'committed';
  }

  /**
   * ROLLBACK PREPARED. Idempotent: an unknown branch is success and is recorded as aborted (a Prepare arriving
   * later votes no); a committed branch is FAILED_PRECONDITION.
   */
  async abort(globalId: string, branchId: string, reason = 'aborted by the coordinator'): Promise<PhaseTwoResult> {
    const gid = this.gid(globalId, branchId);
    await this.ready();
    return (await this.withBranch(gid, 'Abort', false, (client) => this.abortLocked(client, gid, reason)))!;
  }

  private async abortLocked(client: pg.PoolClient, gid: string, reason: string): Promise<PhaseTwoResult> {
    let rolledBack = true;
    try {
      await client.query(`ROLLBACK PREPARED '${gid}'`);
    } catch (e) {
      if ((e as { code?: string }).code !== UNDEFINED_OBJECT) throw e;
      rolledBack = false;
    }
    if (rolledBack) {
      this.counters.aborted++;
      this.log.debug(`rolled back ${gid}`);
    }
    const ins = await client.query(`INSERT INTO ${BRANCHES_TABLE} (gid, outcome, finished_at, reason) VALUES ($1, 'aborted', now(), $2) ON CONFLICT (gid) DO NOTHING`, [gid, reason]);
    if (rolledBack) return 'aborted';
    if (ins.rowCount === 1) return 'unknown';
    const done = await this.outcome(client, gid);
    if (done?.outcome === 'aborted') return 'already-aborted';
    throw new ParticipantError('FAILED_PRECONDITION', `branch ${gid} was committed: it cannot be aborted`);
  }

  // ---- recovery -----------------------------------------------------------------------------------------

  /** This participant's branches in pg_prepared_xacts (of this database) prepared at least `minAgeMs` ago. */
  async preparedBranches(minAgeMs = 0): Promise<PreparedBranch[]> {
    let r: pg.QueryResult<{ gid: string; prepared: Date }>;
    try {
      r = await this.pool.query(
        `SELECT gid, prepared FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1) AND prepared <= clock_timestamp() - make_interval(secs => $2::float8 / 1000) ORDER BY prepared`,
        [this.prefix, minAgeMs],
      );
    } catch (e) {
      throw this.wrap('listing prepared transactions', e);
    }
    const out: PreparedBranch[] = [];
    for (const row of r.rows) {
      const p = parseGid(row.gid);
      if (p !== undefined && p.name === this.name) out.push({ gid: row.gid, globalId: p.globalId, branchId: p.branchId, preparedAt: row.prepared });
    }
    return out;
  }

  /**
   * One recovery pass: every branch prepared for at least `minAgeMs` (default `recoverAfterMs`) is finished by
   * its decision from `decisions` (default: the configured source). Undecided branches, branches the source
   * has no answer for, and branches busy in another operation are left for a later pass. Concurrent calls
   * share one pass (when they pass no options).
   */
  recover(options: { minAgeMs?: number; decisions?: DecisionSource } = {}): Promise<RecoveryReport> {
    if (options.minAgeMs === undefined && options.decisions === undefined) {
      this.recovering ??= this.doRecover(this.recoverAfterMs, this.decisions).finally(() => (this.recovering = undefined));
      return this.recovering;
    }
    return this.doRecover(options.minAgeMs ?? this.recoverAfterMs, options.decisions ?? this.decisions);
  }

  private async doRecover(minAgeMs: number, decisions: DecisionSource | undefined): Promise<RecoveryReport> {
    if (decisions === undefined) throw new ParticipantError('FAILED_PRECONDITION', 'participant: recovery needs a decision source (options `coordinator` or `decisions`)');
    await this.ready();
    this.counters.recoveryRuns++;
    const report: RecoveryReport = { examined: 0, committed: 0, aborted: 0, left: 0, errors: [] };
    const branches = await this.preparedBranches(minAgeMs);
    for (const b of branches) {
      if (this.closed) break;
      report.examined++;
      let decision: Decision;
      try {
        decision = await decisions(b.globalId);
      } catch (e) {
        report.left++;
        report.errors.push(`${b.gid}: no decision: ${messageOf(e)}`);
        continue;
      }
      if (decision !== 'COMMITTED' && decision !== 'ABORTED') {
        report.left++;
        continue;
      }
      try {
        const res = await this.withBranch(b.gid, 'recovery', true, (client) => (decision === 'COMMITTED' ? this.commitLocked(client, b.gid) : this.abortLocked(client, b.gid, 'aborted (recovery: the coordinator decided ABORT)')));
        if (res === 'committed') {
          report.committed++;
          this.counters.recovered++;
          this.log.info(`recovery: committed ${b.gid}`);
        } else if (res === 'aborted') {
          report.aborted++;
          this.counters.recovered++;
          this.log.info(`recovery: rolled back ${b.gid}`);
        } else if (res === undefined) report.left++; // busy: someone else is finishing it
      } catch (e) {
        report.left++;
        report.errors.push(`${b.gid}: ${messageOf(e)}`);
      }
    }
    if (report.errors.length > 0) this.log.warn(`recovery: ${report.errors.join('; ')}`);
    await this.purge();
    return report;
  }

  /** Forgets finished branches older than `retentionMs` (at most once a minute). */
  private async purge(): Promise<void> {
    if (this.retentionMs <= 0 || Date.now() - this.lastPurge < 60_000) return;
    this.lastPurge = Date.now();
    await this.pool
      .query(`DELETE FROM ${BRANCHES_TABLE} WHERE starts_with(gid, $1) AND finished_at < now() - make_interval(secs => $2::float8 / 1000)`, [this.prefix, this.retentionMs])
      .catch((e: unknown) => this.log.warn(`forgetting old branches: ${messageOf(e)}`));
  }

  // ---- helpers ------------------------------------------------------------------------------------------

  private async isPrepared(client: pg.PoolClient, gid: string): Promise<boolean> {
    const r = await client.query('SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()', [gid]);
    return (r.rowCount ?? 0) > 0;
  }

  private async outcome(client: pg.PoolClient, gid: string): Promise<Outcome> {
    const r = await client.query<{ outcome: string; reason: string | null }>(`SELECT outcome, reason FROM ${BRANCHES_TABLE} WHERE gid = $1`, [gid]);
    return r.rows[0];
  }

  private wrap(what: string, e: unknown): Error {
    if (e instanceof ParticipantError) return e;
    if (isUnavailable(e)) return new ParticipantError('UNAVAILABLE', `${this.where}: ${what} failed: ${messageOf(e)}; check that the database is up and reachable`);
    return new ParticipantError('INTERNAL', `${this.where}: ${what} failed: ${messageOf(e)}`);
  }

  private async connect(what: string): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (e) {
      throw new ParticipantError('UNAVAILABLE', `${this.where}: ${what}: cannot connect: ${messageOf(e)}; check that the database is up and reachable`);
    }
  }

  /**
   * Runs `fn` under the branch's lock (in-process mutex, then a session advisory lock), on a pooled client.
   * `tryOnly`: resolves undefined at once if the branch is busy. Otherwise waits at most `lockWaitMs`.
   */
  private async withBranch<T>(gid: string, what: string, tryOnly: boolean, fn: (client: pg.PoolClient) => Promise<T>): Promise<T | undefined> {
    if (this.closed) throw new ParticipantError('UNAVAILABLE', `participant "${this.name}" is closed`);
    const prev = this.locks.get(gid);
    if (tryOnly && prev !== undefined) return undefined;
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = (prev ?? Promise.resolve()).then(() => mine);
    this.locks.set(gid, tail);
    try {
      if (prev !== undefined) {
        let t: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([prev.then(() => false), new Promise<boolean>((r) => (t = setTimeout(() => r(true), this.lockWaitMs)))]).finally(() => clearTimeout(t));
        if (timedOut) throw new ParticipantError('UNAVAILABLE', `${what} of ${gid}: another operation on this branch has been running for over ${this.lockWaitMs} ms; retry`);
      }
      const client = await this.connect(`${what} of ${gid}`);
      const key = createHash('sha256').update(gid).digest().readInt32BE(0);
      let locked = false;
      let broken: unknown;
      try {
        const deadline = Date.now() + this.lockWaitMs;
        for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
          const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LOCK_CLASS, key]);
          if (r.rows[0].ok) break;
          if (tryOnly) return undefined;
          if (Date.now() >= deadline) throw new ParticipantError('UNAVAILABLE', `${what} of ${gid}: the branch is locked by another process (a replica of participant "${this.name}") for over ${this.lockWaitMs} ms; retry`);
          await sleep(pause);
        }
        locked = true;
        return await fn(client);
      } catch (e) {
        if (!(e instanceof ParticipantError) && isUnavailable(e)) broken = e;
        // Safety net: never hand a client back inside a transaction (outside one, ROLLBACK only warns).
        else await client.query('ROLLBACK').catch((err: unknown) => (broken = err));
        throw this.wrap(`${what} of ${gid}`, e);
      } finally {
        if (locked && broken === undefined) await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, key]).catch((e: unknown) => (broken = e));
        // A client whose connection failed (or whose advisory lock could not be released) is destroyed: its
        // session ends, which releases the lock and rolls back anything not prepared.
        client.release(broken === undefined ? undefined : broken instanceof Error ? broken : true);
      }
    } finally {
      release();
      if (this.locks.get(gid) === tail) this.locks.delete(gid);
    }
  }
}
