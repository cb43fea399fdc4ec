/**
 * ConsensusMember: one member of the consensus cluster, without the gRPC front end. It wires
 *   RaftNode (libs/raft-node) + GrpcPeerTransport (libs/peer) + the tree state machine (libs/tree) + the
 *   member table (state.ts) + watches (watch-hub.ts) + sessions (SessionTracker, on the leader) + metrics,
 * and implements the request paths (docs/consensus.md):
 *
 * - write: every command carries {clientId, seq} (generated here when the client sent none). On the leader it
 *   is proposed locally; on a follower it is handed to the leader with GrpcPeerTransport.forwardWrite (batched
 *   per event-loop turn into one ForwardWrites call); the leader stamps `nowMs`, proposes it, and answers with
 *   the applied result and its index; the follower then waits until it has applied that index itself before
 *   answering (so the caller's next read on this member sees its write). A forward that fails (leader change)
 *   is retried with the same {clientId, seq} until the deadline: the tree's dedup applies it once.
 * - linearizable read: RaftNode.readIndex() (ReadIndex round via the leader; calls of one event-loop turn
 *   share one), which resolves once this member has applied the read index; then the local tree.
 * - sequential read: local tree, after waiting (bounded by the deadline) until applied ≥ max(min_zxid, the
 *   highest zxid this member returned to the session).
 * - sessions: the leader's SessionTracker holds deadlines. A KeepAlive on a follower is forwarded to the
 *   leader (ForwardWrites, request kind 'T'), which touches its tracker and answers the remaining TTL. The
 *   leader proposes `expireSessions` when deadlines pass and `checkpointSessions` every
 *   `sessionCheckpointMs`; a new leader resets the tracker from the replicated checkpoints (+ one election
 *   timeout) once it has applied its log.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ProposalDroppedError, StateType } from '@app/raft';
import { RaftNode, RaftNodeObserver, RaftNodeStatus, RequestTimeoutError } from '@app/raft-node';
import { ForwardResult, GrpcPeerTransport, PeerError } from '@app/peer';
import { ConsensusMetrics, RaftMetrics } from '@app/observability';
import {
  Command,
  CommandResult,
  SessionTracker,
  TreeStateMachine,
  WatchManager,
  decodeCommand,
  encodeCommand,
} from '@app/tree';
import type { Registry } from 'prom-client';
import { Clock, SYSTEM_CLOCK } from './clock.js';
import { ConsensusConfig } from './config.js';
import { LeaderHint, ServiceError, toServiceError, unavailable } from './errors.js';
import { Logger } from './logger.js';
import { ConsensusStateMachine, MemberCommand, MemberInfo, encodeMemberCommand } from './state.js';
import { WatchHub } from './watch-hub.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const FORWARD_WRITE = 0x57; // 'W'
const FORWARD_TOUCH = 0x54; // 'T'
const LEADER_CHANGED = Symbol('leader changed');

export interface TouchResult {
  id: number;
  ttlMs: number;
  expired: boolean;
}

interface AppliedWaiter {
  index: number;
  resolve(): void;
  reject(e: Error): void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function frameForward(kind: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 1);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

/** Combines several observers into one (RaftNode takes one). */
function combine(...observers: RaftNodeObserver[]): RaftNodeObserver {
  const out: Record<string, unknown> = {};
  const keys = new Set<string>();
  for (const o of observers) {
    for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
      for (const k of Object.getOwnPropertyNames(p)) if (k.startsWith('on')) keys.add(k);
    }
  }
  for (const k of keys) {
    const fs = observers
      .map((o) => (o as Record<string, unknown>)[k])
      .map((f, i) => (typeof f === 'function' ? (f as (...a: unknown[]) => void).bind(observers[i]) : undefined))
      .filter((f): f is (...a: unknown[]) => void => f !== undefined);
    out[k] = (...a: unknown[]) => {
      for (const f of fs) f(...a);
    };
  }
  return out as RaftNodeObserver;
}

/** No leader emerged within the bounded wait: answered at once, not retried. */
class NoLeaderError extends ServiceError {
  constructor(e: ServiceError) {
    super(e.code, e.message, e.metadata);
  }
}

