/**
 * RaftNode: the driver that turns the pure core (libs/raft) into a running node. It is the only Raft code
 * that touches clocks (the tick timer, request deadlines), files (the WAL of libs/storage) and the network
 * (a Transport). See docs/raft.md for the driver contract it implements.
 *
 * The Ready loop is single-flight: while one Ready is being carried out (its WAL write and fdatasync in
 * flight), messages, ticks and proposals keep being stepped into the core and accumulate; the next Ready
 * then carries all of them, so one fdatasync covers every proposal that arrived during the previous one.
 * For each Ready, in order:
 *   1. persist: an incoming snapshot (wal.saveSnapshot, storage.applySnapshot, state-machine restore), then
 *      the hard state and entries with ONE wal.save(hs, entries, mustSync) (one fdatasync for the batch),
 *      then the same into the MemoryStorage the core reads;
 *   2. send the messages — only now, so no vote or acknowledgment leaves before what it depends on is
 *      durable;
 *   3. apply the committed entries (ConfChange entries through applyConfChange; the leader's empty no-ops are
 *      skipped), resolving proposals, conf changes and reads;
 *   4. advance; then take a snapshot when `snapshotEvery` entries were applied since the last one.
 *
 * An optional observer (observer.ts) hears what happens — leadership, elections, indexes, proposals, WAL
 * fdatasync latency, heartbeat round trips, snapshots — without the core knowing: all of it is read off the
 * Readys, the messages and the driver's own bookkeeping.
 */
import { randomBytes } from 'node:crypto';
import {
  ConfChange,
  ConfChangeType,
  ConfState,
  Config,
  ConsensusEngine,
  Entry,
  EntryType,
  HardState,
  MemoryStorage,
  Message,
  MessageType,
  NONE,
  NodeId,
  ProposalDroppedError,
  RaftLogger,
  RawNode,
  Ready,
  StateType,
  decodeConfChange,
  isEmptyHardState,
  isEmptySnapshot,
} from '@app/raft';
import { FileOps, Wal, nodeFileOps, toMemoryStorage } from '@app/storage';
import { NodeStoppedError, RequestTimeoutError } from './errors.js';
import { ElectionKind, RaftNodeObserver, RoundTripProbe, timedFileOps } from './observer.js';
import { RequestId, decodeRequest, encodeRequest } from './request.js';
import { StateMachine } from './state-machine.js';
import { Transport, TransportHandler } from './transport.js';

