/**
 * The simulated cluster: nodes (an engine, its MemoryStorage, its simulated disk, its state machine), the
 * simulated network, the logical clock, and the driver loop that carries out every Ready exactly as the real
 * driver must. All checkers are fed from here. Random workloads (simulate.ts) and scripted scenarios
 * (scenarios.ts) both drive this class.
 */
import {
  ConfChange,
  ConfChangeType,
  ConfState,
  ConsensusEngine,
  Entry,
  EntryType,
  HardState,
  MemoryStorage,
  Message,
  MessageType,
  NodeId,
  PlantedBugs,
  ProposalDroppedError,
  Ready,
  StateType,
  decodeConfChange,
  emptyHardState,
  isEmptySnapshot,
} from '@app/raft';
import { AppModel, DIGEST_APP, SimApp } from './app.js';
import { CheckedNode, Promises, SafetyChecker, noPromises } from './checkers.js';
import { SimDisk } from './disk.js';
import { EngineFactory } from './engine-factory.js';
import { InFlight, NetworkProfile, RELIABLE_NETWORK, SimNetwork } from './network.js';
import { Rng } from './prng.js';
import { Trace } from './trace.js';

export interface ClusterConfig {
  seed: number;
  /** Founding voters: ids 1..size. */
  size: number;
  factory: EngineFactory;
  electionTick: number;
  heartbeatTick: number;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  checkQuorum: boolean;
  preVote: boolean;
  /** Take an application snapshot every this many applied entries. */
  snapshotEvery: number;
  /** Entries kept below the snapshot when compacting. */
  snapshotKeep: number;
  network: NetworkProfile;
  /** Bugs planted in the core (passed to the engine's config). */
  plantedBugs: PlantedBugs;
  /** Planted driver bug: the disk forgets the vote when read back after a crash. */
  forgetVoteOnRestart: boolean;
  /** Planted driver bug: a Ready's messages are sent before its writes are fsynced. */
  ackBeforeFsync: boolean;
  /** Probability that a node crashes between a Ready's write and its fsync. */
  midReadyCrashRate: number;
  /** Also take a snapshot right after applying a membership change (see maybeSnapshot). */
  snapshotOnConfChange: boolean;
  verbose: boolean;
  /** The state machine every node runs (default: the chained digest, {@link DIGEST_APP}). */
  app?: AppModel;
}

export const DEFAULT_CLUSTER_CONFIG: Omit<ClusterConfig, 'seed' | 'factory'> = {
  size: 3,
  electionTick: 10,
  heartbeatTick: 1,
  maxSizePerMsg: 1024 * 1024,
  maxInflightMsgs: 256,
  checkQuorum: true,
  preVote: true,
  snapshotEvery: 20,
  snapshotKeep: 2,
  network: RELIABLE_NETWORK,
  plantedBugs: {},
  forgetVoteOnRestart: false,
  ackBeforeFsync: false,
  midReadyCrashRate: 0,
  snapshotOnConfChange: true,
  verbose: false,
};

export class SimNode implements CheckedNode {
  engine: ConsensusEngine | undefined;
  storage = new MemoryStorage();
  readonly disk: SimDisk;
  app: SimApp;
  applied = 0;
  confState: ConfState = { voters: [], learners: [] };
  lastSnapshotIndex = 0;
  running = false;
  /** Removed from the cluster and shut down for good. */
  decommissioned = false;
  incarnation = 0;
  state: StateType = StateType.Follower;
  lead: NodeId = 0;
  /** The engine's current hard state as last reported (volatile view). */
  hard: HardState = emptyHardState();
  /** Highest commit index already reported to the checkers in this incarnation. */
  commitSeen = 0;
  /** The durable hard state when the node last crashed (compared with what the restart reads back). */
  durableAtCrash: HardState | undefined;
  crashes = 0;
  /** What this incarnation told others (must all be durable when it crashes). */
  promises: Promises = noPromises();
  /** Reports to the engine deferred until after advance(). */
  deferred: (() => void)[] = [];

  constructor(
    readonly id: NodeId,
    forgetVoteOnLoad: boolean,
    app: SimApp,
  ) {
    this.disk = new SimDisk({ forgetVoteOnLoad });
    this.app = app;
  }

  isRunning(): boolean {
    return this.running;
  }