export class ConsensusMember {
  readonly id: number;
  readonly tree: TreeStateMachine;
  readonly watches: WatchHub;
  private readonly consensusMetrics: ConsensusMetrics;
  readonly sm: ConsensusStateMachine;
  readonly transport: GrpcPeerTransport;
  readonly node: RaftNode;
  readonly tracker = new SessionTracker();
  readonly errors: string[] = [];
  private trackerReady = false;
  private expiring = false;
  private checkpointing = false;
  private lastCheckpoint = 0;
  private waiters: AppliedWaiter[] = [];
  /** Highest zxid this member returned to each session (SEQUENTIAL reads never go below it). */
  private readonly sessionSeen = new Map<number, number>();
  private readonly incarnation = randomBytes(6).toString('hex');
  private counter = 0;
  private loop: ReturnType<typeof setInterval> | undefined;
  private sweepAt = 0;
  private readBatch: Promise<number> | undefined;
  /** Called on every leader change (see untilLeaderChange). */
  private readonly leaderListeners = new Set<() => void>();
  private stopped = false;
  /** Wall time for ctime/mtime; monotonic time for session deadlines (apps/consensus/src/clock.ts). */
  readonly clock: Clock;

  constructor(
    readonly cfg: ConsensusConfig,
    registry: Registry,
    readonly log: Logger,
    peerServer: grpc.Server,
    peerCredentials: grpc.ChannelCredentials,
  ) {
    this.id = cfg.nodeId;
    this.clock = cfg.testHooks?.clock ?? SYSTEM_CLOCK;
    this.watches = new WatchHub(
      new WatchManager({ historySize: cfg.watchHistory }),
      () => this.header(),
      () => this.applied(),
      (sid) => this.tree.session(sid) !== null,
    );
    this.tree = new TreeStateMachine({
      maxDataBytes: cfg.maxDataBytes,
      minSessionTimeoutMs: cfg.minSessionTimeoutMs,
      maxSessionTimeoutMs: cfg.maxSessionTimeoutMs,
      onEvents: (events) => {
        this.watches.recordStats(events, (p) => {
          const r = this.tree.exists(p);
          return r.ok && r.stat ? r.stat : undefined;
        });
        this.watches.publish(events);
      },
      onRestore: (zxid) => this.watches.reset(zxid),
    });
    const initial: MemberInfo[] = [...cfg.peers].map(([id, peer]) => ({
      id,
      // The same on every member (the table is replicated state): initial members are named n<id>.
      name: `n${id}`,
      peerUrls: [peer],
      clientUrls: cfg.clientUrls.has(id) ? [cfg.clientUrls.get(id)!] : [],
    }));
    this.sm = new ConsensusStateMachine(this.tree, initial, (members) => this.onMembers(members));
    this.transport = new GrpcPeerTransport({
      selfId: cfg.nodeId,
      peers: this.routed(cfg.peers),
      server: peerServer,
      credentials: peerCredentials,
      clusterId: cfg.clusterId,
      forwardTimeoutMs: cfg.requestTimeoutMs,
      logger: { info: (m) => log.debug(m), warn: (m) => log.warn(m) },
    });
    this.transport.setForwardHandler({
      writes: (_from, requests) => Promise.all(requests.map((r) => this.serveForwarded(r))),
      readIndex: async () => ({ index: await this.node.readIndex(), term: this.node.status().term }),
    });
    const metrics = new RaftMetrics(registry);
    this.consensusMetrics = new ConsensusMetrics(registry, {
      nodeCount: () => this.tree.nodeCount,
      sessionCount: () => this.tree.sessionCount,
      watchCount: () => this.watches.manager.size,
    });
    const own: RaftNodeObserver = {
      onApplied: (index) => this.onApplied(index),
      onLeaderChange: (leader, term, isSelf) => {
        if (isSelf) this.trackerReady = false;
        for (const f of [...this.leaderListeners]) f();
        log.info(`leader is now ${leader === 0 ? 'unknown' : `member ${leader}`} (term ${term})`);
      },
    };
    this.node = new RaftNode({
      id: cfg.nodeId,
      peers: cfg.initialClusterState === 'new' ? [...cfg.peers.keys()] : [],
      dataDir: cfg.dataDir,
      tickMs: cfg.tickMs,
      heartbeatTicks: cfg.heartbeatMs / cfg.tickMs,
      electionTicks: cfg.electionMs / cfg.tickMs,
      maxElectionTicks: cfg.electionMaxMs / cfg.tickMs,
      transport: this.transport,
      stateMachine: this.sm,
      snapshotEvery: cfg.snapshotCount,
      snapshotCatchUpEntries: cfg.snapshotCatchUpEntries,
      proposalTimeoutMs: cfg.requestTimeoutMs,
      logger: { debug: (m) => log.debug(m), info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
      observer: combine(metrics, own),
    });
  }

  // ---- lifecycle ----------------------------------------------------------------------------------------------

  async start(): Promise<void> {
    await this.node.start();
    const every = Math.max(10, Math.min(100, this.cfg.tickMs * 5));
    this.loop = setInterval(() => this.sessionLoop(), every);
    this.loop.unref();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.loop) clearInterval(this.loop);
    this.closeStreams();
    await this.node.stop();
    await this.transport.close();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(unavailable('the member is stopping', this.hint()));
  }