export interface RaftNodeLogger {
  debug?(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error?(msg: string): void;
}

export interface RaftNodeOptions {
  id: NodeId;
  /** Initial voters; used only when `dataDir` holds no state yet (RawNode.bootstrap). Empty: a node that
   * joins an existing cluster (added with addLearner/promote) and waits to be contacted by its leader. */
  peers: NodeId[];
  /** The node's WAL and snapshots live here (created when absent). */
  dataDir: string;
  /** Tick interval (default 100 ms). */
  tickMs?: number;
  /** Minimum election timeout in ticks (default 10). */
  electionTicks?: number;
  /** Heartbeat interval in ticks (default 1). */
  heartbeatTicks?: number;
  /** Exclusive upper bound of the randomized election timeout in ticks (default 2 × electionTicks). */
  maxElectionTicks?: number;
  transport: Transport;
  stateMachine: StateMachine;
  /** Take a snapshot every this many applied entries (default 10000). */
  snapshotEvery?: number;
  /** Entries kept in the log below a snapshot, so slightly lagging followers catch up without one (default 5000). */
  snapshotCatchUpEntries?: number;
  /** Proposals, reads, conf changes and transfers not completed within this time are rejected (default 5000). */
  proposalTimeoutMs?: number;
  logger?: RaftNodeLogger;
  /** Randomness for election timeouts, in [0, 1) (default Math.random). */
  random?: () => number;
  /** Tuning of the core (see @app/raft Config). */
  raft?: Partial<
    Pick<
      Config,
      'maxSizePerMsg' | 'maxCommittedSizePerReady' | 'maxInflightMsgs' | 'maxUncommittedEntriesSize' | 'checkQuorum' | 'preVote' | 'readOnlyOption'
    >
  >;
  /** WAL options (see @app/storage WalOptions). */
  wal?: { segmentBytes?: number; fileOps?: FileOps };
  /** Told about leadership, elections, indexes, proposals, fdatasyncs, peer round trips and snapshots
   * (see observer.ts; `RaftMetrics` of @app/observability is one). */
  observer?: RaftNodeObserver;
}

export interface ProposeResult {
  /** The log index the command was committed at. */
  index: number;
  /** What StateMachine.apply returned. */
  result: unknown;
}

export interface ConfChangeResult {
  index: number;
  confState: ConfState;
}

export type RaftNodePhase = 'new' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface RaftNodeStatus {
  id: NodeId;
  phase: RaftNodePhase;
  role: StateType;
  term: number;
  vote: NodeId;
  /** The leader this node knows of (0: none). */
  leader: NodeId;
  commit: number;
  applied: number;
  /** Last index in the node's durable log. */
  lastIndex: number;
  /** Index of the latest snapshot (taken or installed). */
  snapshotIndex: number;
  confState: ConfState;
  /** Proposals of this node not yet applied. */
  pendingProposals: number;
  /** Why the node failed (phase 'failed'). */
  error?: string;
  /** On the leader only: replication progress of every member (match = highest index known replicated). */
  progress: PeerProgress[];
}

export interface PeerProgress {
  id: NodeId;
  match: number;
  next: number;
  state: string;
  isLearner: boolean;
  recentActive: boolean;
}

interface Deadline {
  deadline: number;
}
interface ProposalWaiter extends Deadline {
  /** performance.now() at propose(). */
  start: number;
  resolve(r: ProposeResult): void;
  reject(e: unknown): void;
}
interface ReadWaiter extends Deadline {
  /** Known once the matching ReadState arrived. */
  index: number | undefined;
  resolve(index: number): void;
  reject(e: unknown): void;
}
interface ConfWaiter extends Deadline {
  cc: ConfChange;
  resolve(r: ConfChangeResult): void;
  reject(e: unknown): void;
}
interface TransferWaiter extends Deadline {
  to: NodeId;
  resolve(): void;
  reject(e: unknown): void;
}

const silentLogger: RaftNodeLogger = {
  info: () => {},
  warn: (m) => console.warn(m),
  error: (m) => console.error(m),
};

export class RaftNode implements TransportHandler {
  readonly id: NodeId;
  private readonly opts: Required<
    Pick<RaftNodeOptions, 'tickMs' | 'electionTicks' | 'heartbeatTicks' | 'snapshotEvery' | 'snapshotCatchUpEntries' | 'proposalTimeoutMs'>
  >;
  private readonly logger: RaftNodeLogger;
  private readonly sm: StateMachine;
  private readonly transport: Transport;
  private readonly observer: RaftNodeObserver | undefined;
  /** Heartbeat round trips, measured only when the observer wants them. */
  private readonly rtt: RoundTripProbe | undefined;
  /** Random per start: request ids of an earlier run can never match this run's waiters. */
  private readonly incarnation = randomBytes(4).readUInt32BE(0);
  private counter = 0;

  private phase: RaftNodePhase = 'new';
  private starting: Promise<void> = Promise.resolve();
  private stopRequested = false;
  private stopping: Promise<void> | undefined;
  private failure: Error | undefined;
  private wal!: Wal;
  private storage!: MemoryStorage;
  private engine!: ConsensusEngine;
  private ticker: ReturnType<typeof setInterval> | undefined;

  /** Set while the Ready loop runs; cleared synchronously when it exits. */
  private looping = false;
  private loopDone: Promise<void> = Promise.resolve();

  private role: StateType = StateType.Follower;
  private leader: NodeId = NONE;
  private hardState: HardState = { term: 0, vote: NONE, commit: 0 };
  private applied = 0;
  private snapshotIndex = 0;
  private confState: ConfState = { voters: [], learners: [] };

  private readonly proposals = new Map<number, ProposalWaiter>();
  private readonly reads = new Map<number, ReadWaiter>();
  private confWaiters: ConfWaiter[] = [];
  private transferWaiters: TransferWaiter[] = [];

