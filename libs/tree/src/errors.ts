/**
 * Error codes of the tree state machine and the gRPC status each one maps to (as data: the service owns grpc).
 * User errors are returned as `{ ok: false, code, message }`, never thrown. Only a broken invariant throws
 * (`TreeInvariantError`): it means this node's state or log is corrupt and the node must stop.
 */

export enum TreeErrorCode {
  /** The node (or, for create, its parent) does not exist. */
  NO_NODE = 'NO_NODE',
  /** create: a node already exists at that path. */
  NODE_EXISTS = 'NODE_EXISTS',
  /** setData/delete/check: the node's version is not the expected one. */
  BAD_VERSION = 'BAD_VERSION',
  /** delete: the node has children. */
  NOT_EMPTY = 'NOT_EMPTY',
  /** create: the parent is ephemeral; ephemeral nodes may not have children. */
  NO_CHILDREN_FOR_EPHEMERALS = 'NO_CHILDREN_FOR_EPHEMERALS',
  /** A field is malformed: path, version, mode, timeout, ids, missing session for an ephemeral, ... */
  BAD_ARGUMENTS = 'BAD_ARGUMENTS',
  /** The command names a session that is unknown, closed or expired. Open a new session. */
  SESSION_EXPIRED = 'SESSION_EXPIRED',
  /** The node data is larger than the configured `maxDataBytes`. */
  DATA_TOO_LARGE = 'DATA_TOO_LARGE',
  /** A watch asked to start from a zxid older than the event history kept on this node. */
  HISTORY_COMPACTED = 'HISTORY_COMPACTED',
  /** A retried command whose sequence number is older than the client's last one: its result is gone. */
  STALE_REQUEST = 'STALE_REQUEST',
  /** multi: this op succeeded but was rolled back because a later op failed. */
  ROLLED_BACK = 'ROLLED_BACK',
  /** multi: this op was not attempted because an earlier op failed (ZooKeeper's RUNTIMEINCONSISTENCY). */
  RUNTIME_INCONSISTENCY = 'RUNTIME_INCONSISTENCY',
  /** removeWatch: there is no such watch (ZooKeeper's NOWATCHER). */
  NO_WATCHER = 'NO_WATCHER',
}

/** gRPC status names (the subset the tree needs), spelled as in @grpc/grpc-js `status`. */
export type GrpcStatusName =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED'
  | 'OUT_OF_RANGE'
  | 'ABORTED';

/** How the service reports each code. Version conflicts are FAILED_PRECONDITION, as etcd and DESIGN.md. */
export const GRPC_STATUS_OF: Readonly<Record<TreeErrorCode, GrpcStatusName>> = Object.freeze({
  [TreeErrorCode.NO_NODE]: 'NOT_FOUND',
  [TreeErrorCode.NODE_EXISTS]: 'ALREADY_EXISTS',
  [TreeErrorCode.BAD_VERSION]: 'FAILED_PRECONDITION',
  [TreeErrorCode.NOT_EMPTY]: 'FAILED_PRECONDITION',
  [TreeErrorCode.NO_CHILDREN_FOR_EPHEMERALS]: 'FAILED_PRECONDITION',
  [TreeErrorCode.BAD_ARGUMENTS]: 'INVALID_ARGUMENT',
  [TreeErrorCode.SESSION_EXPIRED]: 'FAILED_PRECONDITION',
  [TreeErrorCode.DATA_TOO_LARGE]: 'RESOURCE_EXHAUSTED',
  [TreeErrorCode.HISTORY_COMPACTED]: 'OUT_OF_RANGE',
  [TreeErrorCode.STALE_REQUEST]: 'ABORTED',
  [TreeErrorCode.ROLLED_BACK]: 'ABORTED',
  [TreeErrorCode.RUNTIME_INCONSISTENCY]: 'ABORTED',
  [TreeErrorCode.NO_WATCHER]: 'NOT_FOUND',
});

/** A user error, as returned (never thrown) by apply and the reads. */
export interface TreeFailure {
  ok: false;
  code: TreeErrorCode;
  message: string;
}

export function fail(code: TreeErrorCode, message: string): TreeFailure {
  return { ok: false, code, message };
}

/** This node's state or log is broken (or the log holds a command from a newer version): stop the node. */
export class TreeInvariantError extends Error {
  constructor(message: string) {
    super(`tree invariant violated: ${message}`);
    this.name = 'TreeInvariantError';
  }
}

export function treeInvariant(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new TreeInvariantError(typeof message === 'string' ? message : message());
}
