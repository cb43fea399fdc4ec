/**
 * The tree workload of the nemesis: clients of the consensus cluster (SynodClient, real gRPC) doing, at once,
 * - a versioned register per node (/nemesis/reg/k<i>): linearizable reads, blind writes and compare-and-set
 *   writes with unique values; the history goes through the linearizability checker (versionedRegisterModel);
 *   an acknowledged write whose version is above the key's final version is a lost write;
 * - sequential nodes (/nemesis/seq/s-<n>): names unique and increasing in linearization order
 *   (sequentialNamesModel); every acknowledged name must exist at the end;
 * - ephemeral nodes (/nemesis/eph/<session>-<gen>) owned by short sessions that are closed (or expire) and
 *   replaced: an observer reads them linearizably; an ephemeral seen after its session's close was
 *   acknowledged, or missing while a later keep-alive proved its session alive, is a violation; none may
 *   outlive its session at the end;
 * - a persistent recursive watch on /nemesis/reg (resumed by the client across member failures): zxids strictly
 *   increasing, every key's versions consecutive (no gap, no duplicate), up to the final version.
 * Writes that time out are recorded as indeterminate (they may or may not have happened), never as failed.
 */
import { performance } from 'node:perf_hooks';
import { status } from '@grpc/grpc-js';
import { SynodClient, SynodError } from '@app/client';
import type { Session, Watch, WatchEvent } from '@app/client';
import {
  checkOperations,
  sequentialNamesModel,
  versionedRegisterModel,
} from '@app/testing';
import type { Operation, Rng, SequentialInput, SequentialOutput, VersionedInput, VersionedOutput } from '@app/testing';
import type { FaultKind, RunContext, Workload, WorkloadResult } from '../types.js';

const ROOT = '/nemesis';
const REG = `${ROOT}/reg`;
const SEQ = `${ROOT}/seq`;
const EPH = `${ROOT}/eph`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An error the server guarantees had no effect (an answer), as opposed to a timeout / unavailability. */
/** Statuses after which a write may or may not have been applied. */
const UNKNOWN_OUTCOME: ReadonlySet<status> = new Set([status.CANCELLED, status.UNKNOWN, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.UNAVAILABLE]);
const definite = (err: unknown): boolean => err instanceof SynodError && !UNKNOWN_OUTCOME.has(err.code);
const isBadVersion = (err: unknown): boolean => err instanceof SynodError && err.code === status.FAILED_PRECONDITION && /expected version|BAD_VERSION/.test(err.details);

interface EphRecord {
  path: string;
  sessionId: number;
  /** Date.now() when the create was acknowledged. */
  createdAt: number;
  /** Send times (Date.now) of keep-alives the server answered after the create. */
  renewals: number[];
  /** Date.now() when CloseSession was acknowledged. */
  closedAt?: number;
  expiredAt?: number;
}

interface Observation {
  path: string;
  call: number;
  ret: number;
  exists: boolean;
}

export interface TreeWorkloadOptions {
  registerClients?: number;
  keys?: number;
  sequentialClients?: number;
  sessions?: number;
  /** Requested session timeout (ms). */
  sessionTimeoutMs?: number;
  /** Overall deadline of one client call, retries included. */
  deadlineMs?: number;
}

export class TreeWorkload implements Workload {
  readonly name = 'tree';
  private ctx!: RunContext;
  private readonly o: Required<TreeWorkloadOptions>;
  private readonly clients: SynodClient[] = [];
  private stopped = false;
  private loops: Promise<void>[] = [];
  private done = 0;
  private indeterminate = 0;
  private readonly errors: string[] = [];
  private readonly reg: Operation<VersionedInput, VersionedOutput>[] = [];
  private readonly acked: { key: string; version: number; value: string }[] = [];
  private readonly seq: Operation<SequentialInput, SequentialOutput>[] = [];
  private readonly seqAcked: string[] = [];
  private readonly eph: EphRecord[] = [];
  private readonly obs: Observation[] = [];
  private readonly sessions = new Set<Session>();
  private watch: Watch | undefined;
  private readonly events: WatchEvent[] = [];
  private watchError: Error | undefined;
  private watchLoop: Promise<void> | undefined;
  private serverExpiries = 0;

  constructor(opts: TreeWorkloadOptions = {}) {
    this.o = { registerClients: 10, keys: 4, sequentialClients: 2, sessions: 2, sessionTimeoutMs: 1500, deadlineMs: 2000, ...opts };
  }