  constructor(private readonly options: RaftNodeOptions) {
    if (!Number.isInteger(options.id) || options.id <= 0 || options.id > 0xffff_ffff) throw new RangeError(`bad node id ${options.id}`);
    this.id = options.id;
    this.opts = {
      tickMs: options.tickMs ?? 100,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      snapshotEvery: options.snapshotEvery ?? 10_000,
      snapshotCatchUpEntries: options.snapshotCatchUpEntries ?? 5_000,
      proposalTimeoutMs: options.proposalTimeoutMs ?? 5_000,
    };
    if (this.opts.snapshotEvery < 1) throw new RangeError('snapshotEvery must be at least 1');
    if (this.opts.snapshotCatchUpEntries < 0) throw new RangeError('snapshotCatchUpEntries must not be negative');
    this.logger = options.logger ?? silentLogger;
    this.sm = options.stateMachine;
    this.transport = options.transport;
    this.observer = options.observer;
    if (this.observer?.onRoundTrip) this.rtt = new RoundTripProbe(this.opts.electionTicks * this.opts.tickMs);
  }

  // ---- lifecycle ------------------------------------------------------------------------------------------

  /**
   * Opens the WAL (recovering it), rebuilds the log the core reads, restores the state machine from the latest
   * snapshot, creates the core (applied = the snapshot's index: committed entries after it are applied again)
   * and starts the transport and the tick timer. A new data dir is bootstrapped with `peers`.
   */
  start(): Promise<void> {
    if (this.phase !== 'new') {
      return Promise.reject(new Error(`raft node ${this.id}: start() in phase ${this.phase} (a node starts once; create a new RaftNode to restart)`));
    }
    this.phase = 'starting';
    this.starting = this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const o = this.options;
    try {
      const { wal, recovered } = await Wal.open(o.dataDir, {
        logger: { info: (m) => this.logger.info(`[node ${this.id}] ${m}`), warn: (m) => this.logger.warn(`[node ${this.id}] ${m}`) },
        segmentBytes: o.wal?.segmentBytes,
        fileOps: this.observer?.onFsync ? timedFileOps(o.wal?.fileOps ?? nodeFileOps, (s) => this.notify('onFsync', s)) : o.wal?.fileOps,
      });
      this.wal = wal;
      const isNew = recovered.snapshot === undefined && recovered.entries.length === 0 && isEmptyHardState(recovered.hardState);
      const storage = toMemoryStorage(recovered);
      const snap = recovered.snapshot;
      if (snap && !isEmptySnapshot(snap)) {
        // A crash between saving an installed snapshot and the hard state of the same Ready leaves a hard state
        // older than the snapshot. Everything in a snapshot is committed, and a term may always move forward.
        const hs = storage.hardState;
        const fixed: HardState = { ...hs };
        if (fixed.commit < snap.metadata.index) fixed.commit = snap.metadata.index;
        if (fixed.term < snap.metadata.term) {
          fixed.term = snap.metadata.term;
          fixed.vote = NONE;
        }
        if (fixed.commit !== hs.commit || fixed.term !== hs.term) {
          this.logger.warn(
            `[node ${this.id}] hard state (term ${hs.term}, commit ${hs.commit}) is behind snapshot ${snap.metadata.index} (term ${snap.metadata.term}); raised`,
          );
          storage.setHardState(fixed);
        }
        this.sm.restore(snap.data);
        this.applied = snap.metadata.index;
        this.snapshotIndex = snap.metadata.index;
      }
      this.storage = storage;
      const core: RaftLogger = {
        debug: this.logger.debug?.bind(this.logger),
        info: (m) => this.logger.info(m),
        warn: (m) => this.logger.warn(m),
      };
      const raw = new RawNode({
        id: this.id,
        electionTick: this.opts.electionTicks,
        heartbeatTick: this.opts.heartbeatTicks,
        maxElectionTick: o.maxElectionTicks,
        storage,
        applied: this.applied,
        random: o.random ?? Math.random,
        logger: core,
        ...o.raft,
      });
      if (isNew && o.peers.length > 0) raw.bootstrap(o.peers);
      this.engine = raw;
      const st = raw.status();
      this.hardState = { ...st.hardState };
      this.role = st.softState.state;
      this.leader = st.softState.lead;
      this.confState = { voters: [...st.config.voters], learners: [...st.config.learners] };
      this.notify('onHardState', this.hardState.term, this.hardState.commit);
      this.notify('onApplied', this.applied);
      this.notify('onLeaderChange', this.leader, this.hardState.term, this.leader === this.id);
      this.logger.info(
        `[node ${this.id}] started (${isNew ? (o.peers.length > 0 ? `bootstrapped with voters ${o.peers.join(',')}` : 'new, waiting to join') : 'recovered'}): ` +
          `term ${this.hardState.term}, commit ${this.hardState.commit}, snapshot ${this.snapshotIndex}, last index ${storage.lastIndex()}`,
      );
    } catch (err) {
      this.phase = 'failed';
      this.failure = asError(err);
      if (this.wal) await this.wal.close().catch(() => {});
      throw err;
    }
    if (this.stopRequested) {
      // stop() was called while we were opening the WAL.
      await this.wal.close().catch(() => {});
      this.phase = 'stopped';
      return;
    }
    try {
      this.transport.start(this);
    } catch (err) {
      this.phase = 'failed';
      this.failure = asError(err);
      await this.wal.close().catch(() => {});
      throw err;
    }
    this.phase = 'running';
    this.ticker = setInterval(() => this.onTick(), this.opts.tickMs);
    this.kick();
  }

