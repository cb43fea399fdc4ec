/**
 * Scripted scenarios: deterministic fault schedules for situations random seeds rarely reach. Each runs on the
 * same SimCluster (same driver, same checkers) as the random runs, and ends with the liveness requirement
 * (heal everything, converge) when no checker fired.
 *
 *  - figure8: Figure 8 of the Raft paper (§5.4.2). An entry of an old term reaches a majority through a later
 *    leader; a leader that commits it by counting replicas loses it when a node holding an entry of a higher
 *    term wins the next election. Caught by Leader Completeness with `--bug commit-old-term`.
 *  - lost-ack: a follower acknowledges an append and loses power before its fsync. Correct drivers never send
 *    that acknowledgement; with `--bug ack-before-fsync` the leader counts it and the durable-state checker
 *    fires at the crash.
 */
import { Message, MessageType, NodeId } from '@app/raft';
import { BugName, bugSwitches } from './bugs.js';
import { Violation } from './checkers.js';
import { DEFAULT_CLUSTER_CONFIG, SimCluster, SimNode } from './cluster.js';
import { EngineFactory, raftEngineFactory } from './engine-factory.js';
import { stringToBytes } from './hash.js';
import { RELIABLE_NETWORK } from './network.js';
import { SimViolation } from './simulate.js';

export interface ScenarioOptions {
  bug?: BugName;
  verbose?: boolean;
  /** Seeds the nodes' randomness (election timeouts); the schedule itself is fixed. */
  seed?: number;
  factory?: EngineFactory;
}

export interface ScenarioResult {
  name: ScenarioName;
  bug: BugName | undefined;
  violation: SimViolation | undefined;
  /** What happened, step by step (also when no checker fired). */
  note: string;
  traceHash: string;
  trace: string[] | undefined;
}

/** A scenario could not set up the situation it wanted (not a violation: the script needs adjusting). */
export class ScenarioError extends Error {}

type Script = (c: SimCluster, log: (s: string) => void) => void;

function makeCluster(size: number, o: ScenarioOptions): SimCluster {
  const bugs = bugSwitches(o.bug);
  return new SimCluster({
    ...DEFAULT_CLUSTER_CONFIG,
    seed: o.seed ?? 1,
    factory: o.factory ?? raftEngineFactory,
    size,
    electionTick: 10,
    heartbeatTick: 1,
    snapshotEvery: 1000,
    network: RELIABLE_NETWORK,
    plantedBugs: bugs.core,
    forgetVoteOnRestart: bugs.forgetVoteOnRestart,
    ackBeforeFsync: bugs.ackBeforeFsync,
    verbose: o.verbose ?? false,
  });
}

function waitFor(c: SimCluster, what: string, pred: () => boolean, ticks = 500): void {
  if (!c.runUntil(pred, ticks)) throw new ScenarioError(`gave up waiting for ${what} (tick ${c.now})`);
}

function stableLeader(c: SimCluster): SimNode {
  waitFor(c, 'a converged cluster', () => c.convergence() === undefined);
  return c.leader()!;
}

/** Withhold a sender's entries of its own term from its appends (as if those appends were lost). */
function withholdOwnTermEntries(senders: ReadonlySet<NodeId> | 'all'): (m: Message) => Message {
  return (m) => {
    if (m.type !== MessageType.App || (senders !== 'all' && !senders.has(m.from))) return m;
    const kept = m.entries.filter((e) => e.term < m.term);
    return kept.length === m.entries.length ? m : { ...m, entries: kept };
  };
}

function termAt(n: SimNode, i: number): number | undefined {
  const s = n.storage;
  return i >= s.firstIndex() - 1 && i <= s.lastIndex() ? s.term(i) : undefined;
}

