/**
 * One randomized simulation run per seed: sample a cluster and a fault profile from the seed, run a fault
 * phase with clients proposing throughout, then a liveness phase (everything healed, no more faults) that must
 * converge within a tick budget. Every source of nondeterminism derives from the seed, so a seed replays
 * exactly (same event-trace hash).
 */
import { ConfChangeType, NodeId } from '@app/raft';
import { BugName, bugSwitches } from './bugs.js';
import { CheckerName, Violation } from './checkers.js';
import { SimCluster } from './cluster.js';
import { TreeModel, treeProblem } from './tree-app.js';
import { TreeParams, TreeWorkload, sampleTreeParams } from './tree-workload.js';
import { EngineFactory, raftEngineFactory } from './engine-factory.js';
import { stringToBytes } from './hash.js';
import { NetworkProfile, RELIABLE_NETWORK } from './network.js';
import { Rng } from './prng.js';

/** The state machine the nodes run: the chained digest (default) or the real TreeStateMachine. */
export const APP_NAMES = ['digest', 'tree'] as const;
export type AppName = (typeof APP_NAMES)[number];

export interface SimOptions {
  seed: number;
  /** Default 'digest'. */
  app?: AppName;
  bug?: BugName;
  factory?: EngineFactory;
  /** Keep the event trace as text in the result. */
  verbose?: boolean;
  /** Override the sampled length of the fault phase, in ticks. */
  ticks?: number;
}

export interface FaultProfile {
  /** Per-tick probability of starting a partition (when none is active); 0 = no partitions. */
  partitionRate: number;
  partitionMaxTicks: number;
  /** Per-tick probability of crashing a random running node; 0 = no crashes. */
  crashRate: number;
  crashMaxDownTicks: number;
  /** Probability of a crash between a Ready's write and its fsync. */
  midReadyCrashRate: number;
  /** Per-tick probability of proposing a membership change. */
  confChangeRate: number;
  /** Per-tick probability of asking the leader to transfer leadership. */
  transferRate: number;
}

export interface SimParams {
  size: number;
  electionTick: number;
  heartbeatTick: number;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  snapshotEvery: number;
  snapshotKeep: number;
  network: NetworkProfile;
  faults: FaultProfile;
  clients: number;
  clientRate: number;
  faultTicks: number;
  livenessBudget: number;
  /** Tree mode only (sampled from its own stream, so the digest mode's parameters are unchanged). */
  tree?: TreeParams;
}

export interface SimViolation {
  checker: CheckerName;
  detail: string;
  tick: number;
}