  private client(i: number): SynodClient {
    const eps = this.ctx.endpoints;
    // Each client starts on a different member, so the load (and the faults' effect on it) spreads.
    const rotated = [...eps.slice(i % eps.length), ...eps.slice(0, i % eps.length)];
    const c = new SynodClient({ endpoints: rotated, deadlineMs: this.o.deadlineMs, attemptTimeoutMs: 1000 });
    this.clients.push(c);
    return c;
  }

  async setup(ctx: RunContext): Promise<void> {
    this.ctx = ctx;
    const admin = this.client(0);
    for (const p of [ROOT, REG, SEQ, EPH]) {
      await admin.create(p, '', { deadlineMs: 15_000 }).catch((e: unknown) => {
        if (!(e instanceof SynodError && e.code === status.ALREADY_EXISTS)) throw e;
      });
    }
    let zxid = 0;
    for (let k = 0; k < this.o.keys; k++) zxid = (await admin.create(`${REG}/k${k}`, '', { deadlineMs: 15_000 })).header.zxid;
    const wc = this.client(1);
    this.watch = wc.watch(REG, 'PERSISTENT_RECURSIVE', { startZxid: zxid });
    const w = this.watch;
    this.watchLoop = (async () => {
      try {
        for await (const e of w) this.events.push(e);
      } catch (err) {
        this.watchError = err as Error;
      }
    })();
    await w.ready;
  }

  start(): void {
    for (let c = 0; c < this.o.registerClients; c++) this.loops.push(this.registerLoop(c, this.ctx.rng.fork(`reg${c}`)));
    for (let c = 0; c < this.o.sequentialClients; c++) this.loops.push(this.sequentialLoop(c));
    for (let s = 0; s < this.o.sessions; s++) this.loops.push(this.sessionLoop(s, this.ctx.rng.fork(`eph${s}`)));
    this.loops.push(this.observerLoop());
  }

  completed(): number {
    return this.done;
  }

  async onFault(_kind: FaultKind): Promise<void> {}

  private async registerLoop(c: number, rng: Rng): Promise<void> {
    const client = this.client(10 + c);
    const lastVersion = new Map<string, number>();
    let n = 0;
    while (!this.stopped) {
      const key = `k${rng.int(this.o.keys)}`;
      const path = `${REG}/${key}`;
      const r = rng.next();
      const call = performance.now();
      if (r < 0.6) {
        try {
          const g = await client.get(path, { consistency: 'LINEARIZABLE' });
          const value = g.data.length === 0 ? null : g.data.toString('utf8');
          this.reg.push({ clientId: c, input: { key, op: 'read' }, output: { value, version: g.stat.version }, call, return: performance.now() });
          lastVersion.set(key, g.stat.version);
          this.done++;
        } catch {
          await sleep(20); // a failed read has no effect: left out of the history
        }
        continue;
      }
      const value = `c${c}-${++n}`;
      const cas = r >= 0.8;
      const input: VersionedInput = cas ? { key, op: 'cas', expectedVersion: lastVersion.get(key) ?? 0, value } : { key, op: 'write', value };
      try {
        const s = await client.set(path, value, cas ? { version: lastVersion.get(key) ?? 0 } : {});
        this.reg.push({ clientId: c, input, output: cas ? { ok: true, version: s.stat.version } : { version: s.stat.version }, call, return: performance.now() });
        this.acked.push({ key, version: s.stat.version, value });
        lastVersion.set(key, s.stat.version);
        this.done++;
      } catch (err) {
        if (cas && isBadVersion(err)) {
          this.reg.push({ clientId: c, input, output: { ok: false }, call, return: performance.now() });
          this.done++;
        } else if (definite(err)) {
          this.errors.push(`register ${input.op} ${path}=${value}: unexpected answer ${(err as Error).message}`);
        } else {
          this.reg.push({ clientId: c, input, call, return: Infinity });
          this.indeterminate++;
          await sleep(20);
        }
      }
    }
  }

  private async sequentialLoop(c: number): Promise<void> {
    const client = this.client(20 + c);
    while (!this.stopped) {
      const call = performance.now();
      try {
        const r = await client.create(`${SEQ}/s-`, `q${c}`, { mode: 'PERSISTENT_SEQUENTIAL' });
        const name = r.path.slice(SEQ.length + 1);
        this.seq.push({ clientId: c, input: { key: SEQ, op: 'create' }, output: { name }, call, return: performance.now() });
        this.seqAcked.push(name);
        this.done++;
      } catch (err) {
        if (definite(err)) this.errors.push(`sequential create: unexpected answer ${(err as Error).message}`);
        else {
          this.seq.push({ clientId: c, input: { key: SEQ, op: 'create' }, call, return: Infinity });
          this.indeterminate++;
        }
        await sleep(20);
      }
      await sleep(30);
    }
  }

