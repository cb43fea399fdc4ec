/**
 * Tree mode (`--app tree`): every node's state machine is the real `TreeStateMachine` (libs/tree), behind the
 * simulator's {@link SimApp} interface, and a {@link TreeModel} shared by all nodes of a run checks, as entries
 * are applied:
 *
 *  - tree-invariants: after every apply, the nodes the command touched (and their parents) are structurally
 *    sound; every `digestEvery` indexes (and after every restore) the whole tree is walked (see
 *    {@link treeProblem});
 *  - state-machine-safety: the digest of `tree.snapshot()` bytes agrees across nodes at sampled indexes, at
 *    snapshots taken and restored, and every command's result agrees across nodes at its index; a restored
 *    snapshot re-encodes to the same bytes;
 *  - exactly-once: a command retried with the same (clientId, seq) is never applied twice (a second success
 *    carrying its own zxid), and its retry gets the first answer (or STALE_REQUEST / SESSION_EXPIRED);
 *  - session-expiry: an expired session's client did not touch it within (timeout − one election timeout) of
 *    simulated time before the `expireSessions` was proposed (the leaders' touches are recorded by the
 *    workload, tree-workload.ts).
 */
import { EntryType, NodeId } from '@app/raft';
import {
  Command,
  CommandDecodeError,
  CommandResult,
  ROOT,
  Stat,
  TreeErrorCode,
  TreeOptions,
  TreeStateMachine,
  baseName,
  decodeCommand,
  joinPath,
  parentOf,
} from '@app/tree';
import { AppModel, SimApp } from './app.js';
import { Violation } from './checkers.js';
import { Hash64 } from './hash.js';

/** Test-only bugs planted in the tree mode's state machine wrapper (never in libs/tree). */
export interface TreeBugs {
  /** The wrapper applies a retried command (same clientId and seq as the client's last one) again. */
  doubleApply?: boolean;
}

export interface TreeModelOptions {
  /** Options of every node's TreeStateMachine (equal on all nodes, as they must be). */
  tree: Omit<TreeOptions, 'onEvents' | 'onRestore'>;
  /** Hash the snapshot bytes (and walk the whole tree) every this many indexes. */
  digestEvery: number;
  /** One election timeout in simulated milliseconds (the session-expiry rule's slack). */
  electionTimeoutMs: number;
  bugs?: TreeBugs;
}

const hashBytes = (b: Uint8Array): string => `${new Hash64().bytes(b).hex()}/${b.length}`;
const hashStr = (s: string): string => new Hash64().str(s).hex();

/** Sequential names the workload creates: `w-` + ten digits, or ten digits alone. */
const SEQUENTIAL_NAME = /^(w-)?(\d{10})$/;

