/**
 * The coordinator's two-phase-commit engine (runs its writes only on the leading replica).
 *
 * Decision log. Each global transaction is one record `tx/<global id>` in the replicated store, changed only by
 * compare-and-set writes guarded by the leader's epoch (libs/txn: a deposed leader's write is refused).
 *   Begin                  → ACTIVE (created)
 *   Commit                 → PREPARING (phase one starts only after this is durable)
 *   all branches vote yes  → COMMITTED  ← the commit point: Commit returns once this write is acknowledged
 *   a no, a timeout, Abort → ABORTED    (and no record at all means ABORTED too: presumed abort)
 *   phase two done         → completed = true (kept `retentionMs`, then deleted)
 *   phase two past its retry bound → NEEDS_ATTENTION (decision kept; retried slowly; an operator may Resolve)
 *
 * Failover. A new leader reads every record: PREPARING → ABORTED (the old leader died before deciding:
 * presumed abort; participants that prepared roll back), COMMITTED/ABORTED not completed → phase two again
 * (idempotent participant calls), ACTIVE → aborted at its deadline. So a failover only delays a decided
 * transaction; it never flips or forgets it.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadTxnProto } from '@app/proto';
import { NotLeaderError, StoreUnavailableError } from '@app/txn';
import type { Leadership, TxnStore } from '@app/txn';
import { ID_RE, decodeRecord, encodeRecord } from './record.js';
import type { BranchRecord, Decision, TxnRecord, TxnStateName } from './record.js';
import type { TxnMetrics } from './metrics.js';

export type TxnErrorCode = 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'FAILED_PRECONDITION' | 'UNAVAILABLE' | 'DEADLINE_EXCEEDED' | 'ABORTED' | 'RESOURCE_EXHAUSTED';

export class TxnError extends Error {
  constructor(
    readonly code: TxnErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TxnError';
  }
}

export interface EngineOptions {
  /** Deadline of one Prepare call (default 5000 ms; also bounded by the transaction's deadline). */
  prepareTimeoutMs: number;
  /** Deadline of one phase-two call (default 3000 ms). */
  phaseTwoTimeoutMs: number;
  /** Phase-two attempts per branch before the transaction shows NEEDS_ATTENTION (default 8, back-off 100 ms · 2^n ≤ 2 s). */
  phaseTwoAttempts: number;
  /** Retry interval of a NEEDS_ATTENTION transaction (default 5000 ms). */
  attentionRetryMs: number;
  /** How long completed records are kept (default 1 h). */
  retentionMs: number;
  /** Largest payload per branch (default 256 KiB). */
  maxPayloadBytes: number;
  /** Most branches per transaction (default 64). */
  maxBranches: number;
}

export const DEFAULT_ENGINE_OPTIONS: EngineOptions = {
  prepareTimeoutMs: 5000,
  phaseTwoTimeoutMs: 3000,
  phaseTwoAttempts: 8,
  attentionRetryMs: 5000,
  retentionMs: 600_000,
  maxPayloadBytes: 256 * 1024,
  maxBranches: 64,
};

export interface Logger {
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const EPOCH_KEY = 'synod-txn-epoch';
/** Gauges (in flight, in doubt, oldest, needs attention) are recomputed from the log at most this often. */
const GAUGE_INTERVAL_MS = 2000;

const key = (gid: string): string => `tx/${gid}`;

/**
 * Failpoints for fault tests (like etcd's gofail): `SYNOD_TXN_FAILPOINTS=before-decision=5000,after-decision=5000`
 * makes the leader sleep that many ms after phase one (before writing the decision) or after writing the
 * decision (before phase two), so a test can SIGKILL it exactly there. Unset in production.
 */
function failpoint(name: string): number {
  const spec = process.env.SYNOD_TXN_FAILPOINTS ?? '';
  for (const part of spec.split(',')) {
    const [k, v] = part.split('=');
    if (k === name) return Number(v) || 0;
  }
  return 0;
}

export class TxnEngine {
  private lead: Leadership | undefined;
  private readonly participants = new Map<string, grpc.Client>();
  private readonly inFlight = new Map<string, Promise<TxnRecord>>();
  private readonly phaseTwo = new Map<string, Promise<void>>();
  /** Completed transactions in completion order, for GC without scanning the log (filled at takeover by the one scan). */
  private readonly finishedQueue: { gid: string; at: number }[] = [];
  /**
   * The records this leader wrote, with their version after the write: only the leader writes (guarded by its
   * epoch), so its next compare-and-set can skip the read. A failed CAS drops the entry and re-reads. Cleared
   * on every change of leadership; an entry goes when its transaction completes.
   */
  private readonly cache = new Map<string, { rec: TxnRecord; version: number }>();
  private readonly deadlines = new Map<string, ReturnType<typeof setTimeout>>();
  private gcTimer: ReturnType<typeof setInterval> | undefined;
  private gaugeTimer: ReturnType<typeof setTimeout> | undefined;
  private lastGaugeScan = 0;
  private closed = false;