export interface SimResult {
  seed: number;
  app: AppName;
  bug: BugName | undefined;
  params: SimParams;
  violation: SimViolation | undefined;
  /** Hash of the whole event trace: equal for two runs of one seed. */
  traceHash: string;
  ticks: number;
  /** Ticks the liveness phase needed to converge. */
  convergedAfter: number | undefined;
  trace: string[] | undefined;
  stats: Record<string, number>;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

export function sampleParams(seed: number, ticksOverride?: number): SimParams {
  const r = new Rng(seed).fork('params');
  const size = r.weighted([
    [1, 1],
    [3, 3],
    [5, 3],
  ] as const);
  const electionTick = r.range(8, 16);
  const heartbeatTick = r.range(1, 3);
  const maxDelay = r.pick([1, 1, 2, 3, 4]);
  const network: NetworkProfile = {
    dropRate: r.chance(0.6) ? round3(r.uniform(0, 0.1)) : 0,
    dupRate: r.chance(0.4) ? round3(r.uniform(0, 0.08)) : 0,
    minDelay: 1,
    maxDelay,
  };
  const crashes = r.chance(0.65);
  const faults: FaultProfile = {
    partitionRate: size > 1 && r.chance(0.7) ? round3(r.uniform(1 / 400, 1 / 80)) : 0,
    partitionMaxTicks: r.range(2, 15) * electionTick,
    crashRate: crashes ? round3(r.uniform(1 / 500, 1 / 100)) : 0,
    crashMaxDownTicks: r.range(5, 150),
    midReadyCrashRate: crashes && r.chance(0.6) ? round3(r.uniform(0.001, 0.01)) : 0,
    confChangeRate: r.chance(0.5) ? round3(r.uniform(1 / 150, 1 / 40)) : 0,
    transferRate: size > 1 && r.chance(0.4) ? round3(r.uniform(1 / 300, 1 / 60)) : 0,
  };
  return {
    size,
    electionTick,
    heartbeatTick,
    maxSizePerMsg: r.pick([150, 600, 64 * 1024, 1024 * 1024]),
    maxInflightMsgs: r.pick([1, 4, 16, 256]),
    snapshotEvery: r.range(5, 50),
    snapshotKeep: r.range(0, 5),
    network,
    faults,
    clients: r.range(1, 3),
    clientRate: round3(r.uniform(0.05, 0.5)),
    faultTicks: ticksOverride ?? r.range(1000, 2500),
    livenessBudget: 60 * electionTick + 500,
  };
}

interface Client {
  id: number;
  seq: number;
  pending: string | undefined;
  target: NodeId;
}

export function runSeed(opts: SimOptions): SimResult {
  const seed = opts.seed;
  const app = opts.app ?? 'digest';
  const params = sampleParams(seed, opts.ticks);
  if (app === 'tree') params.tree = sampleTreeParams(seed, params.electionTick);
  const bugs = bugSwitches(opts.bug);
  const root = new Rng(seed);
  const frng = root.fork('faults');
  const crng = root.fork('clients');
  let cluster: SimCluster | undefined;
  let violation: SimViolation | undefined;
  let convergedAfter: number | undefined;
  let faults: FaultDriver | undefined;
  let model: TreeModel | undefined;
  let workload: TreeWorkload | undefined;
  try {
    const tp = params.tree;
    if (tp) {
      model = new TreeModel(
        {
          tree: { maxDataBytes: tp.maxDataBytes, minSessionTimeoutMs: 1 },
          digestEvery: tp.digestEvery,
          electionTimeoutMs: params.electionTick * tp.tickMs,
          bugs: { doubleApply: bugs.treeDoubleApply },
        },
        tp.tickMs,
      );
    }
    cluster = new SimCluster({
      seed,
      size: params.size,
      factory: opts.factory ?? raftEngineFactory,
      electionTick: params.electionTick,
      heartbeatTick: params.heartbeatTick,
      maxSizePerMsg: params.maxSizePerMsg,
      maxInflightMsgs: params.maxInflightMsgs,
      checkQuorum: true,
      preVote: true,
      snapshotEvery: params.snapshotEvery,
      snapshotKeep: params.snapshotKeep,
      network: params.network,
      plantedBugs: bugs.core,
      forgetVoteOnRestart: bugs.forgetVoteOnRestart,
      ackBeforeFsync: bugs.ackBeforeFsync,
      midReadyCrashRate: params.faults.midReadyCrashRate,
      snapshotOnConfChange: true,
      verbose: opts.verbose ?? false,
      ...(model ? { app: model } : {}),
    });
    const c = cluster;
    faults = new FaultDriver(c, frng, params);
    if (model && tp) {
      model.clock = () => c.now;
      const w = new TreeWorkload(c, model, root.fork('tree-clients'), tp, params.clients, params.clientRate, params.electionTick, {
        staleTracker: bugs.treeStaleTracker,
      });
      workload = w;
      c.beforeTick = () => w.step();
    }
    const clients: Client[] = Array.from({ length: params.clients }, (_, i) => ({
      id: i + 1,
      seq: 0,
      pending: undefined,
      target: crng.range(1, params.size),
    }));

    // Fault phase.
    for (let t = 0; t < params.faultTicks; t++) {
      faults.step();
      if (!workload) for (const cl of clients) if (crng.chance(params.clientRate)) clientStep(c, crng, cl);
      c.tick(); // (tree mode: the workload runs at the start of the tick)
    }

    // Liveness phase: heal everything, stop faults and clients, restart every crashed member.
    c.trace.event('heal', []);
    c.net.healAll();
    c.net.profile = { ...RELIABLE_NETWORK };
    c.midReadyCrashRate = 0;
    if (workload) workload.commands = false; // clients keep their sessions alive, send nothing
    for (const n of c.nodeList()) if (!n.running && !n.decommissioned) c.restart(n.id);
    const start = c.now;
    const ok = c.runUntil(() => c.convergence() === undefined, params.livenessBudget);
    if (ok) convergedAfter = c.now - start;
    else throw new Violation('liveness', `no convergence within ${params.livenessBudget} ticks of healing: ${c.convergence()}`, c.now);
    if (model) checkTreeConverged(c, model);
  } catch (err) {
    if (err instanceof Violation) violation = { checker: err.checker, detail: err.detail, tick: err.tick };
    else {
      const e = err as Error;
      const where = (e.stack ?? '').split('\n').slice(1, 4).map((s) => s.trim()).join(' < ');
      violation = { checker: 'exception', detail: `${e.name}: ${e.message} (${where})`, tick: cluster?.now ?? 0 };
    }
    cluster?.trace.event('violation', [], violation.detail);
  }
  return {
    seed,
    app,
    bug: opts.bug,
    params,
    violation,
    traceHash: cluster ? cluster.trace.digest() : '',
    ticks: cluster?.now ?? 0,
    convergedAfter,
    trace: cluster?.trace.lines,
    stats: cluster
      ? {
          ...cluster.stats,
          ...cluster.net.stats,
          ...(faults?.stats ?? {}),
          events: cluster.trace.events,
          leaders: cluster.checker.stats.leaders,
          maxTerm: cluster.checker.stats.maxTerm,
          committed: cluster.checker.stats.maxCommitted,
          ...(model?.stats ?? {}),
          ...(model ? Object.fromEntries([...model.codes].sort().map(([k, v]) => [`failed:${k}`, v])) : {}),
          ...(workload?.stats ?? {}),
        }
      : {},
  };
}

/** Tree mode, once converged: every member's snapshot is byte-identical to the leader's, and sound. */
function checkTreeConverged(c: SimCluster, model: TreeModel): void {
  const l = c.leader()!;
  const cfg = l.engine!.status().config;
  const ref = model.app(l.id)!.tree.snapshot();
  for (const id of [...cfg.voters, ...cfg.learners]) {
    const snap = model.app(id)!.tree.snapshot();
    if (snap.length !== ref.length || snap.some((b, i) => b !== ref[i])) {
      throw new Violation('liveness', `converged, but node ${id}'s tree snapshot differs from leader ${l.id}'s (${snap.length} vs ${ref.length} bytes)`, c.now);
    }
  }
  const bad = treeProblem(model.app(l.id)!.tree);
  if (bad) throw new Violation('tree-invariants', `leader ${l.id} once converged: ${bad}`, c.now);
  c.trace.event('tree-final', [l.id, model.app(l.id)!.tree.nodeCount, model.app(l.id)!.tree.lastZxid], model.app(l.id)!.digestHex());
}

function clientStep(c: SimCluster, rng: Rng, cl: Client): void {
  const cmd = cl.pending ?? `c${cl.id}.${++cl.seq}`;
  const node = c.nodes.get(cl.target);
  const outcome = c.propose(cl.target, stringToBytes(cmd));
  if (outcome === 'accepted') {
    cl.pending = undefined;
    if (node && node.lead !== 0 && node.lead !== cl.target) cl.target = node.lead; // follow the redirect
    return;
  }
  cl.pending = cmd; // retry the same command later
  if (node && node.running && node.lead !== 0 && node.lead !== cl.target) cl.target = node.lead;
  else {
    const live = c.running();
    if (live.length > 0) cl.target = rng.pick(live).id;
  }
}

/** Samples and injects faults during the fault phase. */
class FaultDriver {
  private partitionUntil = 0;
  private downUntil = new Map<NodeId, number>();
  stats = { partitions: 0, transfers: 0, confChangesTried: 0 };