/** What is wrong with one node (read through the API), or undefined. */
function nodeProblem(t: TreeStateMachine, path: string, stat: Stat, children: readonly string[]): string | undefined {
  if (stat.numChildren !== children.length) return `"${path}" has numChildren ${stat.numChildren} but ${children.length} children`;
  if (stat.cversion < stat.numChildren || (stat.cversion - stat.numChildren) % 2 !== 0) {
    // Every child create and delete advances cversion: cversion − numChildren = 2 × deletes.
    return `"${path}" has cversion ${stat.cversion} with ${stat.numChildren} children (creates + deletes must be ≥ and of the same parity)`;
  }
  if (stat.mzxid < stat.czxid || stat.pzxid < stat.czxid) return `"${path}" has mzxid ${stat.mzxid} / pzxid ${stat.pzxid} below czxid ${stat.czxid}`;
  if (stat.mzxid > t.lastZxid || stat.pzxid > t.lastZxid) return `"${path}" has a zxid above lastZxid ${t.lastZxid}`;
  if (stat.aversion !== 0 || stat.version < 0) return `"${path}" has version ${stat.version}, aversion ${stat.aversion}`;
  if (stat.dataLength > t.maxDataBytes) return `"${path}" holds ${stat.dataLength} bytes, over the limit ${t.maxDataBytes}`;
  if (stat.ephemeralOwner !== 0) {
    if (children.length > 0) return `ephemeral "${path}" has children ${children.join(',')}`;
    if (t.session(stat.ephemeralOwner) === null) return `ephemeral "${path}" is owned by session ${stat.ephemeralOwner}, which is not live`;
    if (!t.ephemerals(stat.ephemeralOwner).includes(path)) return `ephemeral "${path}" is missing from its session ${stat.ephemeralOwner}'s list`;
  }
  for (const k of children) {
    const m = SEQUENTIAL_NAME.exec(k);
    if (m && Number(m[2]) >= stat.cversion) return `"${path}" has sequential child ${k} but cversion ${stat.cversion}`;
  }
  if (path !== ROOT) {
    const p = t.getChildren(parentOf(path));
    if (!p.ok) return `"${path}" exists but its parent does not`;
    if (!p.children.includes(baseName(path))) return `"${path}" exists but its parent does not list it`;
    if (p.stat.ephemeralOwner !== 0) return `"${path}" is the child of an ephemeral node`;
    if (stat.czxid > p.stat.pzxid) return `"${path}" was created (czxid ${stat.czxid}) after its parent's pzxid ${p.stat.pzxid}`;
  }
  return undefined;
}

/** Checks the node at `path` (and, when it is gone, that its parent does not list it). */
export function pathProblem(t: TreeStateMachine, path: string): string | undefined {
  const g = t.getChildren(path);
  if (g.ok) return nodeProblem(t, path, g.stat, g.children);
  if (g.code !== TreeErrorCode.NO_NODE) return `reading "${path}": ${g.code} ${g.message}`;
  if (path === ROOT) return 'the root is missing';
  const p = t.getChildren(parentOf(path));
  if (p.ok && p.children.includes(baseName(path))) return `"${path}" is gone but its parent still lists it`;
  return undefined;
}

/**
 * The whole tree's structural invariants, through the read API: every node's parent exists and lists it, no
 * node hangs under an ephemeral, ephemerals have no children and a live owner whose list names them, numChildren
 * and cversion agree with the children, zxids are ordered, sequential suffixes are below the parent's cversion,
 * the node count is right, and every live session's ephemerals exist and are owned by it.
 */
export function treeProblem(t: TreeStateMachine): string | undefined {
  let count = 0;
  const owned = new Map<number, number>();
  const stack = [ROOT];
  while (stack.length > 0) {
    const path = stack.pop()!;
    const g = t.getChildren(path);
    if (!g.ok) return `"${path}" is listed by its parent but cannot be read: ${g.code}`;
    count++;
    const bad = nodeProblem(t, path, g.stat, g.children);
    if (bad) return bad;
    if (g.stat.ephemeralOwner !== 0) owned.set(g.stat.ephemeralOwner, (owned.get(g.stat.ephemeralOwner) ?? 0) + 1);
    for (const k of g.children) stack.push(joinPath(path, k));
  }
  if (count !== t.nodeCount) return `the tree holds ${count} reachable nodes but nodeCount is ${t.nodeCount}`;
  for (const s of t.sessions()) {
    const paths = t.ephemerals(s.id);
    if (paths.length !== (owned.get(s.id) ?? 0)) return `session ${s.id} lists ${paths.length} ephemerals but owns ${owned.get(s.id) ?? 0}`;
    for (const p of paths) {
      const e = t.exists(p);
      if (!e.ok || !e.stat || e.stat.ephemeralOwner !== s.id) return `session ${s.id} lists "${p}", which it does not own`;
    }
    if (s.remainingMs !== null && s.remainingMs > s.timeoutMs) return `session ${s.id} has ${s.remainingMs} ms left of a ${s.timeoutMs} ms timeout`;
  }
  return undefined;
}

