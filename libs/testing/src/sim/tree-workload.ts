/**
 * The tree mode's workload: clients that propose encoded tree commands drawn from the seed, and, on every node
 * that leads, the session bookkeeping the real service does with a `SessionTracker` on simulated time.
 *
 * Clients (one outstanding command each, `{clientId, seq}` retry identity, a new clientId per incarnation):
 * creates in all four modes under a few parents (sequential ones too, some under an ephemeral or without the
 * session an ephemeral needs), setData / delete / check with right, wrong and any (-1) versions, multi with a
 * failing op sometimes, createSession / closeSession, a few malformed or reserved paths. A command without an
 * answer after `retryAfterTicks` is sent again with the same seq; an answer is "lost" sometimes, so the client
 * retries a command that was already applied. Clients stop (crash) now and then and come back later with a new
 * clientId and a new session. Every command carries `nowMs` = tick × tickMs.
 *
 * Leader service, on each node while it leads: on becoming leader `resetFromState(tree.sessions(), now,
 * electionTimeout)`; then `sync` with the applied sessions, keep-alives of live clients (`touch`, every
 * min(timeout/3, election timeout)), `expireSessions` for the ids `expired(now)` returns, and
 * `checkpointSessions` every `checkpointEveryTicks`.
 */
import { NodeId } from '@app/raft';
import { Command, CreateMode, Op, SessionTracker, encodeCommand, joinPath, parentOf } from '@app/tree';
import { SimCluster } from './cluster.js';
import { Rng } from './prng.js';
import { TreeModel } from './tree-app.js';

export interface TreeParams {
  /** Simulated milliseconds per tick. */
  tickMs: number;
  /** Session timeouts the clients ask for, in ticks. */
  sessionTimeoutTicks: [number, number];
  /** The leader proposes checkpointSessions this often. */
  checkpointEveryTicks: number;
  /** Hash the snapshot (and walk the whole tree) every this many indexes. */
  digestEvery: number;
  maxDataBytes: number;
  /** A client sends its command again after this many ticks without an answer. */
  retryAfterTicks: number;
  /** Probability that an answer is lost (the client then retries an applied command). */
  responseLossRate: number;
  /** Per-tick probability that a live client stops (it comes back later as a new client). */
  clientStopRate: number;
  clientDownTicks: [number, number];
  /** Probability that a client incarnation uses a session. */
  sessionUse: number;
}

export function sampleTreeParams(seed: number, electionTick: number): TreeParams {
  const r = new Rng(seed).fork('tree-params');
  const tLo = r.range(6, 12) * electionTick;
  const tHi = tLo + r.range(0, 12) * electionTick;
  return {
    tickMs: 10,
    sessionTimeoutTicks: [tLo, tHi],
    checkpointEveryTicks: r.range(1, Math.max(1, Math.floor(tLo / (2 * electionTick)))) * electionTick,
    digestEvery: r.pick([4, 8, 16]),
    maxDataBytes: r.pick([16, 64, 1024]),
    retryAfterTicks: r.range(3, 8) * electionTick,
    responseLossRate: Math.round(r.uniform(0.02, 0.2) * 1000) / 1000,
    clientStopRate: r.chance(0.8) ? Math.round(r.uniform(1 / 1500, 1 / 300) * 100000) / 100000 : 0,
    clientDownTicks: [tLo, tHi * 3],
    sessionUse: r.pick([0.5, 0.8, 1]),
  };
}

type DistOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Body = DistOmit<Command, 'nowMs' | 'clientId' | 'seq' | 'sessionId'> & { sessionId?: number };

interface Outstanding {
  seq: number;
  body: Body;
  /** Tick it was last sent (−∞ when the proposal was refused: send again at the next turn). */
  sentAt: number;
  /** The first answer will be lost. */
  loseAnswer: boolean;
  stampedAt: number;
}