  /**
   * Stops the timer and the transport, lets the Ready in flight finish, rejects pending requests, closes the
   * WAL. Idempotent; also releases a failed node's WAL.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.phase === 'new') {
      this.phase = 'stopped';
      return;
    }
    if (this.phase === 'starting') {
      this.stopRequested = true;
      await this.starting.catch(() => {});
      if ((this.phase as RaftNodePhase) !== 'running') return; // stopped by start itself, or start failed (WAL closed there)
    }
    const wasFailed = this.phase === 'failed';
    this.phase = 'stopping';
    this.halt();
    await this.loopDone;
    this.rejectAll(new NodeStoppedError(`raft node ${this.id} stopped`));
    if (!wasFailed) this.forgetLeader();
    if (this.wal) {
      try {
        await this.wal.close();
      } catch (err) {
        if (!wasFailed) this.logger.warn(`[node ${this.id}] closing the WAL failed: ${asError(err).message}`);
      }
    }
    this.phase = wasFailed ? 'failed' : 'stopped';
  }

  private halt(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    this.transport.stop();
  }

  /** A broken invariant or an I/O error: the node stops for good (its durable state is intact). */
  private fail(err: unknown): void {
    if (this.phase === 'failed' || this.phase === 'stopped') return;
    const e = asError(err);
    this.failure = e;
    const msg = `[node ${this.id}] failed: ${e.stack ?? e.message}`;
    if (this.logger.error) this.logger.error(msg);
    else this.logger.warn(msg);
    this.phase = 'failed';
    this.halt();
    this.rejectAll(new NodeStoppedError(`raft node ${this.id} failed: ${e.message}`));
    this.forgetLeader();
  }

  /** A stopped or failed node follows no one (status() keeps the last leader known, for diagnosis). */
  private forgetLeader(): void {
    this.notify('onLeaderChange', NONE, this.hardState.term, false);
  }

  /** Calls the observer's callback `k`, if any; an observer that throws is logged, never fatal. */
  private notify<K extends keyof RaftNodeObserver>(k: K, ...args: Parameters<NonNullable<RaftNodeObserver[K]>>): void {
    const o = this.observer;
    const f = o?.[k] as ((...a: unknown[]) => void) | undefined;
    if (!f) return;
    try {
      f.apply(o, args);
    } catch (err) {
      this.logger.warn(`[node ${this.id}] observer ${k} threw: ${asError(err).message}`);
    }
  }

  // ---- the transport's side ---------------------------------------------------------------------------------

  receive(m: Message): void {
    if (this.phase !== 'running') return;
    if (this.rtt && m.type === MessageType.HeartbeatResp) {
      const s = this.rtt.received(m.from, performance.now());
      if (s !== undefined) this.notify('onRoundTrip', m.from, s);
    }
    this.input(() => this.engine.step(m));
  }