  private async sessionLoop(s: number, rng: Rng): Promise<void> {
    const client = this.client(30 + s);
    let gen = 0;
    while (!this.stopped) {
      let session: Session;
      try {
        session = await client.session({ timeoutMs: this.o.sessionTimeoutMs });
      } catch {
        await sleep(100);
        continue;
      }
      this.sessions.add(session);
      let rec: EphRecord | undefined;
      session.on('renewed', () => rec?.renewals.push(session.renewedAt));
      session.once('expired', (err: Error) => {
        const now = Date.now();
        if (rec) rec.expiredAt = now;
        // A keep-alive answered "alive" moments ago (well inside the timeout, failover extensions included)
        // and now the server says "expired": the session was expired while its client kept it alive.
        const sinceRenewal = now - session.renewedAt;
        if (/reports it expired/.test(err.message) && sinceRenewal < session.timeoutMs / 2) {
          this.errors.push(`session ${session.id} reported expired by the server ${sinceRenewal} ms after a keep-alive it answered (timeout ${session.timeoutMs} ms)`);
        }
        if (/reports it expired/.test(err.message)) this.serverExpiries++;
      });
      try {
        const path = `${EPH}/s${s}-${++gen}`;
        await client.create(path, '', { mode: 'EPHEMERAL', session });
        rec = { path, sessionId: session.id, createdAt: Date.now(), renewals: [] };
        this.eph.push(rec);
        this.done++;
      } catch {
        // not created (or unknown): the session is closed below either way
      }
      const until = Date.now() + 800 + rng.int(1500);
      while (!this.stopped && session.state === 'open' && Date.now() < until) await sleep(50);
      if (session.state === 'open') {
        try {
          await session.close();
          if (rec) rec.closedAt = Date.now();
          this.done++;
        } catch {
          this.indeterminate++; // the close may or may not have happened; the session expires otherwise
        }
      }
      this.sessions.delete(session);
    }
  }

