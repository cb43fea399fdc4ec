/**
 * The replicated state machine: a ZooKeeper-style tree of nodes with sessions, ephemeral and sequential nodes,
 * conditional updates, atomic multi and retry deduplication. Pure and deterministic: no clock (time comes in the
 * command's `nowMs`), no randomness, no I/O. Implements the driver's StateMachine shape (`apply`, `snapshot`,
 * `restore`) structurally. See docs/tree.md.
 */
import type { Entry } from '@app/raft';
import { CommandDecodeError, SNAPSHOT_KIND, decodeCommand, frame, unframe } from './codec.js';
import { TreeErrorCode as E, TreeFailure, TreeInvariantError, fail, treeInvariant } from './errors.js';
import { ROOT, baseName, isReserved, joinPath, parentOf, pathError, sequenceSuffix } from './path.js';
import {
  ChildrenResult,
  Command,
  CommandResult,
  CreateMode,
  EventType,
  ExistsResult,
  GetResult,
  MultiFailure,
  Op,
  OpFailure,
  OpResult,
  SessionInfo,
  Stat,
  WatchEvent,
  isEphemeralMode,
  isSequentialMode,
} from './types.js';

export interface TreeOptions {
  /** Largest node data accepted, in bytes (default 1 MiB). Must be the same on every member. */
  maxDataBytes?: number;
  /** Clients whose last (seq, result) is remembered for retries (default 10,000; least recently used evicted). */
  maxClients?: number;
  /** Session timeouts are clamped to [min, max] (defaults 1 s and 10 min), as ZooKeeper negotiates them. */
  minSessionTimeoutMs?: number;
  maxSessionTimeoutMs?: number;
  /** Called after every applied command that changed the tree, with its events (all with the command's zxid). */
  onEvents?: (events: readonly WatchEvent[]) => void;
  /** Called after `restore`, with the restored lastZxid (watch history before it is gone). */
  onRestore?: (lastZxid: number) => void;
}

export const DEFAULT_MAX_DATA_BYTES = 1024 * 1024;
export const DEFAULT_MAX_CLIENTS = 10_000;
export const DEFAULT_MIN_SESSION_TIMEOUT_MS = 1_000;
export const DEFAULT_MAX_SESSION_TIMEOUT_MS = 600_000;
const MAX_CLIENT_ID_LENGTH = 256;

const EMPTY = new Uint8Array(0);
const OPS = ['create', 'delete', 'setData', 'check', 'multi', 'createSession', 'closeSession', 'expireSessions', 'checkpointSessions'];
const MODES: readonly string[] = Object.values(CreateMode);

interface TNode {
  data: Uint8Array;
  czxid: number;
  mzxid: number;
  pzxid: number;
  ctime: number;
  mtime: number;
  version: number;
  cversion: number;
  ephemeralOwner: number;
  children: Set<string>;
}

interface Session {
  id: number;
  timeoutMs: number;
  remainingMs: number | null;
  ephemerals: Set<string>;
}

interface ClientRecord {
  seq: number;
  /** Session the record is bound to (dropped when it ends), 0 for none. */
  sessionId: number;
  result: CommandResult;
}

/** Undo log and events of one command; rolled back when a multi fails. */
class Txn {
  readonly undo: Array<() => void> = [];
  readonly events: WatchEvent[] = [];
  changed = false;
  constructor(readonly zxid: number, readonly nowMs: number) {}

  event(type: EventType, path: string): void {
    this.events.push({ type, path, zxid: this.zxid });
  }

  rollback(): void {
    for (let i = this.undo.length - 1; i >= 0; i--) this.undo[i]();
    this.undo.length = 0;
    this.events.length = 0;
    this.changed = false;
  }
}