/** A node's state machine in tree mode. */
export class TreeApp implements SimApp {
  readonly tree: TreeStateMachine;
  /** Paths the command being applied changed (from its watch events). */
  private readonly touched: string[] = [];

  constructor(
    private readonly model: TreeModel,
    readonly node: NodeId,
  ) {
    this.tree = new TreeStateMachine({
      ...model.opts.tree,
      onEvents: (events) => {
        for (const e of events) this.touched.push(e.path);
      },
    });
  }

  applyCommand(index: number, data: Uint8Array): void {
    this.touched.length = 0;
    let cmd: Command | undefined;
    try {
      cmd = decodeCommand(data);
    } catch (e) {
      if (!(e instanceof CommandDecodeError)) throw e;
    }
    let result: CommandResult;
    const bugs = this.model.opts.bugs;
    if (bugs?.doubleApply && cmd && cmd.clientId !== undefined && this.tree.lastRequest(cmd.clientId)?.seq === cmd.seq) {
      // Planted bug: a retry is applied again instead of answered from the retry table.
      const fresh: Record<string, unknown> = { ...cmd };
      delete fresh.clientId;
      delete fresh.seq;
      result = this.tree.applyCommand(fresh as unknown as Command, index);
    } else {
      result = this.tree.apply({ index, term: 0, type: EntryType.Normal, data });
    }
    this.model.onApplied(this, index, cmd, result, this.touched);
  }

  skip(): void {
    // Leader no-ops and conf changes leave the tree alone (zxids have gaps).
  }

  stateDigest(index: number): string | undefined {
    return index % this.model.opts.digestEvery === 0 ? hashBytes(this.tree.snapshot()) : undefined;
  }

  digestHex(): string {
    return hashBytes(this.tree.snapshot());
  }

  encode(): Uint8Array {
    return this.tree.snapshot();
  }

  snapshotDigest(data: Uint8Array): string {
    return hashBytes(data);
  }
}

interface RetryRecord {
  index: number;
  json: string;
}

/** Shared by every node of a run: makes the TreeApps and holds the cross-node registries the checks use. */
export class TreeModel implements AppModel {
  readonly name = 'tree';
  /** The current tick (for violation reports); set once the cluster exists. */
  clock: () => number = () => 0;
  /** Simulated milliseconds per tick. */
  readonly tickMs: number;
  /** Every node's current state machine. */
  private readonly apps = new Map<NodeId, TreeApp>();
  /** Result digest per index (every node must get the same result at an index). */
  private readonly resultAt = new Map<number, string>();
  /** First application of every (clientId, seq) and its result. */
  private readonly retries = new Map<string, RetryRecord>();
  private readonly results = new Map<string, CommandResult>();
  /** Successful keep-alives (simulated ms) per session, and when each session was created (first applied). */
  private readonly touches = new Map<number, number[]>();
  readonly sessionTimeout = new Map<number, number>();
  /** Sessions closed or expired (as first applied anywhere). */
  readonly ended = new Set<number>();
  stats = {
    treeCommands: 0,
    treeFailed: 0,
    treeRetriesDeduplicated: 0,
    treeStale: 0,
    sessionsCreated: 0,
    sessionsClosed: 0,
    sessionsExpired: 0,
    ephemeralsDeleted: 0,
    ephemeralsExpired: 0,
    checkpointsApplied: 0,
    multiApplied: 0,
    multiFailed: 0,
    sequentialCreates: 0,
    ephemeralCreates: 0,
    fullTreeChecks: 0,
    /** Smallest (idle time before the expiry was proposed) − timeout over expired sessions with a keep-alive, ms. */
    expiryIdleMarginMs: Infinity,
  };
  /** Failure codes seen (first application), for coverage. */
  readonly codes = new Map<string, number>();

  constructor(
    readonly opts: TreeModelOptions,
    tickMs: number,
  ) {
    this.tickMs = tickMs;
  }