  isLeader(): boolean {
    return this.running && this.state === StateType.Leader;
  }

  /** The node's whole log (entries after its snapshot). */
  logEntries(): Entry[] {
    const s = this.storage;
    return s.lastIndex() >= s.firstIndex() ? s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity) : [];
  }
}

export type ProposeOutcome = 'accepted' | 'dropped' | 'down';

export class SimCluster {
  readonly cfg: ClusterConfig;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly net: SimNetwork;
  readonly checker = new SafetyChecker();
  readonly trace: Trace;
  now = 0;
  /** Scripts: rewrite (or drop, by returning null) every message a node sends. */
  messageFilter: ((m: Message) => Message | null) | undefined;
  /** Scripts: crash `node` between this Ready's write and its fsync when this returns true. */
  crashPoint: ((node: SimNode, rd: Ready) => boolean) | undefined;
  /** Probability of a crash between write and fsync (random runs; 0 during the liveness phase). */
  midReadyCrashRate: number;
  /** Workloads: called at the start of every tick, before the clock advances (the application's own timers). */
  beforeTick: (() => void) | undefined;
  readonly appModel: AppModel;
  private readonly root: Rng;
  private readonly crashRng: Rng;
  private pendingStarts: NodeId[] = [];
  private pendingRemovals: { id: NodeId; index: number }[] = [];
  private removed = new Set<NodeId>();
  stats = {
    readies: 0,
    applied: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    crashes: 0,
    midReadyCrashes: 0,
    restarts: 0,
    confChanges: 0,
    /** Sends refused because the link is cut or the peer is down (reported to the engine as unreachable). */
    unreachable: 0,
    /** Messages lost in flight because a partition started or the receiver crashed before delivery. */
    lostInFlight: 0,
  };

  constructor(cfg: ClusterConfig) {
    this.cfg = cfg;
    this.root = new Rng(cfg.seed);
    this.crashRng = this.root.fork('crash-points');
    this.net = new SimNetwork(this.root.fork('network'), cfg.network);
    this.trace = new Trace(cfg.verbose);
    this.midReadyCrashRate = cfg.midReadyCrashRate;
    this.appModel = cfg.app ?? DIGEST_APP;
    const voters = Array.from({ length: cfg.size }, (_, i) => i + 1);
    for (const id of voters) {
      const node = new SimNode(id, cfg.forgetVoteOnRestart, this.appModel.create(id));
      this.nodes.set(id, node);
      this.startEngine(node, voters);
    }
    for (const id of voters) this.processReady(this.nodes.get(id)!);
    this.afterEvent();
  }

  // ---- queries ---------------------------------------------------------------------------------------------

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  nodeList(): SimNode[] {
    return [...this.nodes.values()];
  }

  running(): SimNode[] {
    return this.nodeList().filter((n) => n.running);
  }

  /** The running leader with the highest term, if any. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.isLeader() && (!best || n.hard.term > best.hard.term)) best = n;
    }
    return best;
  }

  /** Ids ever removed from the membership (never reused, never restarted). */
  removedIds(): ReadonlySet<NodeId> {
    return this.removed;
  }

  nextFreeId(): NodeId {
    let max = 0;
    for (const id of this.nodes.keys()) max = Math.max(max, id);
    for (const id of this.pendingStarts) max = Math.max(max, id);
    return max + 1;
  }

  // ---- the clock -------------------------------------------------------------------------------------------