  constructor(
    private readonly store: TxnStore,
    private readonly opts: EngineOptions,
    private readonly metrics: TxnMetrics,
    private readonly log: Logger,
  ) {}

  // ---- leadership -----------------------------------------------------------------------------------------

  get leading(): Leadership | undefined {
    return this.lead && !this.lead.signal.aborted ? this.lead : undefined;
  }

  private mustLead(): Leadership {
    const l = this.leading;
    if (!l) throw new TxnError('UNAVAILABLE', 'this coordinator replica is not the leader');
    return l;
  }

  /** Takes over as leader: resumes every unfinished transaction (see the header). */
  async becomeLeader(lead: Leadership): Promise<void> {
    this.cache.clear();
    this.lead = lead;
    lead.signal.addEventListener('abort', () => this.stepDown(), { once: true });
    const records = await this.store.list('tx');
    this.finishedQueue.length = 0;
    let recovered = 0;
    for (const v of records) {
      if (lead.signal.aborted) return;
      const r = decodeRecord(v.value);
      if (r.state === 'PREPARING') {
        recovered++;
        void this.decide(r.globalId, 'ABORTED', 'the coordinator that ran phase one failed before deciding (presumed abort)').catch((err: unknown) => this.log.warn(`recovery of ${r.globalId}: ${(err as Error).message}`));
      } else if ((r.state === 'COMMITTED' || r.state === 'ABORTED' || r.state === 'NEEDS_ATTENTION') && !r.completed) {
        recovered++;
        this.startPhaseTwo(r.globalId);
      } else if (r.state === 'ACTIVE') this.armDeadline(r);
      else if (r.completed && !(r.resolvedBy && r.decision === 'COMMITTED')) this.finishedQueue.push({ gid: r.globalId, at: r.decidedAtMs ?? r.createdAtMs });
    }
    this.finishedQueue.sort((a, b) => a.at - b.at);
    this.metrics.recovered.inc(recovered);
    this.gcTimer = setInterval(() => void this.gc().catch(() => undefined), Math.min(60_000, Math.max(1000, this.opts.retentionMs / 4)));
    this.gcTimer.unref?.();
    this.log.info(`leading with epoch ${lead.epoch}: ${records.length} transaction record(s), ${recovered} resumed`);
    await this.refreshGauges();
  }

  private stepDown(): void {
    this.lead = undefined;
    this.cache.clear();
    if (this.gaugeTimer) clearTimeout(this.gaugeTimer);
    this.gaugeTimer = undefined;
    for (const t of this.deadlines.values()) clearTimeout(t);
    this.deadlines.clear();
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.log.warn('leadership lost: this replica stops deciding');
  }

  close(): void {
    this.closed = true;
    this.stepDown();
    for (const c of this.participants.values()) c.close();
  }

  // ---- the record -----------------------------------------------------------------------------------------

  async read(gid: string): Promise<{ rec: TxnRecord; version: number } | undefined> {
    const v = await this.store.get(key(gid));
    return v ? { rec: decodeRecord(v.value), version: v.version } : undefined;
  }