  /** Ends every Watch stream with UNAVAILABLE (the client resumes on another member with start_zxid). */
  closeStreams(): void {
    this.watches.closeAll(new ServiceError(grpc.status.UNAVAILABLE, `member ${this.id} is shutting down; reconnect to another member and resume with start_zxid`));
  }

  /** On SIGTERM: a leader hands leadership to another voter first (bounded wait). */
  async handOver(timeoutMs: number): Promise<void> {
    const st = this.node.status();
    if (st.phase !== 'running' || st.leader !== this.id) return;
    const target = this.node.mostCaughtUpVoter();
    if (target === undefined) return;
    this.log.info(`shutting down as leader: transferring leadership to member ${target}`);
    const end = Date.now() + timeoutMs;
    let outcome: string | undefined;
    this.node.transferLeadership(target).then(
      () => (outcome ??= 'done'),
      (err: unknown) => (outcome ??= (err as Error).message),
    );
    // Bounded: until another member leads, or the deadline, or no leader has been known for a maximum election
    // timeout (the transfer campaign failed, e.g. because the other members are stopping too).
    let leaderlessSince: number | undefined;
    for (;;) {
      const leader = this.node.status().leader;
      if (outcome !== undefined || Date.now() >= end || (leader !== 0 && leader !== this.id)) break;
      if (leader === 0) {
        leaderlessSince ??= Date.now();
        if (Date.now() - leaderlessSince > this.cfg.electionMaxMs) break;
      } else leaderlessSince = undefined;
      await sleep(10);
    }
    const now = this.node.status().leader;
    if (now !== this.id && now !== 0) this.log.info(`leadership transferred to member ${now}`);
    else {
      const why = outcome ?? (now === 0 ? 'no leader emerged: no quorum?' : `not within ${timeoutMs} ms`);
      this.log.warn(`leadership transfer to member ${target} did not complete (${why}); stopping anyway`);
    }
  }

  // ---- state --------------------------------------------------------------------------------------------------

  status(): RaftNodeStatus {
    return this.node.status();
  }

  applied(): number {
    return this.node.status().applied;
  }

  isLeader(): boolean {
    return this.node.status().leader === this.id;
  }

  header(): Record<string, number> {
    const s = this.node.status();
    return { zxid: s.applied, memberId: this.id, term: s.term, leaderId: s.leader };
  }

  clientUrlOf(id: number): string | undefined {
    return this.sm.member(id)?.clientUrls[0] ?? this.cfg.clientUrls.get(id);
  }

  hint(): LeaderHint {
    const s = this.node.status();
    return { self: this.id, leader: s.leader, term: s.term, leaderAddress: s.leader ? this.clientUrlOf(s.leader) : undefined };
  }

  private onMembers(members: MemberInfo[]): void {
    const peers = new Map<number, string>();
    for (const m of members) if (m.peerUrls.length > 0) peers.set(m.id, m.peerUrls[0]);
    this.transport.updatePeers(this.routed(peers));
  }

  /** The peer addresses to dial: the member table's, unless a test hook routes a member through a proxy. */
  private routed(peers: ReadonlyMap<number, string>): Map<number, string> {
    const routes = this.cfg.testHooks?.peerRoutes;
    return new Map([...peers].map(([id, addr]) => [id, routes?.get(id) ?? addr]));
  }