  constructor(
    private readonly c: SimCluster,
    private readonly rng: Rng,
    private readonly p: SimParams,
  ) {}

  step(): void {
    const { c, rng, p } = this;
    const f = p.faults;
    const now = c.now;
    if (this.partitionUntil > 0 && now >= this.partitionUntil) {
      c.net.healAll();
      this.partitionUntil = 0;
      c.trace.event('heal-partition', []);
    }
    for (const [id, at] of [...this.downUntil]) {
      if (now >= at) {
        this.downUntil.delete(id);
        c.restart(id);
      }
    }
    // Nodes that crashed between write and fsync come back after a while too.
    for (const n of c.nodeList()) {
      if (!n.running && !n.decommissioned && !this.downUntil.has(n.id)) {
        this.downUntil.set(n.id, now + rng.range(1, f.crashMaxDownTicks));
      }
    }
    if (this.partitionUntil === 0 && rng.chance(f.partitionRate)) this.partition();
    if (rng.chance(f.crashRate)) {
      const live = c.running();
      if (live.length > 0) {
        const victim = rng.pick(live);
        c.crash(victim.id);
        this.downUntil.set(victim.id, now + rng.range(1, f.crashMaxDownTicks));
      }
    }
    if (rng.chance(f.confChangeRate)) this.confChange();
    if (rng.chance(f.transferRate)) this.transfer();
  }