  /**
   * Compare-and-set loop on one record, guarded by the leadership: `f` returns the new record, or undefined to
   * leave it (returns the current one), or throws.
   */
  private async mutate(gid: string, f: (r: TxnRecord) => TxnRecord | undefined): Promise<TxnRecord> {
    const lead = this.mustLead();
    for (let i = 0; i < 50; i++) {
      const cur = this.cache.get(gid) ?? (await this.read(gid));
      if (!cur) throw new TxnError('NOT_FOUND', `transaction ${gid} does not exist (never begun, or finished and forgotten: presumed aborted)`);
      const next = f(cur.rec);
      if (!next) return cur.rec;
      next.epoch = lead.epoch;
      const version = await this.store.updateVersioned(key(gid), encodeRecord(next), cur.version, lead);
      if (version !== undefined) {
        if (next.completed) this.cache.delete(gid);
        else this.remember(gid, next, version);
        return next;
      }
      this.cache.delete(gid); // stale: re-read
    }
    throw new TxnError('ABORTED', `transaction ${gid} kept changing under 50 compare-and-set attempts; retry`);
  }

  private remember(gid: string, rec: TxnRecord, version: number): void {
    if (this.cache.size >= 100_000) this.cache.clear();
    this.cache.set(gid, { rec, version });
  }

  /** The record as this leader last wrote it, else from the store. */
  private async current(gid: string): Promise<{ rec: TxnRecord; version: number } | undefined> {
    return this.cache.get(gid) ?? (await this.read(gid));
  }

  // ---- API ------------------------------------------------------------------------------------------------

  async begin(timeoutMs: number, gid?: string): Promise<TxnRecord> {
    const lead = this.mustLead();
    const globalId = gid ?? randomUUID();
    const now = Date.now();
    const rec: TxnRecord = { globalId, state: 'ACTIVE', branches: [], createdAtMs: now, deadlineMs: now + timeoutMs, epoch: lead.epoch, completed: false };
    const version = await this.store.createVersioned(key(globalId), encodeRecord(rec), lead);
    if (version === undefined) {
      const cur = (await this.read(globalId))!;
      if (cur && gid !== undefined) return cur.rec; // idempotent Begin with the caller's id
      throw new TxnError('FAILED_PRECONDITION', `transaction ${globalId} already exists`);
    }
    this.remember(globalId, rec, version);
    this.metrics.begun();
    this.armDeadline(rec);
    return rec;
  }

  private armDeadline(r: TxnRecord): void {
    if (this.deadlines.has(r.globalId)) return;
    const t = setTimeout(() => {
      this.deadlines.delete(r.globalId);
      void this.abort(r.globalId, `the transaction's timeout passed before Commit (deadline ${new Date(r.deadlineMs).toISOString()})`, true).catch(() => undefined);
    }, Math.max(0, r.deadlineMs - Date.now()));
    t.unref?.();
    this.deadlines.set(r.globalId, t);
  }

  async register(gid: string, branchId: string, participant: string, payload: Buffer): Promise<number> {
    if (payload.length > this.opts.maxPayloadBytes) throw new TxnError('RESOURCE_EXHAUSTED', `payload is ${payload.length} bytes; the limit is ${this.opts.maxPayloadBytes}`);
    const rec = await this.mutate(gid, (r) => {
      const b64 = payload.toString('base64');
      const existing = r.branches.find((b) => b.branchId === branchId);
      if (existing) {
        if (existing.participant === participant && existing.payload === b64) return undefined; // a retry
        throw new TxnError('FAILED_PRECONDITION', `branch ${branchId} of transaction ${gid} is already registered with another participant or payload`);
      }
      if (r.state !== 'ACTIVE') throw new TxnError('FAILED_PRECONDITION', `transaction ${gid} is ${r.state}: branches can only be added while it is ACTIVE`);
      if (Date.now() > r.deadlineMs) throw new TxnError('FAILED_PRECONDITION', `transaction ${gid} timed out`);
      if (r.branches.length >= this.opts.maxBranches) throw new TxnError('RESOURCE_EXHAUSTED', `transaction ${gid} has ${r.branches.length} branches; the limit is ${this.opts.maxBranches}`);
      return { ...r, branches: [...r.branches, { branchId, participant, payload: b64, vote: 'NONE', outcome: 'NONE', attempts: 0, lastError: '' }] };
    });
    return rec.branches.length;
  }