  create(node: NodeId): TreeApp {
    const app = new TreeApp(this, node);
    this.apps.set(node, app);
    return app;
  }

  decode(data: Uint8Array, node: NodeId, index: number): TreeApp {
    const app = this.create(node);
    app.tree.restore(data);
    const again = app.tree.snapshot();
    if (again.length !== data.length || again.some((b, i) => b !== data[i])) {
      this.fail('state-machine-safety', `node ${node}: restore(snapshot at ${index}) does not re-encode to the same bytes`);
    }
    const bad = treeProblem(app.tree);
    if (bad) this.fail('tree-invariants', `node ${node} restored from the snapshot at ${index}: ${bad}`);
    return app;
  }

  /** The current state machine of a node. */
  app(node: NodeId): TreeApp | undefined {
    return this.apps.get(node);
  }

  /** The result of (clientId, seq) as first applied anywhere (the answer a client gets). */
  resultOf(clientId: string, seq: number): CommandResult | undefined {
    return this.results.get(`${clientId}/${seq}`);
  }

  /** A leader's tracker accepted a keep-alive of `session` at `ms`. */
  recordTouch(session: number, ms: number): void {
    const list = this.touches.get(session);
    if (list) {
      if (list[list.length - 1] !== ms) list.push(ms);
    } else this.touches.set(session, [ms]);
  }