interface TreeClient {
  id: number;
  incarnation: number;
  clientId: string;
  seq: number;
  alive: boolean;
  /** Stopped, but resumes with its state (clientId, seq, session, outstanding request). */
  paused: boolean;
  restartAt: number;
  useSession: boolean;
  session: number | undefined;
  /** The session timeout this incarnation asks for (ms). */
  timeoutMs: number;
  keepAliveTicks: number;
  nextTouch: number;
  out: Outstanding | undefined;
  /** The previous request (answered). */
  last: Outstanding | undefined;
  target: NodeId;
}

interface Service {
  incarnation: number;
  tracker: SessionTracker;
  leading: boolean;
  term: number;
  everLed: boolean;
  nextCheckpoint: number;
  expiryProposed: Map<number, number>;
}

const PARENTS = ['/', '/a', '/b', '/a/x', '/q'];
const NAMES = ['n0', 'n1', 'n2', 'n3', 'a', 'b', 'q', 'x'];
const MODES = [CreateMode.PERSISTENT, CreateMode.PERSISTENT_SEQUENTIAL, CreateMode.EPHEMERAL, CreateMode.EPHEMERAL_SEQUENTIAL];

export interface TreeWorkloadBugs {
  /** A new leader keeps the deadlines its tracker had when it last led instead of resetting from the state. */
  staleTracker?: boolean;
}

export class TreeWorkload {
  private readonly clients: TreeClient[];
  private readonly services = new Map<NodeId, Service>();
  /** The client drawing a command (its target's tree is the view). */
  private current: TreeClient | undefined;
  /** False in the liveness phase: clients keep their sessions alive but send nothing. */
  commands = true;
  stats = {
    clientStops: 0,
    commandsSent: 0,
    retriesSent: 0,
    delayedDuplicates: 0,
    answersLost: 0,
    touches: 0,
    touchesRefused: 0,
    promotions: 0,
    expiryProposals: 0,
    checkpointProposals: 0,
  };

  constructor(
    private readonly c: SimCluster,
    private readonly model: TreeModel,
    private readonly rng: Rng,
    private readonly tp: TreeParams,
    clients: number,
    private readonly clientRate: number,
    private readonly electionTick: number,
    private readonly bugs: TreeWorkloadBugs = {},
  ) {
    this.clients = Array.from({ length: clients }, (_, i) => this.newClient(i + 1, 1));
  }

  private ms(): number {
    return this.c.now * this.tp.tickMs;
  }

  private newClient(id: number, incarnation: number): TreeClient {
    const r = this.rng;
    const [lo, hi] = this.tp.sessionTimeoutTicks;
    const timeoutTicks = r.range(lo, hi);
    return {
      id,
      incarnation,
      clientId: `c${id}.${incarnation}`,
      seq: 0,
      alive: true,
      paused: false,
      restartAt: 0,
      useSession: r.chance(this.tp.sessionUse),
      session: undefined,
      timeoutMs: timeoutTicks * this.tp.tickMs,
      keepAliveTicks: Math.max(1, Math.min(Math.floor(timeoutTicks / 3), this.electionTick)),
      nextTouch: 0,
      out: undefined,
      last: undefined,
      target: r.range(1, Math.max(1, this.c.nodeList().length)),
    };
  }

  /** One step, at the start of every tick: clients, then each leader's session bookkeeping. */
  step(): void {
    for (let i = 0; i < this.clients.length; i++) this.clientStep(i);
    this.serviceStep();
  }

  // ---- clients -------------------------------------------------------------------------------------------------