  /** Phase one, the decision (durable before this returns), then phase two (awaited if `wait`). */
  async commit(gid: string, wait: boolean): Promise<TxnRecord> {
    const started = Date.now();
    let running = this.inFlight.get(gid);
    if (!running) {
      running = this.runCommit(gid).finally(() => this.inFlight.delete(gid));
      this.inFlight.set(gid, running);
    }
    const rec = await running;
    this.metrics.decisionLatency(rec.decision === 'COMMITTED' ? 'committed' : 'aborted', (Date.now() - started) / 1000);
    if (wait && !rec.completed) return this.waitCompleted(gid, rec.deadlineMs + 60_000);
    return rec;
  }

  private async runCommit(gid: string): Promise<TxnRecord> {
    const cur = await this.current(gid);
    if (!cur) throw new TxnError('NOT_FOUND', `transaction ${gid} does not exist (never begun, or timed out and forgotten: presumed aborted)`);
    if (cur.rec.decision) return cur.rec; // a retried Commit: the decision already made
    if (cur.rec.state === 'PREPARING') return this.waitDecided(gid, cur.rec.deadlineMs + this.opts.prepareTimeoutMs + 10_000);
    const preparing = await this.mutate(gid, (r) => {
      if (r.state !== 'ACTIVE') return undefined;
      if (Date.now() > r.deadlineMs) return { ...r, state: 'ABORTED', decision: 'ABORTED', decidedAtMs: Date.now(), reason: 'the transaction timed out before Commit' };
      return { ...r, state: 'PREPARING' };
    });
    if (preparing.decision) {
      if (preparing.decision === 'ABORTED') this.startPhaseTwo(gid);
      return preparing;
    }
    if (preparing.state !== 'PREPARING') return this.waitDecided(gid, preparing.deadlineMs + 10_000);
    const t = this.deadlines.get(gid);
    if (t) clearTimeout(t);
    this.deadlines.delete(gid);

    // phase one
    const p1 = Date.now();
    const votes = await Promise.all(preparing.branches.map((b) => this.prepare(preparing, b)));
    this.metrics.phase('prepare', (Date.now() - p1) / 1000);
    const allYes = votes.every((v) => v.vote === 'YES');
    const why = votes.find((v) => v.vote !== 'YES');
    const fpBefore = failpoint('before-decision');
    if (fpBefore > 0) {
      this.log.warn(`failpoint before-decision: sleeping ${fpBefore} ms before deciding ${gid}`);
      await sleep(fpBefore);
    }
    const decision: Decision = allYes ? 'COMMITTED' : 'ABORTED'; // no branches: a vacuous commit
    const reason = allYes ? '' : `branch ${why!.branchId} voted ${why!.vote}${why!.reason ? `: ${why!.reason}` : ''}`;
    const decided = await this.mutate(gid, (r) => {
      if (r.decision) return undefined; // an Abort (or Resolve) won the race
      const branches = r.branches.map((b) => {
        const v = votes.find((x) => x.branchId === b.branchId);
        return v ? { ...b, vote: v.vote, lastError: v.reason } : b;
      });
      return { ...r, state: decision, decision, decidedAtMs: Date.now(), reason: r.reason || reason, branches };
    });
    const fpAfter = failpoint('after-decision');
    if (fpAfter > 0) {
      this.log.warn(`failpoint after-decision: ${gid} decided ${decided.decision}; phase two starts in ${fpAfter} ms`);
      setTimeout(() => this.startPhaseTwo(gid), fpAfter).unref?.();
    } else this.startPhaseTwo(gid);
    return decided;
  }