  private lastTouchAtOrBefore(session: number, ms: number): number | undefined {
    const list = this.touches.get(session);
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) if (list[i] <= ms) return list[i];
    return undefined;
  }

  private fail(checker: 'tree-invariants' | 'exactly-once' | 'session-expiry' | 'state-machine-safety', detail: string): never {
    throw new Violation(checker, detail, this.clock());
  }

  onApplied(app: TreeApp, index: number, cmd: Command | undefined, result: CommandResult, touched: readonly string[]): void {
    const t = app.tree;
    const json = JSON.stringify(result);
    const rh = hashStr(json);
    const prior = this.resultAt.get(index);
    const first = prior === undefined;
    if (first) this.resultAt.set(index, rh);
    else if (prior !== rh) {
      this.fail('state-machine-safety', `node ${app.node} got result ${json.slice(0, 200)} at index ${index}, another node a different one`);
    }

    // Exactly once: a retry is answered from the retry table, never applied again.
    if (cmd && cmd.clientId !== undefined && cmd.seq !== undefined) {
      const key = `${cmd.clientId}/${cmd.seq}`;
      const rec = this.retries.get(key);
      if (!rec) {
        this.retries.set(key, { index, json });
        this.results.set(key, result);
      } else if (rec.index !== index) {
        if (result.ok && result.zxid === index) {
          this.fail(
            'exactly-once',
            `node ${app.node} applied ${cmd.op} (client ${cmd.clientId}, seq ${cmd.seq}) again at index ${index}: it was first applied at index ${rec.index}`,
          );
        }
        const dropped = !result.ok && (result.code === TreeErrorCode.STALE_REQUEST || result.code === TreeErrorCode.SESSION_EXPIRED);
        if (!dropped && json !== rec.json) {
          this.fail(
            'exactly-once',
            `node ${app.node}: the retry of ${cmd.op} (client ${cmd.clientId}, seq ${cmd.seq}) at index ${index} got ${json.slice(0, 160)}, ` +
              `the first one (index ${rec.index}) got ${rec.json.slice(0, 160)}`,
          );
        }
        if (first) {
          if (dropped && result.code === TreeErrorCode.STALE_REQUEST) this.stats.treeStale++;
          else this.stats.treeRetriesDeduplicated++;
        }
      }
    }

    // Structure around what the command changed, on every node.
    const seen = new Set<string>();
    for (const p of touched) {
      for (const q of [p, p === ROOT ? p : parentOf(p)]) {
        if (seen.has(q)) continue;
        seen.add(q);
        const bad = pathProblem(t, q);
        if (bad) this.fail('tree-invariants', `node ${app.node} after applying index ${index} (${cmd?.op ?? 'malformed'}): ${bad}`);
      }
    }
    if (result.ok && cmd && (cmd.op === 'expireSessions' || cmd.op === 'closeSession')) {
      const ended = cmd.op === 'closeSession' ? [cmd.sessionId] : (result as { expired: number[] }).expired;
      for (const id of ended) {
        if (t.session(id) !== null || t.ephemerals(id).length > 0) {
          this.fail('tree-invariants', `node ${app.node}: session ${id} ended at index ${index} but is still live or owns nodes`);
        }
      }
      for (const p of (result as { deleted: string[] }).deleted) {
        const e = t.exists(p);
        if (!e.ok || e.stat !== null) this.fail('tree-invariants', `node ${app.node}: "${p}" was deleted at index ${index} but still exists`);
      }
    }
    if (!first) return;

    // Once per index (the first node to apply it): the whole tree, sampled; bookkeeping and the session rule.
    if (index % this.opts.digestEvery === 0) {
      this.stats.fullTreeChecks++;
      const bad = treeProblem(t);
      if (bad) this.fail('tree-invariants', `node ${app.node} after applying index ${index}: ${bad}`);
    }
    this.stats.treeCommands++;
    if (!result.ok) {
      this.stats.treeFailed++;
      this.codes.set(result.code, (this.codes.get(result.code) ?? 0) + 1);
      if (cmd?.op === 'multi') this.stats.multiFailed++;
      return;
    }
    if (!cmd || result.zxid !== index) return; // a deduplicated retry
    const nowMs = this.clock() * this.tickMs;
    switch (cmd.op) {
      case 'createSession': {
        const r = result as { sessionId: number; timeoutMs: number };
        this.sessionTimeout.set(r.sessionId, r.timeoutMs);
        this.recordTouch(r.sessionId, nowMs); // a session starts alive: its creation counts as a keep-alive
        this.stats.sessionsCreated++;
        break;
      }
      case 'closeSession':
        this.ended.add(cmd.sessionId);
        this.stats.sessionsClosed++;
        this.stats.ephemeralsDeleted += (result as { deleted: string[] }).deleted.length;
        break;
      case 'expireSessions': {
        const r = result as { expired: number[]; deleted: string[] };
        const slack = this.opts.electionTimeoutMs;
        for (const id of r.expired) {
          this.ended.add(id);
          const timeout = this.sessionTimeout.get(id);
          const last = this.lastTouchAtOrBefore(id, cmd.nowMs);
          if (timeout !== undefined && last !== undefined) {
            this.stats.expiryIdleMarginMs = Math.min(this.stats.expiryIdleMarginMs, cmd.nowMs - last - timeout);
          }
          if (timeout !== undefined && last !== undefined && cmd.nowMs - last < timeout - slack) {
            this.fail(
              'session-expiry',
              `session ${id} (timeout ${timeout} ms) was expired by a command proposed at ${cmd.nowMs} ms (index ${index}), ` +
                `but its client touched it at ${last} ms, ${cmd.nowMs - last} ms before (less than timeout − election timeout = ${timeout - slack} ms)`,
            );
          }
        }
        this.stats.sessionsExpired += r.expired.length;
        this.stats.ephemeralsDeleted += r.deleted.length;
        this.stats.ephemeralsExpired += r.deleted.length;
        break;
      }
      case 'checkpointSessions':
        this.stats.checkpointsApplied++;
        break;
      case 'multi':
        this.stats.multiApplied++;
        break;
      case 'create':
        if (cmd.mode.endsWith('SEQUENTIAL')) this.stats.sequentialCreates++;
        if (cmd.mode.startsWith('EPHEMERAL')) this.stats.ephemeralCreates++;
        break;
      default:
        break;
    }
  }
}