  reportUnreachable(id: NodeId): void {
    if (this.phase !== 'running') return;
    this.rtt?.reset(id);
    this.input(() => this.engine.reportUnreachable(id));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.phase !== 'running') return;
    this.input(() => this.engine.reportSnapshot(id, ok));
  }

  /** Feeds the core (an unexpected throw is fatal), then makes sure the Ready loop runs. */
  private input(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.kick();
  }

  // ---- client API -------------------------------------------------------------------------------------------

  /**
   * Proposes a command. Resolves with its log index and the state machine's result once it is applied on
   * this node. Rejects with ProposalDroppedError when the core refuses it now (no leader known, transfer in
   * progress, ...), with RequestTimeoutError when it is not applied within proposalTimeoutMs (outcome
   * unknown: typically leadership was lost), with NodeStoppedError when the node stops first. On a follower
   * the core forwards it to the leader.
   */
  propose(command: Uint8Array): Promise<ProposeResult> {
    return new Promise<ProposeResult>((resolve, reject) => {
      if (!this.checkRunning(reject)) return;
      const id: RequestId = { nodeId: this.id, incarnation: this.incarnation, counter: ++this.counter };
      const start = performance.now();
      try {
        this.engine.propose(encodeRequest(id, command));
      } catch (err) {
        if (err instanceof ProposalDroppedError) {
          this.notify('onProposalFailed', 'dropped');
          reject(err);
        } else {
          this.fail(err);
          reject(err);
        }
        return;
      }
      this.proposals.set(id.counter, { start, resolve, reject, deadline: start + this.opts.proposalTimeoutMs });
      this.notify('onProposalsPending', this.proposals.size);
      this.kick();
    });
  }