  private async prepare(r: TxnRecord, b: BranchRecord): Promise<{ branchId: string; vote: 'YES' | 'NO' | 'TIMEOUT'; reason: string }> {
    const timeout = Math.max(1, Math.min(this.opts.prepareTimeoutMs, r.deadlineMs - Date.now() + this.opts.prepareTimeoutMs));
    try {
      const res = await this.call(b.participant, 'Prepare', { globalId: r.globalId, branchId: b.branchId, payload: Buffer.from(b.payload, 'base64') }, timeout);
      const vote = res.prepared ? 'YES' : 'NO';
      this.metrics.vote(vote);
      return { branchId: b.branchId, vote, reason: res.reason ?? '' };
    } catch (err) {
      const e = err as grpc.ServiceError;
      const vote = e.code === grpc.status.DEADLINE_EXCEEDED || e.code === grpc.status.UNAVAILABLE ? 'TIMEOUT' : 'NO';
      this.metrics.vote(vote);
      return { branchId: b.branchId, vote, reason: `Prepare on ${b.participant} failed: ${e.details || e.message}` };
    }
  }

  private participant(address: string): grpc.Client {
    let c = this.participants.get(address);
    if (!c) {
      c = new (loadTxnProto().Participant)(address, grpc.credentials.createInsecure());
      this.participants.set(address, c);
    }
    return c;
  }

  private call(address: string, method: string, req: Msg, timeoutMs: number): Promise<Msg> {
    const c = this.participant(address) as unknown as Record<string, (r: Msg, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => void>;
    const md = new grpc.Metadata();
    md.set(EPOCH_KEY, String(this.lead?.epoch ?? 0));
    return new Promise((res, rej) => c[method].call(c, req, md, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? rej(e) : res(r))));
  }

  private async decide(gid: string, decision: Decision, reason: string): Promise<TxnRecord> {
    const rec = await this.mutate(gid, (r) => (r.decision ? undefined : { ...r, state: decision, decision, decidedAtMs: Date.now(), reason }));
    this.startPhaseTwo(gid);
    return rec;
  }

  /** Phase two in the background (one runner per transaction on this leader). */
  private startPhaseTwo(gid: string): void {
    if (this.phaseTwo.has(gid) || !this.leading) return;
    const run = this.runPhaseTwo(gid)
      .catch((err: unknown) => {
        if (!(err instanceof NotLeaderError)) this.log.warn(`phase two of ${gid}: ${(err as Error).message}`);
      })
      .finally(() => {
        this.phaseTwo.delete(gid);
        void this.refreshGauges();
      });
    this.phaseTwo.set(gid, run);
  }

  private async runPhaseTwo(gid: string): Promise<void> {
    const cur = await this.current(gid);
    if (!cur?.rec.decision || cur.rec.completed) return;
    const decision = cur.rec.decision;
    const method = decision === 'COMMITTED' ? 'Commit' : 'Abort';
    const started = Date.now();
    const pending = new Set(cur.rec.branches.filter((b) => b.outcome === 'NONE' && !(decision === 'ABORTED' && b.vote === 'NO')).map((b) => b.branchId));
    const done = new Map<string, string>();
    const errors = new Map<string, string>();
    let attempt = 0;
    let flagged = cur.rec.state === 'NEEDS_ATTENTION';
    while (pending.size > 0 && this.leading && !this.closed) {
      attempt++;
      const rec = (await this.current(gid))!.rec;
      await Promise.all(
        rec.branches
          .filter((b) => pending.has(b.branchId))
          .map(async (b) => {
            try {
              await this.call(b.participant, method, { globalId: gid, branchId: b.branchId }, this.opts.phaseTwoTimeoutMs);
              pending.delete(b.branchId);
              done.set(b.branchId, decision);
            } catch (err) {
              const e = err as grpc.ServiceError;
              errors.set(b.branchId, `${method} on ${b.participant}: ${e.details || e.message}`);
            }
          }),
      );
      if (pending.size === 0) break;
      if (!flagged && attempt >= this.opts.phaseTwoAttempts) {
        flagged = true;
        await this.mutate(gid, (r) => ({
          ...r,
          state: 'NEEDS_ATTENTION',
          branches: r.branches.map((b) => (errors.has(b.branchId) ? { ...b, attempts: attempt, lastError: errors.get(b.branchId)! } : b)),
        }));
        this.log.error(`transaction ${gid}: phase two (${method}) failed ${attempt} times on ${[...pending].join(', ')}; NEEDS_ATTENTION (still retrying every ${this.opts.attentionRetryMs} ms; Resolve to finish it by hand)`);
        void this.refreshGauges();
      }
      await sleep(flagged ? this.opts.attentionRetryMs : Math.min(2000, 100 * 2 ** (attempt - 1)));
      const now = (await this.current(gid))?.rec;
      if (!now || now.completed) return; // resolved by an operator meanwhile
      for (const b of now.branches) if (b.outcome !== 'NONE') pending.delete(b.branchId);
    }
    if (pending.size > 0) return;
    await this.mutate(gid, (r) => ({
      ...r,
      state: r.decision!,
      completed: true,
      branches: r.branches.map((b) => (done.has(b.branchId) ? { ...b, outcome: decision, attempts: Math.max(b.attempts, attempt) } : b.outcome === 'NONE' ? { ...b, outcome: 'ABORTED' } : b)),
    }));
    this.metrics.phase(decision === 'COMMITTED' ? 'commit' : 'abort', (Date.now() - started) / 1000);
    this.finishedQueue.push({ gid, at: Date.now() });
    this.metrics.finished(decision === 'COMMITTED' ? 'committed' : 'aborted', (Date.now() - cur.rec.createdAtMs) / 1000);
  }