  /** Every node not decommissioned (running or crashed). */
  private members(): NodeId[] {
    return this.c
      .nodeList()
      .filter((n) => !n.decommissioned)
      .map((n) => n.id);
  }

  private partition(): void {
    const { c, rng, p } = this;
    const members = this.members();
    if (members.length < 2) return;
    const kind = rng.pick(['isolate-leader', 'split', 'one-way', 'one-way-links'] as const);
    const leader = c.leader();
    if (kind === 'isolate-leader' && leader) {
      c.net.split([leader.id], members.filter((id) => id !== leader.id));
    } else if (kind === 'split' || (kind === 'isolate-leader' && !leader)) {
      const shuffled = rng.shuffle(members);
      const k = rng.range(1, Math.max(1, Math.floor(shuffled.length / 2)));
      c.net.split(shuffled.slice(0, k), shuffled.slice(k));
    } else if (kind === 'one-way') {
      // A node that can send but not receive, or receive but not send.
      const x = leader && rng.chance(0.5) ? leader.id : rng.pick(members);
      const inbound = rng.chance(0.5);
      for (const y of members) {
        if (y === x) continue;
        if (inbound) c.net.block(y, x);
        else c.net.block(x, y);
      }
    } else {
      const n = rng.range(1, members.length);
      for (let i = 0; i < n; i++) {
        const a = rng.pick(members);
        const b = rng.pick(members);
        if (a !== b) c.net.block(a, b);
      }
    }
    this.stats.partitions++;
    this.partitionUntil = c.now + rng.range(1, p.faults.partitionMaxTicks);
    c.trace.event('partition', [this.partitionUntil], `${kind} ${c.net.blockedLinks().join(',')}`);
  }

  private confChange(): void {
    const { c, rng } = this;
    const l = c.leader();
    if (!l) return;
    const st = l.engine!.status();
    const { voters, learners } = st.config;
    const options: (() => void)[] = [];
    const nextId = c.nextFreeId();
    if (voters.length + learners.length < 6 && nextId <= 12) {
      options.push(() => c.proposeConfChange(l.id, { type: ConfChangeType.AddLearnerNode, nodeId: nextId }));
    }
    for (const id of learners) {
      const pr = st.progress.get(id);
      if (voters.length < 5 && pr && pr.match >= st.hardState.commit) {
        options.push(() => c.proposeConfChange(l.id, { type: ConfChangeType.AddNode, nodeId: id }));
      }
    }
    if (voters.length >= 2) {
      const candidates = voters.filter((id) => id !== l.id || rng.chance(0.2));
      if (candidates.length > 0) {
        const victim = rng.pick(candidates);
        options.push(() => c.proposeConfChange(l.id, { type: ConfChangeType.RemoveNode, nodeId: victim }));
      }
    }
    if (learners.length > 0) {
      const victim = rng.pick(learners);
      options.push(() => c.proposeConfChange(l.id, { type: ConfChangeType.RemoveNode, nodeId: victim }));
    }
    if (options.length > 0) {
      this.stats.confChangesTried++;
      rng.pick(options)();
    }
  }

  private transfer(): void {
    const { c, rng } = this;
    const l = c.leader();
    if (!l) return;
    const voters = l.confState.voters.filter((id) => id !== l.id);
    if (voters.length === 0) return;
    this.stats.transfers++;
    c.transferLeader(l.id, rng.pick(voters));
  }
}