  /**
   * Linearizable read barrier: resolves with a read index once the leader confirmed it is still leader (a
   * heartbeat round to a quorum) and this node has applied up to that index, so a read of the local state
   * machine after it observes every write acknowledged before readIndex() was called.
   */
  readIndex(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (!this.checkRunning(reject)) return;
      if (this.leader === NONE) {
        reject(new ProposalDroppedError(`node ${this.id} knows no leader (term ${this.hardState.term})`));
        return;
      }
      const id: RequestId = { nodeId: this.id, incarnation: this.incarnation, counter: ++this.counter };
      this.reads.set(id.counter, { index: undefined, resolve, reject, deadline: this.deadline() });
      this.input(() => this.engine.readIndex(encodeRequest(id, new Uint8Array(0))));
    });
  }

  /** Proposes a membership change; resolves once it is applied on this node. */
  proposeConfChange(cc: ConfChange): Promise<ConfChangeResult> {
    return new Promise<ConfChangeResult>((resolve, reject) => {
      if (!this.checkRunning(reject)) return;
      try {
        this.engine.proposeConfChange(cc);
      } catch (err) {
        if (err instanceof ProposalDroppedError) reject(err);
        else {
          this.fail(err);
          reject(err);
        }
        return;
      }
      this.confWaiters.push({ cc, resolve, reject, deadline: this.deadline() });
      this.kick();
    });
  }

  /** Adds a non-voting learner (it catches up, then promote() makes it a voter). */
  addLearner(nodeId: NodeId, context?: string): Promise<ConfChangeResult> {
    return this.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId, context });
  }

  /** Makes a learner (or a new node) a voter. */
  promote(nodeId: NodeId, context?: string): Promise<ConfChangeResult> {
    return this.proposeConfChange({ type: ConfChangeType.AddNode, nodeId, context });
  }

  /** Removes a member. */
  remove(nodeId: NodeId): Promise<ConfChangeResult> {
    return this.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId });
  }

  /**
   * Asks the leader to hand leadership to `to`; resolves when this node sees `to` as leader. Call it on the
   * leader, or on `to` itself (the core forwards the request to the leader).
   */
  transferLeadership(to: NodeId): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (!this.checkRunning(reject)) return;
      if (this.leader === to) {
        resolve();
        return;
      }
      this.transferWaiters.push({ to, resolve, reject, deadline: this.deadline() });
      this.input(() => this.engine.transferLeader(to));
    });
  }

  /** Starts an election now (tests and tooling). */
  campaign(): void {
    if (this.phase === 'running') this.input(() => this.engine.campaign());
  }

  status(): RaftNodeStatus {
    const running = this.engine !== undefined;
    const st = running ? this.engine.status() : undefined;
    return {
      id: this.id,
      phase: this.phase,
      role: this.role,
      term: st?.hardState.term ?? this.hardState.term,
      vote: st?.hardState.vote ?? this.hardState.vote,
      leader: this.leader,
      commit: st?.hardState.commit ?? this.hardState.commit,
      applied: this.applied,
      lastIndex: this.storage ? this.storage.lastIndex() : 0,
      snapshotIndex: this.snapshotIndex,
      confState: { voters: [...this.confState.voters], learners: [...this.confState.learners] },
      pendingProposals: this.proposals.size,
      error: this.failure?.message,
      progress: st ? [...st.progress].map(([id, p]) => ({ id, ...p })) : [],
    };
  }

  /**
   * The voter other than this one that is most up to date (highest match; lowest id on ties), from the
   * leader's progress — the best target for a leadership transfer. Undefined when not leader or alone.
   */
  mostCaughtUpVoter(): NodeId | undefined {
    let best: PeerProgress | undefined;
    for (const p of this.status().progress) {
      if (p.id === this.id || p.isLearner) continue;
      if (!best || p.match > best.match) best = p;
    }
    return best?.id;
  }

  private checkRunning(reject: (e: unknown) => void): boolean {
    if (this.phase === 'running') return true;
    reject(new NodeStoppedError(`raft node ${this.id} is ${this.phase}${this.failure ? `: ${this.failure.message}` : ''}`));
    return false;
  }

  private deadline(): number {
    return performance.now() + this.opts.proposalTimeoutMs;
  }

  // ---- time -------------------------------------------------------------------------------------------------

  private onTick(): void {
    if (this.phase !== 'running') return;
    this.input(() => this.engine.tick());
    this.expire(performance.now());
  }

  private expire(now: number): void {
    const ms = this.opts.proposalTimeoutMs;
    // Same timeout for all: deadlines grow in insertion order, so only the head of each map can expire.
    let expired = 0;
    for (const [k, w] of this.proposals) {
      if (w.deadline > now) break;
      this.proposals.delete(k);
      expired++;
      w.reject(new RequestTimeoutError('proposal', ms));
    }
    if (expired > 0) {
      for (let i = 0; i < expired; i++) this.notify('onProposalFailed', 'timeout');
      this.notify('onProposalsPending', this.proposals.size);
    }
    for (const [k, w] of this.reads) {
      if (w.deadline > now) break;
      this.reads.delete(k);
      w.reject(new RequestTimeoutError(w.index === undefined ? 'read index (no answer from a leader)' : `read index ${w.index}`, ms));
    }
    this.confWaiters = this.confWaiters.filter((w) => {
      if (w.deadline > now) return true;
      w.reject(new RequestTimeoutError(`conf change ${w.cc.type} ${w.cc.nodeId}`, ms));
      return false;
    });
    this.transferWaiters = this.transferWaiters.filter((w) => {
      if (w.deadline > now) return true;
      w.reject(new RequestTimeoutError(`leadership transfer to ${w.to} (leader is ${this.leader})`, ms));
      return false;
    });
  }

  private rejectAll(err: Error): void {
    const pending = this.proposals.size;
    for (const w of this.proposals.values()) w.reject(err);
    this.proposals.clear();
    if (pending > 0) {
      for (let i = 0; i < pending; i++) this.notify('onProposalFailed', 'stopped');
      this.notify('onProposalsPending', 0);
    }
    for (const w of this.reads.values()) w.reject(err);
    this.reads.clear();
    for (const w of this.confWaiters) w.reject(err);
    this.confWaiters = [];
    for (const w of this.transferWaiters) w.reject(err);
    this.transferWaiters = [];
  }

  // ---- the Ready loop ---------------------------------------------------------------------------------------

  /** Runs the Ready loop unless it is already running (it picks up whatever arrived meanwhile). */
  private kick(): void {
    if (this.looping || this.phase !== 'running') return;
    this.looping = true;
    this.loopDone = this.runLoop();
  }

  private async runLoop(): Promise<void> {
    try {
      while (this.phase === 'running' && this.engine.hasReady()) {
        const rd = this.engine.ready();
        await this.handleReady(rd);
        this.engine.advance(rd);
        if (this.applied - this.snapshotIndex >= this.opts.snapshotEvery) await this.takeSnapshot();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      // Synchronously after the last hasReady() check: no input can slip in unseen.
      this.looping = false;
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    const prevRole = this.role;
    const prevLeader = this.leader;
    if (rd.softState) {
      this.role = rd.softState.state;
      this.leader = rd.softState.lead;
    }
    if (rd.hardState) this.hardState = { ...rd.hardState };
    const appliedBefore = this.applied;
    if (this.observer) this.observeReady(rd, prevRole, prevLeader);

    // 1. Persist.
    const snap = rd.snapshot && !isEmptySnapshot(rd.snapshot) ? rd.snapshot : undefined;
    if (snap) {
      const t0 = performance.now();
      await this.wal.saveSnapshot(snap);
      this.storage.applySnapshot(snap);
      this.sm.restore(snap.data);
      this.applied = snap.metadata.index;
      this.snapshotIndex = snap.metadata.index;
      this.confState = { voters: [...snap.metadata.confState.voters], learners: [...snap.metadata.confState.learners] };
      this.notify('onSnapshot', 'install', (performance.now() - t0) / 1000);
      this.logger.info(`[node ${this.id}] installed snapshot ${snap.metadata.index} (term ${snap.metadata.term})`);
    }
    if (rd.hardState || rd.entries.length > 0) {
      await this.wal.save(rd.hardState, rd.entries, rd.mustSync);
      if (rd.hardState) this.storage.setHardState(rd.hardState);
      if (rd.entries.length > 0) this.storage.append(rd.entries);
    }

    // 2. Send: what the messages depend on is durable now.
    if (rd.messages.length > 0) {
      for (const m of rd.messages) if (m.type === MessageType.Snap) await this.freshenSnapshot(m);
      this.send(rd.messages);
    }

    // 3. Apply.
    for (const rs of rd.readStates) {
      const req = decodeRequest(rs.requestCtx);
      if (!req || req.id.nodeId !== this.id || req.id.incarnation !== this.incarnation) continue;
      const w = this.reads.get(req.id.counter);
      if (w) w.index = rs.index;
    }
    let commands = 0;
    for (const e of rd.committedEntries) if (this.apply(e)) commands++;
    if (commands > 0) {
      this.notify('onProposalsApplied', commands);
      this.notify('onProposalsPending', this.proposals.size);
    }
    if (this.applied !== appliedBefore) this.notify('onApplied', this.applied);
    this.resolveReads();
    if (rd.softState) this.resolveTransfers();
  }

  /** What a Ready tells the observer before it is carried out: leadership, elections, hard state, commits. */
  private observeReady(rd: Ready, prevRole: StateType, prevLeader: NodeId): void {
    // An election is a transition into (Pre)Candidate, or (already there) a new round of (Pre)Vote requests
    // because the previous round timed out. A campaign's requests all leave in one Ready.
    const campaign = (state: StateType, req: MessageType, kind: ElectionKind): void => {
      if (this.role !== state) return;
      if (prevRole !== state || rd.messages.some((m) => m.type === req && m.from === this.id)) this.notify('onElectionStarted', kind);
    };
    campaign(StateType.PreCandidate, MessageType.PreVote, 'pre_vote');
    campaign(StateType.Candidate, MessageType.Vote, 'vote');
    if (this.leader !== prevLeader) this.notify('onLeaderChange', this.leader, this.hardState.term, this.leader === this.id);
    if (rd.hardState) this.notify('onHardState', rd.hardState.term, rd.hardState.commit);
    let committed = 0;
    for (const e of rd.committedEntries) if (e.index > this.applied && e.type === EntryType.Normal && e.data.length > 0) committed++;
    if (committed > 0) this.notify('onProposalsCommitted', committed);
  }

  private send(messages: Message[]): void {
    if (this.rtt) {
      const now = performance.now();
      for (const m of messages) if (m.type === MessageType.Heartbeat) this.rtt.sent(m.to, now);
    }
    try {
      this.transport.send(messages);
    } catch (err) {
      this.logger.warn(`[node ${this.id}] transport send failed: ${asError(err).message}`);
      const seen = new Set<NodeId>();
      for (const m of messages) {
        if (seen.has(m.to)) continue;
        seen.add(m.to);
        this.engine.reportUnreachable(m.to);
      }
    }
  }

  /** Applies one committed entry; true when it was a command (not a conf change or a leader's no-op). */
  private apply(e: Entry): boolean {
    if (e.index <= this.applied) return false; // covered by a snapshot
    if (e.index !== this.applied + 1) throw new Error(`node ${this.id}: committed entry ${e.index} handed out after applied ${this.applied}`);
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      const cs = this.engine.applyConfChange(cc);
      this.confState = { voters: [...cs.voters], learners: [...cs.learners] };
      this.logger.info(`[node ${this.id}] applied conf change ${cc.type} ${cc.nodeId} at ${e.index}: voters ${cs.voters.join(',')} learners ${cs.learners.join(',')}`);
      const i = this.confWaiters.findIndex((w) => w.cc.type === cc.type && w.cc.nodeId === cc.nodeId);
      if (i >= 0) {
        const [w] = this.confWaiters.splice(i, 1);
        w.resolve({ index: e.index, confState: this.confState });
      }
    } else if (e.data.length > 0) {
      const req = decodeRequest(e.data);
      if (!req) throw new Error(`node ${this.id}: entry ${e.index} (${e.data.length} bytes) was not proposed through a RaftNode`);
      let result: unknown;
      let error: unknown;
      let threw = false;
      try {
        result = this.sm.apply({ term: e.term, index: e.index, type: e.type, data: req.command });
      } catch (err) {
        threw = true;
        error = err;
      }
      if (req.id.nodeId === this.id && req.id.incarnation === this.incarnation) {
        const w = this.proposals.get(req.id.counter);
        if (w) {
          this.proposals.delete(req.id.counter);
          // Committed and applied: the consensus part succeeded even when the state machine refused it.
          if (this.observer) this.notify('onProposalCompleted', (performance.now() - w.start) / 1000);
          if (threw) w.reject(error);
          else w.resolve({ index: e.index, result });
        }
      }
      this.applied = e.index;
      return true;
    }
    // Empty normal entries are a new leader's no-op: nothing to apply.
    this.applied = e.index;
    return false;
  }

  private resolveReads(): void {
    for (const [k, w] of this.reads) {
      if (w.index !== undefined && w.index <= this.applied) {
        this.reads.delete(k);
        w.resolve(w.index);
      }
    }
  }

  private resolveTransfers(): void {
    this.transferWaiters = this.transferWaiters.filter((w) => {
      if (this.leader !== w.to) return true;
      w.resolve();
      return false;
    });
  }

  /**
   * The core sends the snapshot its storage holds, which may predate entries applied since — in particular the
   * conf change that added the recipient, which would then refuse it ("not in the ConfState"). Like etcd's
   * server, send a snapshot at the current applied index instead (taken, persisted and compacted as usual).
   * The recipient's AppResp then reports an index ≥ the one the core expects, which it accepts.
   */
  private async freshenSnapshot(m: Message): Promise<void> {
    if (m.snapshot && m.snapshot.metadata.index < this.applied) {
      await this.takeSnapshot();
      m.snapshot = this.storage.snapshot();
    }
  }

  /** A snapshot of the state machine at the applied index; the log below it (less a catch-up tail) goes. */
  private async takeSnapshot(): Promise<void> {
    const t0 = performance.now();
    const index = this.applied;
    const snap = this.storage.createSnapshot(index, this.confState, this.sm.snapshot());
    await this.wal.saveSnapshot(snap);
    this.snapshotIndex = index;
    const compactTo = index - this.opts.snapshotCatchUpEntries;
    if (compactTo > this.storage.firstIndex() - 1) this.storage.compact(compactTo);
    this.notify('onSnapshot', 'take', (performance.now() - t0) / 1000);
    this.logger.info(`[node ${this.id}] snapshot at ${index} (${snap.data.length} bytes); log compacted to ${this.storage.firstIndex()}`);
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