  /** One simulation step: deliver the messages due, then tick every running node. Checks run throughout. */
  tick(): void {
    this.beforeTick?.();
    this.now++;
    this.checker.now = this.now;
    this.trace.now = this.now;
    let item: InFlight | undefined;
    while ((item = this.net.popDue(this.now))) this.deliver(item.msg);
    for (const node of this.nodeList()) {
      if (!node.running) continue;
      node.engine!.tick();
      this.processReady(node);
      this.afterEvent();
    }
    this.checker.checkLogsPairwise(this.nodeList());
  }

  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) this.tick();
  }

  /** Tick until `pred` holds (checked after each tick); returns whether it did within `maxTicks`. */
  runUntil(pred: () => boolean, maxTicks: number): boolean {
    for (let i = 0; i < maxTicks; i++) {
      if (pred()) return true;
      this.tick();
    }
    return pred();
  }

  // ---- node lifecycle ----------------------------------------------------------------------------------------

  private startEngine(node: SimNode, bootstrapVoters?: NodeId[]): void {
    node.incarnation++;
    const rng = this.root.fork(`node/${node.id}/${node.incarnation}`);
    const c = this.cfg;
    node.engine = c.factory.create({
      id: node.id,
      storage: node.storage,
      applied: node.applied,
      random: () => rng.next(),
      electionTick: c.electionTick,
      heartbeatTick: c.heartbeatTick,
      maxSizePerMsg: c.maxSizePerMsg,
      maxInflightMsgs: c.maxInflightMsgs,
      checkQuorum: c.checkQuorum,
      preVote: c.preVote,
      plantedBugs: c.plantedBugs,
      bootstrapVoters,
    });
    node.running = true;
    node.promises = noPromises();
    if (bootstrapVoters && node.storage.lastIndex() > 0 && node.disk.durableLastIndex() === 0) {
      // An engine whose bootstrap wrote straight into storage: make that durable too.
      node.disk.writeHardState(node.storage.hardState);
      node.disk.writeEntries(node.logEntries());
      node.disk.sync();
    }
    const st = node.engine.status();
    node.hard = { ...st.hardState };
    node.state = st.softState.state;
    node.lead = st.softState.lead;
    node.confState = { voters: [...st.config.voters], learners: [...st.config.learners] };
    node.commitSeen = node.storage.hardState.commit;
  }

  /** Power loss: the node stops; its unsynced writes are lost. */
  crash(id: NodeId, why = 'crash'): void {
    const node = this.node(id);
    if (!node.running) return;
    node.durableAtCrash = node.disk.durableHardState();
    this.trace.event('crash', [id], why);
    this.checker.onCrash(node, node.promises, node.durableAtCrash, (i) => node.disk.durableTerm(i));
    node.disk.crash();
    this.stop(node);
    node.crashes++;
    this.stats.crashes++;
  }

  private stop(node: SimNode): void {
    node.running = false;
    node.engine = undefined;
    node.state = StateType.Follower;
    node.lead = 0;
    node.deferred = [];
    this.checker.onStepDown(node.id);
  }

  /** Restart a crashed node from its durable disk. */
  restart(id: NodeId): void {
    const node = this.node(id);
    if (node.running || node.decommissioned) return;
    const img = node.disk.load();
    const storage = new MemoryStorage();
    const snapIndex = img.snapshot.metadata.index;
    if (snapIndex > 0) storage.applySnapshot(img.snapshot);
    storage.setHardState(img.hardState);
    storage.append(img.entries.filter((e) => e.index > snapIndex));
    node.storage = storage;
    node.app = snapIndex > 0 ? this.appModel.decode(img.snapshot.data, id, snapIndex) : this.appModel.create(id);
    node.applied = snapIndex;
    node.lastSnapshotIndex = snapIndex;
    this.startEngine(node);
    this.stats.restarts++;
    this.trace.event('restart', [id, node.hard.term, node.hard.vote, node.hard.commit, snapIndex, storage.lastIndex()]);
    if (node.durableAtCrash) this.checker.checkHardStateProgress(id, node.durableAtCrash, node.hard, 'across a restart');
    if (snapIndex > 0) this.checker.onRestore(node, snapIndex, node.app.digestHex());
    this.processReady(node);
    this.afterEvent();
  }

  private startNewMember(id: NodeId): void {
    if (this.nodes.has(id) || this.removed.has(id)) return;
    const node = new SimNode(id, this.cfg.forgetVoteOnRestart, this.appModel.create(id));
    this.nodes.set(id, node);
    this.startEngine(node);
    this.trace.event('start', [id]);
    this.processReady(node);
  }

  private decommission(id: NodeId): void {
    const node = this.nodes.get(id);
    if (!node || node.decommissioned) return;
    node.decommissioned = true;
    if (node.running) this.stop(node);
    this.trace.event('decommission', [id]);
  }

  /** Conf-change side effects (start added nodes, shut down removed ones) run between events. */
  private afterEvent(): void {
    if (this.pendingStarts.length > 0) {
      const starts = this.pendingStarts;
      this.pendingStarts = [];
      for (const id of starts) this.startNewMember(id);
    }
    if (this.pendingRemovals.length > 0) {
      // Shut a removed node down once every running member has applied its removal, so the remaining members
      // never depend on it to learn that it is gone (an operator decommissioning it).
      this.pendingRemovals = this.pendingRemovals.filter((r) => {
        const others = this.running().filter((n) => !this.removed.has(n.id));
        if (others.length > 0 && others.every((n) => n.applied >= r.index)) {
          this.decommission(r.id);
          return false;
        }
        return true;
      });
    }
  }

  // ---- the driver: carrying out a Ready ------------------------------------------------------------------------

  private processReady(node: SimNode): void {
    while (node.running && node.engine!.hasReady()) {
      const eng = node.engine!;
      const rd = eng.ready();
      this.stats.readies++;
      const wasLeader = node.state === StateType.Leader;
      if (rd.softState) {
        node.state = rd.softState.state;
        node.lead = rd.softState.lead;
      }
      if (rd.hardState) node.hard = { ...rd.hardState };
      const isLeader = node.state === StateType.Leader;
      if (wasLeader && !isLeader) this.checker.onStepDown(node.id);
      const snap = rd.snapshot && !isEmptySnapshot(rd.snapshot) ? rd.snapshot : undefined;
      if (isLeader) this.checker.onLeaderWrite(node, node.hard.term, rd.entries, snap ? snap.metadata.index : 0);
      const hs = node.hard;
      this.trace.event(
        'ready',
        [node.id, hs.term, hs.vote, hs.commit, rd.entries.length, rd.committedEntries.length, rd.messages.length, snap ? snap.metadata.index : 0],
        rd.softState ? `${rd.softState.state} lead=${rd.softState.lead}` : undefined,
      );

      // (1) persist: snapshot, hard state, entries (written; durable only after the fsync below).
      if (snap) {
        node.storage.applySnapshot(snap);
        node.disk.writeSnapshot(snap);
        node.app = this.appModel.decode(snap.data, node.id, snap.metadata.index);
        node.applied = snap.metadata.index;
        node.lastSnapshotIndex = snap.metadata.index;
        node.confState = { voters: [...snap.metadata.confState.voters], learners: [...snap.metadata.confState.learners] };
        this.stats.snapshotsInstalled++;
        this.checker.onRestore(node, snap.metadata.index, node.app.digestHex());
      }
      if (rd.hardState) {
        node.storage.setHardState(rd.hardState);
        node.disk.writeHardState(rd.hardState);
      }
      if (rd.entries.length > 0) {
        node.storage.append(rd.entries);
        node.disk.writeEntries(rd.entries);
        this.checker.onAppend(node, rd.entries);
      }
      if (isLeader && !wasLeader) this.checker.onBecomeLeader(node, node.hard.term);

      const needSync = rd.mustSync || snap !== undefined;
      if (this.cfg.ackBeforeFsync) this.sendAll(node, rd.messages); // planted bug: acknowledge before fsync
      if (needSync && this.shouldCrashMidReady(node, rd)) {
        this.stats.midReadyCrashes++;
        this.crash(node.id, 'between write and fsync');
        return;
      }
      if (needSync) {
        const before = node.disk.durableHardState();
        node.disk.sync();
        this.checker.checkHardStateProgress(node.id, before, node.disk.durableHardState(), 'at an fsync');
      }
      // A commit index counts as observed once the node can act on it (send it, apply up to it): after the
      // fsync. A single-node leader commits its own unsynced entry; a crash before the fsync undoes that.
      if (node.hard.commit > node.commitSeen) {
        this.checker.onCommit(node, node.commitSeen, node.hard.commit, node.hard.term);
        node.commitSeen = node.hard.commit;
      }
      // (2) only now may the messages go out: they may depend on what was just made durable.
      if (!this.cfg.ackBeforeFsync) this.sendAll(node, rd.messages);
      // (3) apply committed entries in order.
      let confChanged = false;
      for (const e of rd.committedEntries) confChanged = this.applyEntry(node, e) || confChanged;
      // (4) advance.
      eng.advance(rd);
      this.maybeSnapshot(node, confChanged && this.cfg.snapshotOnConfChange);
      if (node.deferred.length > 0) {
        const deferred = node.deferred;
        node.deferred = [];
        for (const f of deferred) if (node.running) f();
      }
    }
  }

  private shouldCrashMidReady(node: SimNode, rd: Ready): boolean {
    if (this.crashPoint && this.crashPoint(node, rd)) return true;
    return this.midReadyCrashRate > 0 && this.crashRng.chance(this.midReadyCrashRate);
  }

  /** Apply one committed entry; returns whether it was a membership change. */
  private applyEntry(node: SimNode, e: Entry): boolean {
    if (e.index <= node.applied) return false; // already covered by an installed snapshot
    if (e.index !== node.applied + 1) {
      throw new Error(`node ${node.id}: engine handed out committed entry ${e.index} but applied is ${node.applied}`);
    }
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      const cs = node.engine!.applyConfChange(cc);
      node.confState = { voters: [...cs.voters], learners: [...cs.learners] };
      node.app.skip(e.index);
      this.onConfChangeApplied(node, cc, e.index);
    } else if (e.data.length > 0) {
      node.app.applyCommand(e.index, e.data);
    } else {
      node.app.skip(e.index);
    }
    node.applied = e.index;
    this.stats.applied++;
    this.checker.onApply(node, e, node.app.stateDigest(e.index));
    return e.type === EntryType.ConfChange;
  }

  private onConfChangeApplied(node: SimNode, cc: ConfChange, index: number): void {
    if (cc.type === ConfChangeType.RemoveNode) {
      if (!this.removed.has(cc.nodeId)) {
        this.removed.add(cc.nodeId);
        this.pendingRemovals.push({ id: cc.nodeId, index });
        this.trace.event('removed', [cc.nodeId, index, node.id]);
      }
    } else if (!this.nodes.has(cc.nodeId) && !this.removed.has(cc.nodeId) && !this.pendingStarts.includes(cc.nodeId)) {
      this.pendingStarts.push(cc.nodeId);
    }
  }

  /**
   * Snapshot every `snapshotEvery` applied entries, and right after a membership change: a new member refuses a
   * snapshot whose ConfState does not contain it, so the leader's latest snapshot must postdate the member's
   * addition or, with no further proposals, the member could never be caught up.
   */
  private maybeSnapshot(node: SimNode, confChanged: boolean): void {
    if (node.applied === node.lastSnapshotIndex) return;
    if (!confChanged && node.applied - node.lastSnapshotIndex < this.cfg.snapshotEvery) return;
    const data = node.app.encode();
    if (node.app.snapshotDigest) this.checker.onRestore(node, node.applied, node.app.snapshotDigest(data), 'taking a snapshot');
    const snap = node.storage.createSnapshot(node.applied, node.confState, data);
    const compactTo = node.applied - this.cfg.snapshotKeep;
    if (compactTo > node.storage.firstIndex() - 1) node.storage.compact(compactTo);
    node.disk.saveAppSnapshot(snap, compactTo);
    node.lastSnapshotIndex = node.applied;
    this.stats.snapshotsTaken++;
  }

  // ---- the network -----------------------------------------------------------------------------------------

  private sendAll(node: SimNode, msgs: Message[]): void {
    for (const original of msgs) {
      this.notePromise(node, original);
      const m = this.messageFilter ? this.messageFilter(original) : original;
      if (!m) {
        this.trace.message('filtered', original);
        if (original.type === MessageType.Snap) node.deferred.push(() => this.reportSnapshot(node, original.to, false));
        continue;
      }
      const target = this.nodes.get(m.to);
      if (!target || !target.running || this.net.isBlocked(m.from, m.to)) {
        // The transport cannot connect: it tells the engine the peer is unreachable.
        this.stats.unreachable++;
        node.deferred.push(() => node.engine!.reportUnreachable(m.to));
        if (m.type === MessageType.Snap) node.deferred.push(() => this.reportSnapshot(node, m.to, false));
        continue;
      }
      const outcome = this.net.send(m, this.now);
      this.trace.message(outcome === 'queued' ? 'send' : 'drop', m);
      if (outcome !== 'queued' && m.type === MessageType.Snap) node.deferred.push(() => this.reportSnapshot(node, m.to, false));
    }
  }

  private notePromise(node: SimNode, m: Message): void {
    const p = node.promises;
    if (m.type === MessageType.PreVote || m.type === MessageType.PreVoteResp) return;
    if (m.term > p.sentTerm) p.sentTerm = m.term;
    if (m.reject) return;
    if (m.type === MessageType.VoteResp) p.grantedVote = { term: m.term, to: m.to };
    else if (m.type === MessageType.AppResp && m.index > 0 && (!p.acked || m.index >= p.acked.index)) {
      const s = node.storage;
      if (m.index >= s.firstIndex() - 1 && m.index <= s.lastIndex()) p.acked = { index: m.index, term: s.term(m.index) };
    }
  }

  private reportSnapshot(node: SimNode, to: NodeId, ok: boolean): void {
    if (!node.running) return;
    node.engine!.reportSnapshot(to, ok);
  }

  private deliver(m: Message): void {
    const target = this.nodes.get(m.to);
    const sender = this.nodes.get(m.from);
    if (!target || !target.running || this.net.isBlocked(m.from, m.to)) {
      this.trace.message('lost', m);
      this.stats.lostInFlight++;
      if (m.type === MessageType.Snap && sender?.running) {
        sender.engine!.reportSnapshot(m.to, false);
        this.processReady(sender);
        this.afterEvent();
      }
      return;
    }
    this.trace.message('deliver', m);
    target.engine!.step(m);
    this.processReady(target);
    if (m.type === MessageType.Snap && sender?.running) {
      sender.engine!.reportSnapshot(m.to, true);
      this.processReady(sender);
    }
    this.afterEvent();
  }

  // ---- requests from clients and operators ----------------------------------------------------------------

  private request(id: NodeId, what: string, fn: (e: ConsensusEngine) => void): ProposeOutcome {
    const node = this.nodes.get(id);
    if (!node || !node.running) return 'down';
    try {
      fn(node.engine!);
    } catch (err) {
      if (err instanceof ProposalDroppedError) {
        this.trace.event(`${what}-dropped`, [id]);
        return 'dropped';
      }
      throw err;
    }
    this.trace.event(what, [id]);
    this.processReady(node);
    this.afterEvent();
    return 'accepted';
  }

  propose(id: NodeId, data: Uint8Array): ProposeOutcome {
    return this.request(id, 'propose', (e) => e.propose(data));
  }

  proposeConfChange(id: NodeId, cc: ConfChange): ProposeOutcome {
    const r = this.request(id, `conf-${cc.type}-${cc.nodeId}`, (e) => e.proposeConfChange(cc));
    if (r === 'accepted') this.stats.confChanges++;
    return r;
  }

  transferLeader(id: NodeId, to: NodeId): ProposeOutcome {
    return this.request(id, `transfer-to-${to}`, (e) => e.transferLeader(to));
  }

  campaign(id: NodeId): ProposeOutcome {
    return this.request(id, 'campaign', (e) => e.campaign());
  }

  // ---- liveness ---------------------------------------------------------------------------------------------

  /**
   * Converged: exactly one running leader, every member of its configuration running, following it in its
   * term, with everything in the leader's log committed and applied everywhere, and identical state machines;
   * no running node outside the configuration. Returns undefined when converged, else why not.
   */
  convergence(): string | undefined {
    const leaders = this.running().filter((n) => n.isLeader());
    if (leaders.length !== 1) return `${leaders.length} running leaders`;
    const l = leaders[0];
    const cfg = l.engine!.status().config;
    const members = [...cfg.voters, ...cfg.learners];
    if (!cfg.voters.includes(l.id)) return `leader ${l.id} is not a voter of its configuration`;
    const commit = l.hard.commit;
    if (commit !== l.storage.lastIndex()) return `leader ${l.id} has committed ${commit} of ${l.storage.lastIndex()}`;
    const digest = l.app.digestHex();
    for (const id of members) {
      const n = this.nodes.get(id);
      if (!n || !n.running) return `member ${id} is not running`;
      if (n.lead !== l.id || n.hard.term !== l.hard.term) return `member ${id} follows ${n.lead} in term ${n.hard.term}`;
      if (n.applied !== commit) return `member ${id} applied ${n.applied} of ${commit}`;
      if (n.app.digestHex() !== digest) return `member ${id} has state ${n.app.digestHex()}, leader ${digest}`;
    }
    for (const n of this.running()) if (!members.includes(n.id)) return `node ${n.id} runs outside the configuration`;
    return undefined;
  }
}