function statOf(n: TNode): Stat {
  return {
    czxid: n.czxid,
    mzxid: n.mzxid,
    pzxid: n.pzxid,
    ctime: n.ctime,
    mtime: n.mtime,
    version: n.version,
    cversion: n.cversion,
    aversion: 0,
    ephemeralOwner: n.ephemeralOwner,
    dataLength: n.data.length,
    numChildren: n.children.size,
  };
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isPos = (v: unknown): v is number => isNat(v) && v > 0;
const show = (v: unknown): string => {
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

function versionError(v: unknown): string | null {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= -1) return null;
  return `version must be an integer >= 0, or -1 for any version; got ${show(v)}`;
}

export class TreeStateMachine {
  readonly maxDataBytes: number;
  readonly maxClients: number;
  readonly minSessionTimeoutMs: number;
  readonly maxSessionTimeoutMs: number;
  private readonly onEvents?: (events: readonly WatchEvent[]) => void;
  private readonly onRestore?: (lastZxid: number) => void;

  private nodes = new Map<string, TNode>();
  private sessionsById = new Map<number, Session>();
  private clients = new Map<string, ClientRecord>();
  private lastZxidValue = 0;
  /** Index of the last entry applied (any outcome); local, for the monotonicity check only. */
  private appliedIndex = 0;

  constructor(opts: TreeOptions = {}) {
    this.maxDataBytes = opts.maxDataBytes ?? DEFAULT_MAX_DATA_BYTES;
    this.maxClients = opts.maxClients ?? DEFAULT_MAX_CLIENTS;
    this.minSessionTimeoutMs = opts.minSessionTimeoutMs ?? DEFAULT_MIN_SESSION_TIMEOUT_MS;
    this.maxSessionTimeoutMs = opts.maxSessionTimeoutMs ?? DEFAULT_MAX_SESSION_TIMEOUT_MS;
    if (!isNat(this.maxDataBytes)) throw new RangeError(`maxDataBytes must be an integer >= 0, got ${this.maxDataBytes}`);
    if (!isPos(this.maxClients)) throw new RangeError(`maxClients must be an integer > 0, got ${this.maxClients}`);
    if (!isPos(this.minSessionTimeoutMs) || !isPos(this.maxSessionTimeoutMs) || this.minSessionTimeoutMs > this.maxSessionTimeoutMs) {
      throw new RangeError(`session timeout bounds must be integers with 0 < min <= max, got ${this.minSessionTimeoutMs}..${this.maxSessionTimeoutMs}`);
    }
    this.onEvents = opts.onEvents;
    this.onRestore = opts.onRestore;
    this.reset();
  }

  private reset(): void {
    this.nodes = new Map();
    this.sessionsById = new Map();
    this.clients = new Map();
    this.nodes.set(ROOT, {
      data: EMPTY, czxid: 0, mzxid: 0, pzxid: 0, ctime: 0, mtime: 0, version: 0, cversion: 0, ephemeralOwner: 0,
      children: new Set(),
    });
    this.lastZxidValue = 0;
    this.appliedIndex = 0;
  }

  /** zxid of the last command that changed the tree or the sessions (0 for an empty tree). */
  get lastZxid(): number {
    return this.lastZxidValue;
  }

  /** Number of nodes, the root included. */
  get nodeCount(): number {
    return this.nodes.size;
  }

  /** Number of live sessions. */
  get sessionCount(): number {
    return this.sessionsById.size;
  }

  // -------------------------------------------------------------------------------------------------------------
  // StateMachine

  /** Decode and apply one committed entry; its index is the zxid. Never throws for a user error. */
  apply(entry: Entry): CommandResult {
    let cmd: Command;
    try {
      cmd = decodeCommand(entry.data);
    } catch (e) {
      if (!(e instanceof CommandDecodeError)) throw e;
      this.advance(entry.index);
      return fail(E.BAD_ARGUMENTS, `malformed command: ${e.message}`);
    }
    return this.applyCommand(cmd, entry.index);
  }

  /** Apply an already decoded command at `zxid` (must exceed every zxid applied before). */
  applyCommand(cmd: Command, zxid: number): CommandResult {
    this.advance(zxid);
    const header = this.checkHeader(cmd);
    if (header) return header;
    const clientId = cmd.clientId;
    const seq = cmd.seq;
    if (clientId !== undefined && seq !== undefined) {
      const rec = this.clients.get(clientId);
      if (rec && rec.seq === seq) return rec.result;
      if (rec && seq < rec.seq) {
        return fail(E.STALE_REQUEST, `client "${clientId}" already sent seq ${rec.seq}; seq ${seq} is older and its result is gone (send each request with a new, higher seq)`);
      }
    }
    const txn = new Txn(zxid, cmd.nowMs);
    const result = this.execute(cmd, txn);
    if (!result.ok) txn.rollback();
    else if (txn.changed) {
      this.lastZxidValue = zxid;
      if (txn.events.length > 0 && this.onEvents) this.onEvents(txn.events);
    }
    if (clientId !== undefined && seq !== undefined) {
      const sid = cmd.sessionId !== undefined && this.sessionsById.has(cmd.sessionId) ? cmd.sessionId : 0;
      this.clients.delete(clientId);
      this.clients.set(clientId, { seq, sessionId: sid, result });
      while (this.clients.size > this.maxClients) this.clients.delete(this.clients.keys().next().value as string);
    }
    return result;
  }

  private advance(zxid: number): void {
    treeInvariant(isPos(zxid), () => `zxid must be a positive integer, got ${zxid}`);
    treeInvariant(zxid > this.appliedIndex, () => `zxid ${zxid} applied after ${this.appliedIndex}: entries must be applied once, in order`);
    this.appliedIndex = zxid;
  }

  /** Validates the fields common to all commands; returns a failure or null. */
  private checkHeader(cmd: Command): TreeFailure | null {
    const c = cmd as unknown;
    if (!isObj(c)) return fail(E.BAD_ARGUMENTS, `a command must be an object, got ${show(c)}`);
    if (typeof c.op !== 'string' || !OPS.includes(c.op)) {
      return fail(E.BAD_ARGUMENTS, `unknown command op ${show(c.op)}; expected one of ${OPS.join(', ')}`);
    }
    if (!isNat(c.nowMs)) return fail(E.BAD_ARGUMENTS, `nowMs must be the leader's time in ms (an integer >= 0), got ${show(c.nowMs)}`);
    if (c.clientId !== undefined) {
      if (typeof c.clientId !== 'string' || c.clientId.length === 0 || c.clientId.length > MAX_CLIENT_ID_LENGTH) {
        return fail(E.BAD_ARGUMENTS, `clientId must be a non-empty string of at most ${MAX_CLIENT_ID_LENGTH} characters, got ${show(c.clientId)}`);
      }
      if (!isPos(c.seq)) return fail(E.BAD_ARGUMENTS, `seq must be an integer > 0 when clientId is set, got ${show(c.seq)}`);
    } else if (c.seq !== undefined) {
      return fail(E.BAD_ARGUMENTS, 'seq was sent without a clientId: send both or neither');
    }
    if (c.sessionId !== undefined && !isPos(c.sessionId)) {
      return fail(E.BAD_ARGUMENTS, `sessionId must be an integer > 0, got ${show(c.sessionId)}`);
    }
    return null;
  }

  private sessionCheck(sessionId: number | undefined): TreeFailure | null {
    if (sessionId === undefined || this.sessionsById.has(sessionId)) return null;
    return fail(E.SESSION_EXPIRED, `session ${sessionId} is expired, closed or unknown: open a new session`);
  }

  private execute(cmd: Command, txn: Txn): CommandResult {
    const zxid = txn.zxid;
    switch (cmd.op) {
      case 'create':
      case 'delete':
      case 'setData':
      case 'check': {
        const bad = this.sessionCheck(cmd.sessionId);
        if (bad) return bad;
        const r = this.runOp(cmd, txn, cmd.sessionId);
        if ('ok' in r) return r;
        switch (r.op) {
          case 'create':
            return { ok: true, zxid, path: r.path, stat: r.stat };
          case 'setData':
            return { ok: true, zxid, stat: r.stat };
          default:
            return { ok: true, zxid };
        }
      }
      case 'multi': {
        const bad = this.sessionCheck(cmd.sessionId);
        if (bad) return bad;
        if (!Array.isArray(cmd.ops)) return fail(E.BAD_ARGUMENTS, `multi needs an array of ops, got ${show(cmd.ops)}`);
        const results: OpResult[] = [];
        for (let i = 0; i < cmd.ops.length; i++) {
          const r = this.runOp(cmd.ops[i], txn, cmd.sessionId);
          if ('ok' in r) return this.multiFailure(cmd.ops.length, i, r);
          results.push(r);
        }
        return { ok: true, zxid, results };
      }
      case 'createSession': {
        if (cmd.sessionId !== undefined) return fail(E.BAD_ARGUMENTS, 'createSession must not carry a sessionId (the new id is returned)');
        if (!isPos(cmd.timeoutMs)) return fail(E.BAD_ARGUMENTS, `timeoutMs must be an integer > 0, got ${show(cmd.timeoutMs)}`);
        const timeoutMs = Math.min(this.maxSessionTimeoutMs, Math.max(this.minSessionTimeoutMs, cmd.timeoutMs));
        treeInvariant(!this.sessionsById.has(zxid), `session id ${zxid} already in use`);
        this.sessionsById.set(zxid, { id: zxid, timeoutMs, remainingMs: null, ephemerals: new Set() });
        txn.changed = true;
        return { ok: true, zxid, sessionId: zxid, timeoutMs };
      }
      case 'closeSession': {
        if (!isPos(cmd.sessionId)) return fail(E.BAD_ARGUMENTS, `closeSession needs the sessionId to close, got ${show(cmd.sessionId)}`);
        const bad = this.sessionCheck(cmd.sessionId);
        if (bad) return bad;
        const deleted = this.endSession(cmd.sessionId, txn);
        return { ok: true, zxid, deleted };
      }
      case 'expireSessions': {
        if (!Array.isArray(cmd.ids) || !cmd.ids.every(isPos)) {
          return fail(E.BAD_ARGUMENTS, `expireSessions needs an array of session ids (integers > 0), got ${show(cmd.ids)}`);
        }
        const expired = [...new Set(cmd.ids)].filter((id) => this.sessionsById.has(id)).sort((a, b) => a - b);
        const deleted: string[] = [];
        for (const id of expired) deleted.push(...this.endSession(id, txn));
        return { ok: true, zxid, expired, deleted };
      }
      case 'checkpointSessions': {
        const rem = cmd.remaining as unknown;
        if (!Array.isArray(rem) || !rem.every((p) => Array.isArray(p) && p.length === 2 && isPos(p[0]) && isNat(p[1]))) {
          return fail(E.BAD_ARGUMENTS, `checkpointSessions needs an array of [sessionId, remainingMs] pairs (integers), got ${show(rem)}`);
        }
        let updated = 0;
        for (const [id, ms] of rem as Array<[number, number]>) {
          const s = this.sessionsById.get(id);
          if (!s) continue;
          s.remainingMs = Math.min(ms, s.timeoutMs);
          updated++;
        }
        if (updated > 0) txn.changed = true;
        return { ok: true, zxid, updated };
      }
      default: {
        const op: never = cmd;
        throw new TreeInvariantError(`unhandled op ${show((op as { op: unknown }).op)}`);
      }
    }
  }

  private multiFailure(n: number, failed: number, f: TreeFailure): MultiFailure {
    const results: OpFailure[] = [];
    for (let i = 0; i < n; i++) {
      const code = i < failed ? E.ROLLED_BACK : i === failed ? f.code : E.RUNTIME_INCONSISTENCY;
      results.push({ ok: false, code });
    }
    return { ok: false, code: f.code, message: `multi op ${failed}: ${f.message}`, failedOp: failed, results };
  }

  /** Validate and perform one op; no change is made when it fails. */
  private runOp(op: Op, txn: Txn, sessionId: number | undefined): OpResult | TreeFailure {
    if (!isObj(op)) return fail(E.BAD_ARGUMENTS, `an op must be an object, got ${show(op)}`);
    switch (op.op) {
      case 'create':
        return this.create(op.path, op.data, op.mode, sessionId, txn);
      case 'delete': {
        const bad = this.writablePath(op.path) ?? this.versionArg(op.version);
        if (bad) return bad;
        if (op.path === ROOT) return fail(E.BAD_ARGUMENTS, 'the root node "/" cannot be deleted');
        const n = this.nodes.get(op.path);
        if (!n) return fail(E.NO_NODE, `cannot delete "${op.path}": no such node`);
        if (op.version !== -1 && op.version !== n.version) {
          return fail(E.BAD_VERSION, `cannot delete "${op.path}": expected version ${op.version} but it is at version ${n.version}`);
        }
        if (n.children.size > 0) {
          return fail(E.NOT_EMPTY, `cannot delete "${op.path}": it has ${n.children.size} children; delete them first`);
        }
        this.deleteNode(op.path, txn);
        return { op: 'delete' };
      }
      case 'setData': {
        const bad = this.writablePath(op.path) ?? this.versionArg(op.version) ?? this.dataArg(op.data);
        if (bad) return bad;
        const n = this.nodes.get(op.path);
        if (!n) return fail(E.NO_NODE, `cannot set data of "${op.path}": no such node`);
        if (op.version !== -1 && op.version !== n.version) {
          return fail(E.BAD_VERSION, `cannot set data of "${op.path}": expected version ${op.version} but it is at version ${n.version}`);
        }
        const prev = { data: n.data, version: n.version, mzxid: n.mzxid, mtime: n.mtime };
        n.data = op.data;
        n.version++;
        n.mzxid = txn.zxid;
        n.mtime = txn.nowMs;
        txn.undo.push(() => Object.assign(n, prev));
        txn.changed = true;
        txn.event(EventType.NodeDataChanged, op.path);
        return { op: 'setData', stat: statOf(n) };
      }
      case 'check': {
        const pe = pathError(op.path);
        if (pe) return fail(E.BAD_ARGUMENTS, pe);
        const bad = this.versionArg(op.version);
        if (bad) return bad;
        const n = this.nodes.get(op.path);
        if (!n) return fail(E.NO_NODE, `check failed: "${op.path}" does not exist`);
        if (op.version !== -1 && op.version !== n.version) {
          return fail(E.BAD_VERSION, `check failed: "${op.path}" is at version ${n.version}, expected ${op.version}`);
        }
        return { op: 'check' };
      }
      default:
        return fail(E.BAD_ARGUMENTS, `unknown op ${show((op as { op: unknown }).op)}; expected create, delete, setData or check`);
    }
  }

  private writablePath(path: unknown, sequential = false): TreeFailure | null {
    const pe = pathError(path, sequential);
    if (pe) return fail(E.BAD_ARGUMENTS, pe);
    if (isReserved(sequential ? `${path as string}0` : (path as string))) {
      return fail(E.BAD_ARGUMENTS, `"${path as string}" is under /synod, which is reserved for the system; use another path`);
    }
    return null;
  }

  private versionArg(v: unknown): TreeFailure | null {
    const ve = versionError(v);
    return ve ? fail(E.BAD_ARGUMENTS, ve) : null;
  }

  private dataArg(d: unknown): TreeFailure | null {
    if (!(d instanceof Uint8Array)) return fail(E.BAD_ARGUMENTS, `data must be bytes, got ${show(d)}`);
    if (d.length > this.maxDataBytes) {
      return fail(E.DATA_TOO_LARGE, `data is ${d.length} bytes; the limit is ${this.maxDataBytes} bytes per node: store large values elsewhere and keep a reference here`);
    }
    return null;
  }

  private create(path: string, data: Uint8Array, mode: CreateMode, sessionId: number | undefined, txn: Txn): OpResult | TreeFailure {
    if (typeof mode !== 'string' || !MODES.includes(mode)) {
      return fail(E.BAD_ARGUMENTS, `unknown create mode ${show(mode)}; expected one of ${MODES.join(', ')}`);
    }
    const sequential = isSequentialMode(mode);
    const bad = this.writablePath(path, sequential) ?? this.dataArg(data);
    if (bad) return bad;
    const ephemeral = isEphemeralMode(mode);
    if (ephemeral && sessionId === undefined) {
      return fail(E.BAD_ARGUMENTS, `an ${mode} node is bound to a session: send the command with your sessionId`);
    }
    const parentPath = parentOf(sequential ? `${path}0` : path);
    if (!sequential && path === ROOT) return fail(E.NODE_EXISTS, 'the root node "/" always exists');
    const parent = this.nodes.get(parentPath);
    if (!parent) return fail(E.NO_NODE, `cannot create "${path}": parent "${parentPath}" does not exist; create it first`);
    if (parent.ephemeralOwner !== 0) {
      return fail(E.NO_CHILDREN_FOR_EPHEMERALS, `cannot create "${path}": parent "${parentPath}" is ephemeral and may not have children`);
    }
    const finalPath = sequential ? `${path}${sequenceSuffix(parent.cversion)}` : path;
    if (this.nodes.has(finalPath)) return fail(E.NODE_EXISTS, `cannot create "${finalPath}": it already exists`);
    const owner = ephemeral ? sessionId! : 0;
    const session = ephemeral ? this.sessionsById.get(owner) : undefined;
    treeInvariant(!ephemeral || session, () => `ephemeral owner ${owner} is not a live session`);

    const n: TNode = {
      data, czxid: txn.zxid, mzxid: txn.zxid, pzxid: txn.zxid, ctime: txn.nowMs, mtime: txn.nowMs, version: 0, cversion: 0,
      ephemeralOwner: owner, children: new Set(),
    };
    const name = baseName(finalPath);
    const prev = { cversion: parent.cversion, pzxid: parent.pzxid };
    this.nodes.set(finalPath, n);
    parent.children.add(name);
    parent.cversion++;
    parent.pzxid = txn.zxid;
    session?.ephemerals.add(finalPath);
    txn.undo.push(() => {
      this.nodes.delete(finalPath);
      parent.children.delete(name);
      Object.assign(parent, prev);
      session?.ephemerals.delete(finalPath);
    });
    txn.changed = true;
    txn.event(EventType.NodeCreated, finalPath);
    txn.event(EventType.NodeChildrenChanged, parentPath);
    return { op: 'create', path: finalPath, stat: statOf(n) };
  }

  /** Remove a childless node (checked by the caller), with undo and events. */
  private deleteNode(path: string, txn: Txn): void {
    const n = this.nodes.get(path);
    treeInvariant(n && n.children.size === 0 && path !== ROOT, () => `cannot remove "${path}"`);
    const parentPath = parentOf(path);
    const parent = this.nodes.get(parentPath);
    treeInvariant(parent, () => `"${path}" has no parent`);
    const name = baseName(path);
    const session = n.ephemeralOwner !== 0 ? this.sessionsById.get(n.ephemeralOwner) : undefined;
    const prev = { cversion: parent.cversion, pzxid: parent.pzxid };
    this.nodes.delete(path);
    parent.children.delete(name);
    parent.cversion++;
    parent.pzxid = txn.zxid;
    session?.ephemerals.delete(path);
    txn.undo.push(() => {
      this.nodes.set(path, n);
      parent.children.add(name);
      Object.assign(parent, prev);
      session?.ephemerals.add(path);
    });
    txn.changed = true;
    txn.event(EventType.NodeDeleted, path);
    txn.event(EventType.NodeChildrenChanged, parentPath);
  }

  /** Delete a session's ephemerals (in path order), the session, and the retry records bound to it. */
  private endSession(id: number, txn: Txn): string[] {
    const s = this.sessionsById.get(id);
    treeInvariant(s, `session ${id} is not live`);
    const paths = [...s.ephemerals].sort();
    for (const p of paths) this.deleteNode(p, txn);
    this.sessionsById.delete(id);
    for (const [cid, rec] of this.clients) if (rec.sessionId === id) this.clients.delete(cid);
    txn.changed = true;
    return paths;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Reads (local state; the service decides whether a ReadIndex round comes first)

  get(path: string): GetResult {
    const pe = pathError(path);
    if (pe) return fail(E.BAD_ARGUMENTS, pe);
    const n = this.nodes.get(path);
    if (!n) return fail(E.NO_NODE, `"${path}" does not exist`);
    return { ok: true, data: n.data, stat: statOf(n) };
  }

  exists(path: string): ExistsResult {
    const pe = pathError(path);
    if (pe) return fail(E.BAD_ARGUMENTS, pe);
    const n = this.nodes.get(path);
    return { ok: true, stat: n ? statOf(n) : null };
  }

  getChildren(path: string): ChildrenResult {
    const pe = pathError(path);
    if (pe) return fail(E.BAD_ARGUMENTS, pe);
    const n = this.nodes.get(path);
    if (!n) return fail(E.NO_NODE, `"${path}" does not exist`);
    return { ok: true, children: [...n.children].sort(), stat: statOf(n) };
  }

  /** Live sessions in id order, with their last checkpointed remaining TTL. */
  sessions(): SessionInfo[] {
    return [...this.sessionsById.values()]
      .sort((a, b) => a.id - b.id)
      .map((s) => ({ id: s.id, timeoutMs: s.timeoutMs, remainingMs: s.remainingMs }));
  }

  session(id: number): SessionInfo | null {
    const s = this.sessionsById.get(id);
    return s ? { id: s.id, timeoutMs: s.timeoutMs, remainingMs: s.remainingMs } : null;
  }

  /** Paths of a session's ephemeral nodes, sorted ([] for an unknown session). */
  ephemerals(sessionId: number): string[] {
    const s = this.sessionsById.get(sessionId);
    return s ? [...s.ephemerals].sort() : [];
  }

  /** The retry record of a client: its last seq and that command's result. */
  lastRequest(clientId: string): { seq: number; result: CommandResult } | null {
    const r = this.clients.get(clientId);
    return r ? { seq: r.seq, result: r.result } : null;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Snapshot

  /**
   * The whole replicated state: nodes (depth-first, children sorted), sessions with their checkpointed TTLs, the
   * retry table (in eviction order) and lastZxid. Local watches are not part of it. Deterministic bytes.
   */
  snapshot(): Uint8Array {
    const nodes: unknown[] = [];
    const blobs: Uint8Array[] = [];
    const stack: string[] = [ROOT];
    while (stack.length > 0) {
      const path = stack.pop()!;
      const n = this.nodes.get(path)!;
      nodes.push([path, n.czxid, n.mzxid, n.pzxid, n.ctime, n.mtime, n.version, n.cversion, n.ephemeralOwner, n.data.length]);
      blobs.push(n.data);
      const kids = [...n.children].sort();
      for (let i = kids.length - 1; i >= 0; i--) stack.push(joinPath(path, kids[i]));
    }
    const sessions = [...this.sessionsById.values()].sort((a, b) => a.id - b.id).map((s) => [s.id, s.timeoutMs, s.remainingMs]);
    const clients = [...this.clients].map(([cid, r]) => [cid, r.seq, r.sessionId, r.result]);
    return frame(SNAPSHOT_KIND, { lastZxid: this.lastZxidValue, nodes, sessions, clients }, blobs);
  }

  /** Replace the whole state with a snapshot's. A corrupt snapshot throws TreeInvariantError. */
  restore(data: Uint8Array): void {
    let parsed: ReturnType<typeof unframe>;
    try {
      parsed = unframe(SNAPSHOT_KIND, data, 'snapshot');
    } catch (e) {
      if (e instanceof CommandDecodeError) throw new TreeInvariantError(`corrupt snapshot: ${e.message}`);
      throw e;
    }
    const h = parsed.header as { lastZxid: unknown; nodes: unknown; sessions: unknown; clients: unknown };
    const bad = (what: string): never => {
      throw new TreeInvariantError(`corrupt snapshot: ${what}`);
    };
    if (!isObj(h) || !isNat(h.lastZxid) || !Array.isArray(h.nodes) || !Array.isArray(h.sessions) || !Array.isArray(h.clients)) {
      bad('missing fields');
    }
    this.reset();
    this.nodes.clear();
    for (const row of h.sessions as unknown[]) {
      if (!Array.isArray(row) || !isPos(row[0]) || !isPos(row[1]) || !(row[2] === null || isNat(row[2]))) bad(`session ${show(row)}`);
      const [id, timeoutMs, remainingMs] = row as [number, number, number | null];
      this.sessionsById.set(id, { id, timeoutMs, remainingMs, ephemerals: new Set() });
    }
    try {
      for (const row of h.nodes as unknown[]) {
        if (!Array.isArray(row) || row.length !== 10 || typeof row[0] !== 'string' || !row.slice(1).every(isNat)) bad(`node ${show(row)}`);
        const [path, czxid, mzxid, pzxid, ctime, mtime, version, cversion, owner, len] = row as [string, ...number[]];
        const n: TNode = {
          data: parsed.blobs.take(len), czxid, mzxid, pzxid, ctime, mtime, version, cversion, ephemeralOwner: owner, children: new Set(),
        };
        if (path === ROOT) {
          if (this.nodes.size !== 0) bad('root is not the first node');
        } else {
          if (pathError(path) !== null || this.nodes.has(path)) bad(`node path ${show(path)}`);
          const parent = this.nodes.get(parentOf(path));
          if (!parent) bad(`"${path}" comes before its parent`);
          parent!.children.add(baseName(path));
        }
        this.nodes.set(path, n);
        if (owner !== 0) {
          const s = this.sessionsById.get(owner);
          if (!s) bad(`"${path}" is owned by unknown session ${owner}`);
          s!.ephemerals.add(path);
        }
      }
      parsed.blobs.end();
    } catch (e) {
      if (e instanceof CommandDecodeError) bad(e.message);
      throw e;
    }
    if (!this.nodes.has(ROOT)) bad('no root node');
    for (const row of h.clients as unknown[]) {
      if (!Array.isArray(row) || typeof row[0] !== 'string' || !isPos(row[1]) || !isNat(row[2]) || !isObj(row[3])) bad(`client ${show(row)}`);
      const [cid, seq, sessionId, result] = row as [string, number, number, CommandResult];
      this.clients.set(cid, { seq, sessionId, result });
    }
    this.lastZxidValue = h.lastZxid as number;
    this.appliedIndex = this.lastZxidValue;
    this.onRestore?.(this.lastZxidValue);
  }
}

/** Structural check that TreeStateMachine fits the driver's StateMachine (without importing @app/raft-node). */
export type StateMachineShape = {
  apply(entry: Entry): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
};
const _shape: (t: TreeStateMachine) => StateMachineShape = (t) => t;
void _shape;