  async abort(gid: string, reason: string, timeout = false): Promise<TxnRecord> {
    const rec = await this.mutate(gid, (r) => {
      if (r.decision === 'ABORTED') return undefined;
      if (r.decision === 'COMMITTED') throw new TxnError('FAILED_PRECONDITION', `transaction ${gid} is already committed; it cannot be aborted`);
      if (timeout && r.state !== 'ACTIVE') return undefined;
      return { ...r, state: 'ABORTED', decision: 'ABORTED', decidedAtMs: Date.now(), reason: reason || 'aborted by the client' };
    });
    if (rec.decision === 'ABORTED') this.startPhaseTwo(gid);
    return rec;
  }

  async status(gid: string): Promise<TxnRecord> {
    const cur = await this.read(gid);
    if (cur) return cur.rec;
    // presumed abort: no record is an abort
    return { globalId: gid, state: 'ABORTED', decision: 'ABORTED', branches: [], createdAtMs: 0, deadlineMs: 0, reason: 'no record of this transaction: presumed aborted', epoch: 0, completed: true };
  }

  async list(states: TxnStateName[], limit: number): Promise<TxnRecord[]> {
    const all = (await this.store.list('tx')).map((v) => decodeRecord(v.value));
    return all.filter((r) => states.length === 0 || states.includes(r.state)).sort((a, b) => a.createdAtMs - b.createdAtMs).slice(0, limit);
  }

  async resolve(gid: string, decision: Decision, reason: string, operator: string): Promise<TxnRecord> {
    if (!reason) throw new TxnError('INVALID_ARGUMENT', 'reason is required: say why this transaction is resolved by hand (it is recorded)');
    const by = `${operator || 'operator'}: ${reason}`;
    const rec = await this.mutate(gid, (r) => {
      if (r.decision && r.decision !== decision) throw new TxnError('FAILED_PRECONDITION', `transaction ${gid} was decided ${r.decision}; Resolve cannot flip a decision`);
      if (!r.decision && decision === 'COMMITTED' && (r.branches.length === 0 || r.branches.some((b) => b.vote !== 'YES')))
        throw new TxnError('FAILED_PRECONDITION', `transaction ${gid} has no COMMIT decision and not every branch voted yes; only ABORTED can be forced`);
      if (r.decision) {
        // the decision stands; the operator asserts the unreachable branches were finished by hand
        return { ...r, state: r.decision, completed: true, resolvedBy: by, branches: r.branches.map((b) => (b.outcome === 'NONE' ? { ...b, outcome: decision, lastError: `${b.lastError} (resolved by hand)`.trim() } : b)) };
      }
      return { ...r, state: decision, decision, decidedAtMs: Date.now(), reason: `resolved: ${reason}`, resolvedBy: by };
    });
    this.log.warn(`transaction ${gid} resolved ${decision} by ${by}`);
    // A COMMIT finished by hand is kept (not garbage-collected): if a branch the operator believed finished is in
    // fact still prepared, its participant must still find COMMITTED here — deleting the record would make it
    // read "presumed aborted". An ABORT may go: presumed abort says the same.
    if (rec.completed && decision === 'ABORTED') this.finishedQueue.push({ gid, at: Date.now() });
    if (!rec.completed) this.startPhaseTwo(gid);
    void this.refreshGauges();
    return rec;
  }