const figure8: Script = (c, log) => {
  const a = stableLeader(c);
  const ids = c.nodeList().map((n) => n.id);
  const others = ids.filter((id) => id !== a.id);
  const b = c.node(others[0]);
  const cde = others.slice(1);
  const termA = a.hard.term;
  log(`(a) leader ${a.id} in term ${termA}; ${a.id},${b.id} cut off from ${cde.join(',')}`);
  c.net.split([a.id, b.id], cde);
  // Leaders elected among C, D, E keep their own entries to themselves.
  c.messageFilter = withholdOwnTermEntries(new Set(cde));
  if (c.propose(a.id, stringToBytes('x')) !== 'accepted') throw new ScenarioError('leader refused the proposal');
  const i = a.storage.lastIndex();
  waitFor(c, `entry ${i} on ${b.id}`, () => termAt(b, i) === termA, 50);
  log(`    entry ${i} (term ${termA}) on ${a.id} and ${b.id} only`);

  c.crash(a.id);
  let l1: SimNode | undefined;
  waitFor(c, 'a leader among the majority side', () => {
    l1 = cde.map((id) => c.node(id)).find((n) => n.isLeader() && termAt(n, i) === n.hard.term);
    return l1 !== undefined;
  });
  const termB = l1!.hard.term;
  log(`(b) ${a.id} crashed; ${l1!.id} leads term ${termB} with its own entry ${i} (term ${termB}), held by no one else`);

  c.crash(l1!.id);
  c.net.healAll();
  c.restart(a.id);
  // The next leader replicates old entries but withholds entries of its own term.
  c.messageFilter = withholdOwnTermEntries('all');
  const rest = cde.filter((id) => id !== l1!.id);
  let l2: SimNode | undefined;
  waitFor(c, `a leader holding entry ${i} of term ${termA}`, () => {
    l2 = c.leader();
    return l2 !== undefined && termAt(l2, i) === termA && l2.hard.term > termB;
  });
  waitFor(c, `entry ${i} (term ${termA}) on a majority`, () => rest.every((id) => termAt(c.node(id), i) === termA), 100);
  c.run(20);
  const termC = l2!.hard.term;
  log(
    `(c) ${l1!.id} crashed; ${l2!.id} leads term ${termC} and replicated entry ${i} (term ${termA}) to ` +
      `${[a.id, b.id, ...rest].filter((id) => id !== l2!.id).join(',')} (not its own entries); its commit index is ${l2!.hard.commit}`,
  );

  c.crash(l2!.id);
  c.messageFilter = undefined;
  const survivors = [a.id, b.id, ...rest].filter((id) => id !== l2!.id);
  // A star around the restarted node: only it can gather a majority.
  for (const x of survivors) for (const y of survivors) if (x !== y) c.net.block(x, y);
  c.restart(l1!.id);
  waitFor(c, `${l1!.id} to lead again`, () => c.node(l1!.id).isLeader());
  log(`(d) ${l2!.id} crashed; ${l1!.id} (last entry term ${termB}) leads term ${c.node(l1!.id).hard.term} and overwrites index ${i}`);
};

const lostAck: Script = (c, log) => {
  const a = stableLeader(c);
  const [bId, cId] = c
    .nodeList()
    .map((n) => n.id)
    .filter((id) => id !== a.id);
  const b = c.node(bId);
  c.net.split([a.id, bId], [cId]);
  log(`leader ${a.id}; ${cId} cut off; ${bId} will lose power after writing the next entry, before its fsync`);
  c.crashPoint = (n, rd) => n.id === bId && rd.entries.length > 0;
  if (c.propose(a.id, stringToBytes('x')) !== 'accepted') throw new ScenarioError('leader refused the proposal');
  const i = a.storage.lastIndex();
  waitFor(c, `${bId} to crash`, () => !b.running, 50);
  c.crashPoint = undefined;
  c.run(10);
  log(`${bId} crashed before its fsync; leader ${a.id} commit index ${a.hard.commit} (entry ${i})`);
  c.restart(bId);
};

export const SCENARIOS = { figure8, 'lost-ack': lostAck } as const;
export type ScenarioName = keyof typeof SCENARIOS;
const SIZES: Record<ScenarioName, number> = { figure8: 5, 'lost-ack': 3 };

export function runScenario(name: ScenarioName, o: ScenarioOptions = {}): ScenarioResult {
  const notes: string[] = [];
  const c = makeCluster(SIZES[name], o);
  let violation: SimViolation | undefined;
  try {
    SCENARIOS[name](c, (s) => {
      notes.push(s);
      c.trace.event('scenario', [], s);
    });
    // Liveness: heal everything and converge.
    c.messageFilter = undefined;
    c.crashPoint = undefined;
    c.net.healAll();
    for (const n of c.nodeList()) if (!n.running && !n.decommissioned) c.restart(n.id);
    const budget = 1000;
    if (!c.runUntil(() => c.convergence() === undefined, budget)) {
      throw new Violation('liveness', `no convergence within ${budget} ticks of healing: ${c.convergence()}`, c.now);
    }
    notes.push('healed and converged');
  } catch (err) {
    if (err instanceof ScenarioError) throw err;
    if (err instanceof Violation) violation = { checker: err.checker, detail: err.detail, tick: err.tick };
    else violation = { checker: 'exception', detail: `${(err as Error).name}: ${(err as Error).message}`, tick: c.now };
  }
  return { name, bug: o.bug, violation, note: notes.join('; '), traceHash: c.trace.digest(), trace: c.trace.lines };
}