  private async observerLoop(): Promise<void> {
    const client = this.client(40);
    while (!this.stopped) {
      const recent = this.eph.filter((r) => r.closedAt === undefined || Date.now() - r.closedAt < 3000).slice(-6);
      for (const r of recent) {
        const call = Date.now();
        try {
          const e = await client.exists(r.path, { consistency: 'LINEARIZABLE' });
          this.obs.push({ path: r.path, call, ret: Date.now(), exists: e.exists });
          this.done++;
        } catch {
          // no answer: no observation
        }
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = Promise.all(this.loops);
    const t = sleep(this.o.deadlineMs + 5000).then(() => 'timeout' as const);
    if ((await Promise.race([all, t])) === 'timeout') this.errors.push('workload loops did not stop within their deadline');
    for (const s of [...this.sessions]) await s.close().catch(() => undefined);
  }

  async check(): Promise<WorkloadResult> {
    const violations: string[] = [...this.errors];
    const lost: string[] = [];
    const c = this.client(50);
    const deadlineMs = 10_000;

    // Final reads (linearizable, appended to the history) and lost-write check.
    const finals = new Map<string, { value: string | null; version: number }>();
    for (let k = 0; k < this.o.keys; k++) {
      const key = `k${k}`;
      const call = performance.now();
      const g = await c.get(`${REG}/${key}`, { consistency: 'LINEARIZABLE', deadlineMs });
      const value = g.data.length === 0 ? null : g.data.toString('utf8');
      this.reg.push({ clientId: 999, input: { key, op: 'read' }, output: { value, version: g.stat.version }, call, return: performance.now() });
      finals.set(key, { value, version: g.stat.version });
    }
    for (const a of this.acked) {
      if (a.version > finals.get(a.key)!.version) lost.push(`register ${a.key}: acknowledged write ${a.value} (version ${a.version}) but the final version is ${finals.get(a.key)!.version}`);
    }
    const lin = checkOperations(versionedRegisterModel, this.reg, { timeoutMs: 60_000 });
    if (lin.result !== 'ok') violations.push(`register history is ${lin.result === 'unknown' ? 'not decided in 60 s (unknown counts as a failure)' : `not linearizable: ${lin.info?.message ?? ''}`}`);

    // Sequential names.
    const seqCheck = checkOperations(sequentialNamesModel, this.seq, { timeoutMs: 30_000 });
    if (seqCheck.result !== 'ok') violations.push(`sequential names ${seqCheck.result}: ${seqCheck.info?.message ?? ''}`);
    const children = new Set((await c.getChildren(SEQ, { consistency: 'LINEARIZABLE', deadlineMs })).children);
    for (const name of this.seqAcked) if (!children.has(name)) lost.push(`sequential node ${SEQ}/${name} was acknowledged but is gone`);
    if (new Set(this.seqAcked).size !== this.seqAcked.length) violations.push('a sequential name was handed out twice');

    // Ephemerals.
    const byPath = new Map(this.eph.map((r) => [r.path, r]));
    let ephChecks = 0;
    for (const o of this.obs) {
      const r = byPath.get(o.path);
      if (!r) continue;
      ephChecks++;
      if (o.exists && r.closedAt !== undefined && o.call > r.closedAt) violations.push(`ephemeral ${o.path} seen by a read started ${o.call - r.closedAt} ms after its session's close was acknowledged`);
      if (!o.exists && o.call > r.createdAt && r.closedAt === undefined && r.expiredAt === undefined && r.renewals.some((t) => t > o.ret)) {
        violations.push(`ephemeral ${o.path} missing from a read while a later keep-alive (sent ${Math.max(...r.renewals) - o.ret} ms after the read) proved session ${r.sessionId} alive`);
      }
    }
    // Every session is closed (or expired) now: within its timeout (+ failover) no ephemeral may remain.
    let left: string[] = [];
    const end = Date.now() + this.o.sessionTimeoutMs * 2 + 5000;
    for (;;) {
      left = (await c.getChildren(EPH, { consistency: 'LINEARIZABLE', deadlineMs })).children;
      if (left.length === 0 || Date.now() > end) break;
      await sleep(200);
    }
    if (left.length > 0) violations.push(`ephemeral nodes outlived their sessions: ${left.join(', ')}`);

    // Watch: ordered, gap-free, resumed.
    const lastEnd = Date.now() + 10_000;
    const caughtUp = (): boolean => [...finals].every(([key, f]) => (this.lastVersion(`${REG}/${key}`) ?? 0) >= f.version);
    while (!caughtUp() && Date.now() < lastEnd && !this.watchError) await sleep(100);
    const reconnects = this.watch?.reconnects ?? 0;
    this.watch?.close();
    await this.watchLoop;
    if (this.watchError) violations.push(`watch failed: ${this.watchError.message}`);
    for (let i = 1; i < this.events.length; i++) {
      if (this.events[i].zxid <= this.events[i - 1].zxid) {
        violations.push(`watch events out of order: zxid ${this.events[i].zxid} after ${this.events[i - 1].zxid}`);
        break;
      }
    }
    for (const [key, f] of finals) {
      const versions = this.events.filter((e) => e.path === `${REG}/${key}` && e.type === 'NODE_DATA_CHANGED').map((e) => e.stat!.version);
      const expected = Array.from({ length: f.version }, (_, i) => i + 1);
      if (versions.join(',') !== expected.join(',')) {
        const firstBad = versions.findIndex((v, i) => v !== i + 1);
        violations.push(`watch on ${REG}/${key}: versions not 1..${f.version} in order (got ${versions.length} events; first mismatch at #${firstBad}: ${versions[firstBad]})`);
      }
    }

    return {
      ops: this.done,
      indeterminate: this.indeterminate,
      violations,
      lost,
      stats: {
        registerOps: this.reg.length,
        linearizabilityMs: Math.round(lin.elapsedMs),
        sequential: this.seqAcked.length,
        ephemerals: this.eph.length,
        ephemeralReads: ephChecks,
        sessionsExpiredByServer: this.serverExpiries,
        watchEvents: this.events.length,
        watchReconnects: reconnects,
      },
    };
  }

  private lastVersion(path: string): number | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i].path === path && this.events[i].stat) return this.events[i].stat!.version;
    return undefined;
  }

  async teardown(): Promise<void> {
    this.stopped = true;
    this.watch?.close();
    for (const s of [...this.sessions]) s.abandon();
    for (const c of this.clients) c.close();
  }
}