  private async waitDecided(gid: string, untilMs: number): Promise<TxnRecord> {
    for (;;) {
      const cur = await this.read(gid);
      if (!cur) throw new TxnError('NOT_FOUND', `transaction ${gid} does not exist`);
      if (cur.rec.decision) return cur.rec;
      if (Date.now() > untilMs) throw new TxnError('DEADLINE_EXCEEDED', `transaction ${gid} is still ${cur.rec.state}; ask Status later`);
      await sleep(50);
    }
  }

  private async waitCompleted(gid: string, untilMs: number): Promise<TxnRecord> {
    for (;;) {
      // phase two running on this leader: wait for it rather than polling the log
      const running = this.phaseTwo.get(gid);
      if (running) {
        let t: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([running, new Promise((r) => (t = setTimeout(r, Math.max(0, untilMs - Date.now()))))]);
        clearTimeout(t);
      }
      const cur = await this.read(gid);
      if (!cur) return this.status(gid);
      if (cur.rec.completed || cur.rec.state === 'NEEDS_ATTENTION' || Date.now() > untilMs) return cur.rec;
      await sleep(25);
    }
  }

  /** Deletes completed records older than the retention (from the queue: no scan of the log). */
  private async gc(): Promise<void> {
    const lead = this.leading;
    if (!lead) return;
    const cutoff = Date.now() - this.opts.retentionMs;
    while (this.finishedQueue.length > 0 && this.finishedQueue[0].at < cutoff && !lead.signal.aborted) {
      const { gid } = this.finishedQueue.shift()!;
      await this.store.delete(key(gid), undefined, lead).catch(() => undefined);
    }
  }

  /**
   * Asks for a refresh of the gauges, coalesced: at most one scan of the log per `GAUGE_INTERVAL_MS`, however
   * many transactions finish meanwhile (a scan reads every record, so it must not run per transaction).
   */
  refreshGauges(): Promise<void> {
    if (this.gaugeTimer || !this.leading) return Promise.resolve();
    const wait = Math.max(0, this.lastGaugeScan + GAUGE_INTERVAL_MS - Date.now());
    this.gaugeTimer = setTimeout(() => {
      this.gaugeTimer = undefined;
      this.lastGaugeScan = Date.now();
      void this.scanGauges().catch(() => undefined);
    }, wait);
    this.gaugeTimer.unref?.();
    return Promise.resolve();
  }

  /** In-flight, in-doubt (decided or preparing, not completed) and needs-attention gauges, from the log. */
  private async scanGauges(): Promise<void> {
    if (!this.leading) return;
    try {
      const all = (await this.store.list('tx')).map((v) => decodeRecord(v.value));
      const now = Date.now();
      const inDoubt = all.filter((r) => !r.completed && r.state !== 'ACTIVE');
      this.metrics.setGauges({
        inFlight: all.filter((r) => !r.completed).length,
        inDoubt: inDoubt.length,
        oldestInDoubtS: inDoubt.length ? (now - Math.min(...inDoubt.map((r) => r.decidedAtMs ?? r.createdAtMs))) / 1000 : 0,
        needsAttention: all.filter((r) => r.state === 'NEEDS_ATTENTION').length,
      });
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
    }
  }
}

export function validateId(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw new TxnError('INVALID_ARGUMENT', `${field} is required`);
  if (!ID_RE.test(v)) throw new TxnError('INVALID_ARGUMENT', `${field} "${v.slice(0, 140)}" must be 1..128 characters of [A-Za-z0-9._:-]`);
  return v;
}