  /** The role for Status: LEARNER when this member is a learner in the applied configuration. */
  role(): string {
    const s = this.node.status();
    if (s.confState.learners.includes(this.id)) return 'LEARNER';
    switch (s.role) {
      case StateType.Leader:
        return 'LEADER';
      case StateType.Candidate:
        return 'CANDIDATE';
      case StateType.PreCandidate:
        return 'PRE_CANDIDATE';
      default:
        return 'FOLLOWER';
    }
  }

  // ---- applied-index waits ------------------------------------------------------------------------------------

  private onApplied(index: number): void {
    if (this.waiters.length === 0) return;
    const keep: AppliedWaiter[] = [];
    for (const w of this.waiters) {
      if (w.index <= index) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }

  /** Resolves once this member has applied `index`; DEADLINE_EXCEEDED at the deadline. */
  waitApplied(index: number, deadline: number, what = 'waiting for this member to catch up'): Promise<void> {
    if (this.applied() >= index) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new ServiceError(
            grpc.status.DEADLINE_EXCEEDED,
            `${what}: member ${this.id} has applied zxid ${this.applied()}, not yet ${index}, within the deadline; retry (or read from a member that is up to date)`,
          ),
        );
      }, Math.max(0, deadline - Date.now()));
      const waiter: AppliedWaiter = {
        index,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * Waits for a leader to be known: at most the deadline, and at most two maximum election timeouts (an
   * election normally ends well within that; past it the caller is better served by UNAVAILABLE and another
   * member).
   */
  private async waitForLeader(deadline: number, what: string): Promise<void> {
    const end = Math.min(deadline, Date.now() + 2 * this.cfg.electionMaxMs);
    for (;;) {
      const s = this.node.status();
      if (s.phase !== 'running') throw unavailable(`the member is ${s.phase}`, this.hint());
      if (s.leader !== 0) return;
      if (Date.now() + 20 > end) throw new NoLeaderError(unavailable(`${what}: no leader known`, this.hint()));
      await sleep(20);
    }
  }

  /**
   * `p`, or LEADER_CHANGED as soon as the leader changes first: a proposal or read index in flight with the old
   * leader may be lost (the core drops them silently), so the caller retries at once with the new one — safe
   * for writes because the retry carries the same {clientId, seq}, and for reads because a later read index
   * still covers every write acknowledged before the read started.
   */
  private untilLeaderChange<T>(p: Promise<T>): Promise<T | typeof LEADER_CHANGED> {
    let listener: (() => void) | undefined;
    const changed = new Promise<typeof LEADER_CHANGED>((r) => {
      listener = () => r(LEADER_CHANGED);
      this.leaderListeners.add(listener);
    });
    return Promise.race([p, changed]).finally(() => this.leaderListeners.delete(listener!));
  }

  private withDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new ServiceError(grpc.status.DEADLINE_EXCEEDED, `${what} not completed within the deadline; it may still apply: retry with the same request header to learn its outcome once`)),
        Math.max(0, deadline - Date.now()),
      );
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }

  // ---- writes -------------------------------------------------------------------------------------------------

  /** Applies a tree command through Raft; resolves with the tree's result (a failure is a result, not a throw). */
  async write(cmd: Command, deadline: number): Promise<{ result: CommandResult; index: number }> {
    if (cmd.clientId === undefined) {
      cmd.clientId = `~${this.id}.${this.incarnation}.${++this.counter}`;
      cmd.seq = 1;
    }
    for (let attempt = 0; ; attempt++) {
      const s = this.node.status();
      if (s.phase !== 'running') throw unavailable(`the member is ${s.phase}`, this.hint());
      if (Date.now() >= deadline) {
        throw new ServiceError(grpc.status.DEADLINE_EXCEEDED, 'write not completed within the deadline (leadership kept changing); retry with the same request header');
      }
      try {
        if (s.leader === this.id) {
          const r = await this.withDeadline(this.untilLeaderChange(this.node.propose(encodeCommand({ ...cmd, nowMs: this.clock.now() }))), deadline, 'write');
          if (r === LEADER_CHANGED) continue;
          return { result: r.result as CommandResult, index: r.index };
        }
        if (s.leader === 0) {
          await this.waitForLeader(deadline, 'write');
          continue;
        }
        const fr = await this.withDeadline(
          this.untilLeaderChange(this.transport.forwardWrite(s.leader, frameForward(FORWARD_WRITE, encodeCommand(cmd)))),
          deadline,
          'write',
        );
        if (fr === LEADER_CHANGED) continue;
        if ('error' in fr) throw new ServiceError(fr.error.code, fr.error.message);
        const result = JSON.parse(dec.decode(fr.ok)) as CommandResult;
        await this.waitApplied(fr.index, deadline, 'write applied on the leader');
        return { result, index: fr.index };
      } catch (err) {
        const retry =
          !(err instanceof NoLeaderError) &&
          (err instanceof ProposalDroppedError ||
          (err instanceof PeerError && (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED)) ||
            (err instanceof ServiceError && err.code === grpc.status.UNAVAILABLE));
        if (!retry || Date.now() + 50 > deadline) throw err;
        this.log.debug(`write attempt ${attempt + 1} failed (${(err as Error).message}); retrying with the same request header`);
        await sleep(Math.min(200, 20 * (attempt + 1)));
      }
    }
  }

  /** Member-table command (leader only; Cluster service). */
  async writeMembers(c: MemberCommand): Promise<void> {
    await this.node.propose(encodeMemberCommand(c));
  }

  /** The leader's side of ForwardWrites: one result per request, never a throw. */
  private async serveForwarded(r: Uint8Array): Promise<ForwardResult> {
    try {
      if (r[0] === FORWARD_TOUCH) {
        const ids = JSON.parse(dec.decode(r.subarray(1))) as number[];
        if (!this.isLeader()) throw unavailable('not the leader (a forwarded keep-alive)', this.hint());
        return { ok: enc.encode(JSON.stringify(await this.touchLocal(ids))), index: 0 };
      }
      if (r[0] !== FORWARD_WRITE) throw new ServiceError(grpc.status.INVALID_ARGUMENT, `unknown forwarded request kind 0x${(r[0] ?? 0).toString(16)}`);
      if (!this.isLeader()) throw unavailable('not the leader (a forwarded write)', this.hint());
      const cmd = decodeCommand(r.subarray(1));
      const p = await this.node.propose(encodeCommand({ ...cmd, nowMs: this.clock.now() }));
      return { ok: enc.encode(JSON.stringify(p.result)), index: p.index };
    } catch (err) {
      const e = toServiceError(err, () => this.hint());
      return { error: { code: e.code, message: e.message }, index: 0 };
    }
  }

  // ---- reads --------------------------------------------------------------------------------------------------

  /** Linearizable read barrier: after it, the local tree reflects every write acknowledged before the call. */
  async linearizable(deadline: number): Promise<void> {
    // A planted bug for the nemesis' tree canary (test builds only): serve "linearizable" reads locally.
    if (this.cfg.testHooks?.plantedBugs?.has('stale-reads')) return;
    for (;;) {
      try {
        const r = await this.withDeadline(this.untilLeaderChange(this.sharedReadIndex()), deadline, 'linearizable read (ReadIndex)');
        if (r === LEADER_CHANGED) continue;
        return;
      } catch (err) {
        if (err instanceof ProposalDroppedError && Date.now() + 50 < deadline) {
          await this.waitForLeader(deadline, 'linearizable read');
          continue;
        }
        if (err instanceof RequestTimeoutError) throw unavailable(`linearizable read: ${err.message}`, this.hint());
        throw err;
      }
    }
  }

  private sharedReadIndex(): Promise<number> {
    if (!this.readBatch) {
      const batch: Promise<number> = new Promise<void>((r) => setImmediate(r)).then(() => {
        if (this.readBatch === batch) this.readBatch = undefined;
        return this.node.readIndex();
      });
      this.readBatch = batch;
    }
    return this.readBatch;
  }

  /** SEQUENTIAL read barrier: applied ≥ max(minZxid, what this member already returned to the session). */
  async sequential(minZxid: number, sessionId: number, deadline: number): Promise<void> {
    const target = Math.max(minZxid, sessionId ? (this.sessionSeen.get(sessionId) ?? 0) : 0);
    if (target > 0) await this.waitApplied(target, deadline, `sequential read at min_zxid ${target}`);
  }

  /** Remembers that `sessionId` has seen `zxid` on this member. */
  saw(sessionId: number, zxid: number): void {
    if (!sessionId) return;
    if ((this.sessionSeen.get(sessionId) ?? 0) < zxid) this.sessionSeen.set(sessionId, zxid);
  }

  // ---- sessions -----------------------------------------------------------------------------------------------

  /** A keep-alive for these sessions: touched on the leader (forwarded when this member is not it). */
  async touch(ids: number[], deadline: number): Promise<TouchResult[]> {
    await this.waitForLeader(deadline, 'keep-alive');
    const s = this.node.status();
    if (s.leader === this.id) return this.touchLocal(ids);
    const fr = await this.withDeadline(this.transport.forwardWrite(s.leader, frameForward(FORWARD_TOUCH, enc.encode(JSON.stringify(ids)))), deadline, 'keep-alive');
    if ('error' in fr) throw new ServiceError(fr.error.code, fr.error.message);
    return JSON.parse(dec.decode(fr.ok)) as TouchResult[];
  }

  private ensureTracker(): void {
    if (this.trackerReady) return;
    const now = this.clock.monotonic();
    this.tracker.resetFromState(this.tree.sessions(), now, this.cfg.electionMs);
    this.trackerReady = true;
    this.lastCheckpoint = now;
    this.log.info(`session tracker reset from the replicated state: ${this.tracker.size} sessions`);
  }

  private async touchLocal(ids: number[]): Promise<TouchResult[]> {
    this.ensureTracker();
    const out: TouchResult[] = [];
    for (const id of ids) {
      if (!this.tracker.has(id)) {
        let s = this.tree.session(id);
        // Created at index `id`: a follower may have applied it a moment before this leader did.
        if (!s && id > this.applied()) {
          await this.waitApplied(id, Date.now() + 1000).catch(() => undefined);
          s = this.tree.session(id);
        }
        if (s && !this.tracker.has(id)) this.tracker.add(id, s.timeoutMs, this.clock.monotonic());
      }
      const now = this.clock.monotonic();
      const ok = this.tracker.touch(id, now);
      out.push(ok ? { id, ttlMs: Math.max(0, (this.tracker.deadline(id) ?? now) - now), expired: false } : { id, ttlMs: 0, expired: true });
    }
    return out;
  }

  /**
   * The leader's session duties (every few ticks): expire, checkpoint; everyone: sweep ended sessions. Session
   * deadlines are on the monotonic clock: a wall-clock step (NTP, an operator) must not expire every session at
   * once (found by the nemesis' clock fault; apps/consensus/test/clock.spec.ts).
   */
  private sessionLoop(): void {
    const s = this.node.status();
    if (s.phase !== 'running') return;
    const now = this.clock.monotonic();
    if (s.leader === this.id) {
      if (!this.trackerReady && s.applied >= s.commit) this.ensureTracker();
      if (this.trackerReady) {
        this.tracker.sync(this.tree.sessions(), now);
        const expired = this.tracker.expired(now);
        if (expired.length > 0 && !this.expiring) {
          this.expiring = true;
          this.log.info(`expiring sessions ${expired.join(', ')}`);
          this.node
            .propose(encodeCommand({ op: 'expireSessions', ids: expired, nowMs: this.clock.now() }))
            .then(() => {
              expired.forEach((id) => this.tracker.remove(id));
              this.consensusMetrics.sessionsExpired.inc(expired.length);
            })
            .catch((err: unknown) => this.log.warn(`proposing the expiry of sessions ${expired.join(', ')} failed: ${(err as Error).message}; retrying`))
            .finally(() => (this.expiring = false));
        }
        if (now - this.lastCheckpoint >= this.cfg.sessionCheckpointMs && this.tracker.size > 0 && !this.checkpointing) {
          this.checkpointing = true;
          this.lastCheckpoint = now;
          this.node
            .propose(encodeCommand({ op: 'checkpointSessions', remaining: this.tracker.checkpoint(now), nowMs: this.clock.now() }))
            .catch((err: unknown) => this.log.warn(`session checkpoint failed: ${(err as Error).message}`))
            .finally(() => (this.checkpointing = false));
        }
      }
    }
    if (now >= this.sweepAt) {
      this.sweepAt = now + 200;
      this.watches.sweepSessions();
      for (const sid of this.sessionSeen.keys()) if (this.tree.session(sid) === null) this.sessionSeen.delete(sid);
    }
  }
}