  private clientStep(i: number): void {
    const { c, rng, model } = this;
    let cl = this.clients[i];
    if (!cl.alive) {
      if (!this.commands || c.now < cl.restartAt) return;
      if (cl.paused) {
        // Back from a pause with its old state: its session may have expired meanwhile (SESSION_EXPIRED).
        cl.alive = true;
        cl.paused = false;
        c.trace.event('tree-client-resume', [cl.id, cl.incarnation]);
      } else {
        cl = this.clients[i] = this.newClient(cl.id, cl.incarnation + 1);
        c.trace.event('tree-client-start', [cl.id, cl.incarnation]);
      }
    }
    if (this.commands && rng.chance(this.tp.clientStopRate)) {
      // The client crashes (it comes back as a new client), or pauses (no keep-alives, then resumes as itself).
      cl.alive = false;
      cl.paused = rng.chance(0.4);
      cl.restartAt = c.now + rng.range(this.tp.clientDownTicks[0], this.tp.clientDownTicks[1]);
      this.stats.clientStops++;
      c.trace.event(cl.paused ? 'tree-client-pause' : 'tree-client-stop', [cl.id, cl.incarnation, cl.session ?? 0]);
      return;
    }
    // A client learns that its session ended from a refused keep-alive or request, some time later.
    if (cl.session !== undefined && model.ended.has(cl.session) && rng.chance(0.05)) cl.session = undefined;
    if (cl.session !== undefined && c.now >= cl.nextTouch) {
      this.touch(cl.session);
      cl.nextTouch = c.now + cl.keepAliveTicks;
    }
    if (!this.commands) return;
    if (cl.out) {
      const o = cl.out;
      const r = model.resultOf(cl.clientId, o.seq);
      if (r && o.loseAnswer) {
        o.loseAnswer = false;
        this.stats.answersLost++;
        this.send(cl, o, true);
      } else if (r) {
        cl.out = undefined;
        if (cl.last && rng.chance(this.tp.responseLossRate / 2)) {
          // A delayed duplicate of the request before this one: it must get STALE_REQUEST.
          this.stats.delayedDuplicates++;
          this.send(cl, cl.last, true);
        }
        cl.last = o;
        if (r.ok && o.body.op === 'createSession' && 'sessionId' in r) {
          cl.session = r.sessionId;
          cl.nextTouch = c.now + cl.keepAliveTicks;
        } else if (r.ok && o.body.op === 'closeSession') cl.session = undefined;
        else if (!r.ok && r.code === 'SESSION_EXPIRED' && o.body.sessionId === cl.session) cl.session = undefined;
      } else if (c.now - o.sentAt >= this.tp.retryAfterTicks) {
        this.send(cl, o, true);
      }
      return;
    }
    if (!rng.chance(this.clientRate)) return;
    this.current = cl;
    const body = this.generate(cl);
    if (!body) return;

    const o: Outstanding = { seq: ++cl.seq, body, sentAt: c.now, loseAnswer: rng.chance(this.tp.responseLossRate), stampedAt: this.ms() };
    cl.out = o;
    this.send(cl, o, false);
  }

  private send(cl: TreeClient, o: Outstanding, retry: boolean): void {
    const { c, rng } = this;
    // A retry is the same request; the service stamps it again half of the time.
    if (retry && rng.chance(0.5)) o.stampedAt = this.ms();
    const cmd = { ...o.body, nowMs: o.stampedAt, clientId: cl.clientId, seq: o.seq } as Command;
    if (retry) this.stats.retriesSent++;
    else this.stats.commandsSent++;
    const b = o.body as { op: string; path?: string };
    c.trace.event(retry ? 'tree-retry' : 'tree-send', [cl.id, cl.incarnation, o.seq, cl.target], b.path ? `${b.op} ${b.path}` : b.op);
    const node = c.nodes.get(cl.target);
    const outcome = c.propose(cl.target, encodeCommand(cmd));
    o.sentAt = outcome === 'accepted' ? c.now : -Infinity;
    if (node && node.running && node.lead !== 0 && node.lead !== cl.target) cl.target = node.lead; // follow the redirect
    else if (outcome !== 'accepted') {
      const live = c.running();
      if (live.length > 0) cl.target = rng.pick(live).id;
    }
  }

  /** A view of the tree to draw plausible paths and versions from: the target's, or any running node's. */
  private view() {
    const n = this.current ? this.c.nodes.get(this.current.target) : undefined;
    const node = n && n.running ? n : this.c.running()[0];
    return node ? this.model.app(node.id)?.tree : undefined;
  }

  /** A random existing node (a short random walk from the root), or undefined for the root. */
  private existing(): string | undefined {
    const t = this.view();
    if (!t) return undefined;
    let path = '/';
    for (let depth = 0; depth < 4; depth++) {
      const g = t.getChildren(path);
      if (!g.ok || g.children.length === 0) break;
      const next = joinPath(path, this.rng.pick(g.children));
      path = next;
      if (this.rng.chance(0.4)) break;
    }
    return path === '/' ? undefined : path;
  }

