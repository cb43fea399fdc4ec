/** Data model, commands and results of the tree state machine. See docs/tree.md. */
import { TreeErrorCode, TreeFailure } from './errors.js';

export enum CreateMode {
  PERSISTENT = 'PERSISTENT',
  PERSISTENT_SEQUENTIAL = 'PERSISTENT_SEQUENTIAL',
  EPHEMERAL = 'EPHEMERAL',
  EPHEMERAL_SEQUENTIAL = 'EPHEMERAL_SEQUENTIAL',
}

export function isEphemeralMode(m: CreateMode): boolean {
  return m === CreateMode.EPHEMERAL || m === CreateMode.EPHEMERAL_SEQUENTIAL;
}

export function isSequentialMode(m: CreateMode): boolean {
  return m === CreateMode.PERSISTENT_SEQUENTIAL || m === CreateMode.EPHEMERAL_SEQUENTIAL;
}

/** ZooKeeper's Stat. Times are milliseconds since the epoch as stamped by the leader into the command. */
export interface Stat {
  /** zxid of the create. */
  czxid: number;
  /** zxid of the last data change (the create, or the last setData). */
  mzxid: number;
  /** zxid of the last change to the list of children (the create when there was none). */
  pzxid: number;
  ctime: number;
  mtime: number;
  /** Number of data changes. */
  version: number;
  /** Number of changes (creates and deletes) to the children; the next sequential suffix. */
  cversion: number;
  /** ACL version: always 0 (no ACLs). */
  aversion: number;
  /** Owning session id for an ephemeral node, 0 otherwise. */
  ephemeralOwner: number;
  dataLength: number;
  numChildren: number;
}

export enum EventType {
  NodeCreated = 'NodeCreated',
  NodeDeleted = 'NodeDeleted',
  NodeDataChanged = 'NodeDataChanged',
  NodeChildrenChanged = 'NodeChildrenChanged',
}

/** One change to the tree. Every event of one command carries that command's zxid. */
export interface WatchEvent {
  type: EventType;
  path: string;
  zxid: number;
}

/** Any version (ZooKeeper's -1). */
export const ANY_VERSION = -1;

// ---------------------------------------------------------------------------------------------------------------
// Commands (what the leader proposes). Every field is validated again when applied.

/**
 * Fields common to every command.
 * - `nowMs`: the leader's clock when it proposed the command (ctime/mtime come from here; apply reads no clock).
 * - `clientId` + `seq`: retry identity. A command with the same (clientId, seq) as that client's last one
 *   returns the cached result instead of applying again. Optional: leader-internal commands carry none.
 * - `sessionId`: the client's session. When present it must be live (else SESSION_EXPIRED); ephemeral creates
 *   need it.
 */
export interface CommandHeader {
  nowMs: number;
  clientId?: string;
  seq?: number;
  sessionId?: number;
}

export interface CreateOp {
  op: 'create';
  path: string;
  data: Uint8Array;
  mode: CreateMode;
}
export interface DeleteOp {
  op: 'delete';
  path: string;
  /** Expected version, or -1 for any. */
  version: number;
}
export interface SetDataOp {
  op: 'setData';
  path: string;
  data: Uint8Array;
  /** Expected version, or -1 for any. */
  version: number;
}
export interface CheckOp {
  op: 'check';
  path: string;
  /** Expected version, or -1 for "exists". */
  version: number;
}
export type Op = CreateOp | DeleteOp | SetDataOp | CheckOp;

export type Command =
  | (CommandHeader & CreateOp)
  | (CommandHeader & DeleteOp)
  | (CommandHeader & SetDataOp)
  | (CommandHeader & CheckOp)
  | (CommandHeader & { op: 'multi'; ops: Op[] })
  | (CommandHeader & { op: 'createSession'; timeoutMs: number })
  | (CommandHeader & { op: 'closeSession'; sessionId: number })
  /** Proposed by the leader when sessions' deadlines pass. Unknown (already gone) ids are ignored. */
  | (CommandHeader & { op: 'expireSessions'; ids: number[] })
  /** Proposed by the leader periodically: each session's remaining TTL, for the next leader. */
  | (CommandHeader & { op: 'checkpointSessions'; remaining: Array<[sessionId: number, remainingMs: number]> });

export type CommandOp = Command['op'];

// ---------------------------------------------------------------------------------------------------------------
// Results. `zxid` is the zxid of the command that produced the result (for a cached duplicate: the original).

export type OpResult =
  | { op: 'create'; path: string; stat: Stat }
  | { op: 'setData'; stat: Stat }
  | { op: 'delete' }
  | { op: 'check' };

/** Per-op outcome of a failed multi: earlier ops ROLLED_BACK, the failing op its code, later ones RUNTIME_INCONSISTENCY. */
export interface OpFailure {
  ok: false;
  code: TreeErrorCode;
}

export interface MultiFailure extends TreeFailure {
  /** Index of the op that failed. */
  failedOp: number;
  results: OpFailure[];
}

export type CommandFailure = TreeFailure | MultiFailure;

export type CreateResult = { ok: true; zxid: number; path: string; stat: Stat };
export type SetDataResult = { ok: true; zxid: number; stat: Stat };
export type DeleteResult = { ok: true; zxid: number };
export type CheckResult = { ok: true; zxid: number };
export type MultiResult = { ok: true; zxid: number; results: OpResult[] };
export type CreateSessionResult = { ok: true; zxid: number; sessionId: number; timeoutMs: number };
export type CloseSessionResult = { ok: true; zxid: number; deleted: string[] };
export type ExpireSessionsResult = { ok: true; zxid: number; expired: number[]; deleted: string[] };
export type CheckpointResult = { ok: true; zxid: number; updated: number };

export type CommandSuccess =
  | CreateResult
  | SetDataResult
  | DeleteResult
  | CheckResult
  | MultiResult
  | CreateSessionResult
  | CloseSessionResult
  | ExpireSessionsResult
  | CheckpointResult;

export type CommandResult = CommandSuccess | CommandFailure;

/** What `apply` returns for a command of a given op. */
export type ResultOf<O extends CommandOp> = CommandFailure |
  (O extends 'create' ? CreateResult
    : O extends 'setData' ? SetDataResult
    : O extends 'delete' ? DeleteResult
    : O extends 'check' ? CheckResult
    : O extends 'multi' ? MultiResult
    : O extends 'createSession' ? CreateSessionResult
    : O extends 'closeSession' ? CloseSessionResult
    : O extends 'expireSessions' ? ExpireSessionsResult
    : CheckpointResult);

// ---------------------------------------------------------------------------------------------------------------
// Reads (local, not replicated).

export type GetResult = { ok: true; data: Uint8Array; stat: Stat } | TreeFailure;
export type ExistsResult = { ok: true; stat: Stat | null } | TreeFailure;
export type ChildrenResult = { ok: true; children: string[]; stat: Stat } | TreeFailure;

/** A live session as replicated: `remainingMs` is the last checkpointed TTL (null: never checkpointed). */
export interface SessionInfo {
  id: number;
  timeoutMs: number;
  remainingMs: number | null;
}