  private data(): Uint8Array {
    const r = this.rng;
    const len = r.chance(0.03) ? this.tp.maxDataBytes + r.range(1, 8) : r.range(0, 8);
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) out[i] = r.int(256);
    return out;
  }

  private version(path: string, plausible: boolean): number {
    const r = this.rng;
    const e = this.view()?.exists(path);
    const v = e && e.ok && e.stat ? e.stat.version : 0;
    return r.weighted([
      [v, 5],
      [v + 1, plausible ? 0.5 : 2],
      [-1, 3],
    ] as const);
  }

  private createOp(cl: TreeClient): Op {
    const r = this.rng;
    let mode = r.weighted(MODES.map((m, i) => [m, cl.session !== undefined ? [3, 2, 3, 2][i] : 1] as const));
    const ephemeral = mode === CreateMode.EPHEMERAL || mode === CreateMode.EPHEMERAL_SEQUENTIAL;
    if (ephemeral && cl.session === undefined && r.chance(0.85)) mode = mode === CreateMode.EPHEMERAL ? CreateMode.PERSISTENT : CreateMode.PERSISTENT_SEQUENTIAL;
    let parent = r.pick(PARENTS);
    if (r.chance(0.05)) parent = this.existing() ?? parent; // sometimes under an ephemeral (refused) or deeper
    else {
      // Mostly create a missing parent first (the nearest missing ancestor), as a client would.
      const t = this.view();
      let missing: string | undefined;
      for (let p = parent; p !== '/' && t; p = parentOf(p)) {
        const e = t.exists(p);
        if (e.ok && e.stat === null) missing = p;
      }
      if (missing && r.chance(0.8)) return { op: 'create', path: missing, data: this.data(), mode: CreateMode.PERSISTENT };
    }
    let path: string;
    if (mode === CreateMode.PERSISTENT_SEQUENTIAL || mode === CreateMode.EPHEMERAL_SEQUENTIAL) {
      path = r.chance(0.5) ? joinPath(parent, 'w-') : parent === '/' ? '/w-' : `${parent}/`;
    } else path = joinPath(parent, r.pick(NAMES));
    return { op: 'create', path, data: this.data(), mode };
  }

  /** `plausible`: an op meant to succeed (inside a multi): an existing path and rarely a wrong version. */
  private pathOp(kind: 'setData' | 'delete' | 'check', plausible = false): Op {
    const r = this.rng;
    const path = (plausible || r.chance(0.85) ? this.existing() : undefined) ?? joinPath(r.pick(PARENTS), r.pick(NAMES));
    const version = this.version(path, plausible);
    if (kind === 'setData') return { op: 'setData', path, data: this.data(), version };
    return { op: kind, path, version };
  }

  private generate(cl: TreeClient): Body | undefined {
    const r = this.rng;
    const sessionId = cl.session;
    if (cl.useSession && cl.session === undefined && cl.seq === 0) {
      return { op: 'createSession', timeoutMs: cl.timeoutMs };
    }
    const big = (this.view()?.nodeCount ?? 0) > 60;
    const kind = r.weighted([
      ['create', big ? 5 : 30],
      ['setData', 18],
      ['delete', big ? 45 : 20],
      ['check', 5],
      ['multi', 12],
      ['session', 5],
      ['bad', 2],
    ] as const);
    const withSession = <T extends object>(b: T): T & { sessionId?: number } => (sessionId !== undefined ? { ...b, sessionId } : b);
    switch (kind) {
      case 'create':
        return withSession(this.createOp(cl)) as Body;
      case 'setData':
      case 'delete':
      case 'check':
        return withSession(this.pathOp(kind)) as Body;
      case 'multi': {
        const n = r.range(2, 4);
        const ops: Op[] = [];
        for (let k = 0; k < n; k++) {
          const which = r.pick(['create', 'setData', 'delete', 'check'] as const);
          ops.push(which === 'create' ? this.createOp(cl) : this.pathOp(which, true));
        }
        if (r.chance(0.3)) {
          // A failing op somewhere: a version that cannot match, or a node that does not exist.
          const at = r.int(ops.length + 1);
          ops.splice(at, 0, r.chance(0.5) ? { op: 'check', path: '/', version: 1_000_000 } : { op: 'delete', path: '/nope/n0', version: -1 });
        }
        return withSession({ op: 'multi', ops }) as Body;
      }
      case 'session':
        if (cl.useSession && sessionId === undefined) return { op: 'createSession', timeoutMs: cl.timeoutMs };
        if (sessionId !== undefined && r.chance(0.3)) return { op: 'closeSession', sessionId };
        return withSession(this.pathOp('check')) as Body;
      case 'bad':
        return r.chance(0.5)
          ? { op: 'create', path: '/synod/x', data: new Uint8Array(0), mode: CreateMode.PERSISTENT }
          : { op: 'setData', path: '/a//b', data: new Uint8Array(0), version: -1 };
    }
  }

  // ---- the leader service --------------------------------------------------------------------------------------

  /** A client's keep-alive reaches every node that leads (and has taken over the sessions). */
  private touch(session: number): void {
    const ms = this.ms();
    let ok = false;
    for (const n of this.c.nodeList()) {
      if (!n.isLeader()) continue;
      const svc = this.services.get(n.id);
      if (!svc || !svc.leading || svc.incarnation !== n.incarnation) continue;
      if (svc.tracker.touch(session, ms)) ok = true;
    }
    if (ok) {
      this.stats.touches++;
      this.model.recordTouch(session, ms);
    } else this.stats.touchesRefused++;
  }

  private serviceStep(): void {
    const { c } = this;
    const ms = this.ms();
    for (const n of c.nodeList()) {
      if (!n.running) continue;
      let svc = this.services.get(n.id);
      if (!svc || svc.incarnation !== n.incarnation) {
        // A restarted process starts with an empty tracker.
        svc = {
          incarnation: n.incarnation,
          tracker: new SessionTracker(),
          leading: false,
          term: 0,
          everLed: false,
          nextCheckpoint: 0,
          expiryProposed: new Map(),
        };
        this.services.set(n.id, svc);
      }
      if (!n.isLeader()) {
        svc.leading = false;
        continue;
      }
      const app = this.model.app(n.id);
      if (!app) continue;
      const sessions = app.tree.sessions();
      if (!svc.leading || svc.term !== n.hard.term) {
        svc.leading = true;
        svc.term = n.hard.term;
        if (this.bugs.staleTracker && svc.everLed) svc.tracker.sync(sessions, ms); // planted bug: stale deadlines
        else svc.tracker.resetFromState(sessions, ms, this.electionTick * this.tp.tickMs);
        svc.everLed = true;
        svc.nextCheckpoint = c.now + this.tp.checkpointEveryTicks;
        svc.expiryProposed.clear();
        this.stats.promotions++;
        c.trace.event('tree-promote', [n.id, n.hard.term, svc.tracker.size]);
      } else svc.tracker.sync(sessions, ms);

      const due = svc.tracker.expired(ms).filter((id) => {
        const at = svc.expiryProposed.get(id);
        return at === undefined || c.now - at >= 2 * this.electionTick;
      });
      if (due.length > 0) {
        for (const id of due) svc.expiryProposed.set(id, c.now);
        this.stats.expiryProposals++;
        c.trace.event('tree-expire', [n.id, ...due]);
        c.propose(n.id, encodeCommand({ op: 'expireSessions', nowMs: ms, ids: due }));
        if (!n.isLeader()) continue;
      }
      if (c.now >= svc.nextCheckpoint) {
        svc.nextCheckpoint = c.now + this.tp.checkpointEveryTicks;
        const remaining = svc.tracker.checkpoint(ms);
        if (remaining.length > 0) {
          this.stats.checkpointProposals++;
          c.trace.event('tree-checkpoint', [n.id, remaining.length]);
          c.propose(n.id, encodeCommand({ op: 'checkpointSessions', nowMs: ms, remaining }));
        }
      }
    }
  }
}
