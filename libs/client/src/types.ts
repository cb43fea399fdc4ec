/** The client's view of Synod's messages (docs/api.md). Numbers are JS numbers (all far below 2^53). */
import type { Stat } from '@app/tree';

/** ZooKeeper's Stat, as the tree keeps it (see docs/tree.md). */
export type { Stat };

export type CreateMode = 'PERSISTENT' | 'EPHEMERAL' | 'PERSISTENT_SEQUENTIAL' | 'EPHEMERAL_SEQUENTIAL';
export type Consistency = 'LINEARIZABLE' | 'SEQUENTIAL';
export type WatchKind = 'DATA' | 'CHILDREN' | 'PERSISTENT' | 'PERSISTENT_RECURSIVE';
export type EventType = 'NODE_CREATED' | 'NODE_DELETED' | 'NODE_DATA_CHANGED' | 'NODE_CHILDREN_CHANGED';
export type Role = 'ROLE_UNKNOWN' | 'FOLLOWER' | 'PRE_CANDIDATE' | 'CANDIDATE' | 'LEADER' | 'LEARNER';

/** Input data: bytes, or a string (stored as UTF-8). */
export type Data = Uint8Array | string;

export interface ResponseHeader {
  zxid: number;
  memberId: number;
  term: number;
  leaderId: number;
}

export interface CreateResult {
  header: ResponseHeader;
  /** The actual path (with the sequence suffix for sequential modes). */
  path: string;
  stat: Stat;
}

export interface GetResult {
  header: ResponseHeader;
  data: Buffer;
  stat: Stat;
}

export interface SetResult {
  header: ResponseHeader;
  stat: Stat;
}

export interface ExistsResult {
  header: ResponseHeader;
  exists: boolean;
  stat?: Stat;
}

export interface ChildrenResult {
  header: ResponseHeader;
  children: string[];
  stat: Stat;
}

export type MultiOp =
  | { op: 'create'; path: string; data?: Data; mode?: CreateMode; sessionId?: number }
  | { op: 'set'; path: string; data: Data; version?: number }
  | { op: 'delete'; path: string; version?: number }
  | { op: 'check'; path: string; version?: number };

export type MultiOpResult =
  | { kind: 'create'; path: string; stat: Stat }
  | { kind: 'set'; stat: Stat }
  | { kind: 'ok' }
  | { kind: 'error'; code: number; message: string }
  | { kind: 'rolledBack' }
  | { kind: 'notRun' };

export interface MultiResult {
  header: ResponseHeader;
  /** True when every op was applied (in one zxid); false when none was. */
  succeeded: boolean;
  results: MultiOpResult[];
  /** Index of the failing op when `!succeeded`. */
  failedOp: number;
}

export interface WatchEvent {
  type: EventType;
  path: string;
  zxid: number;
  /** The node's stat after the change (absent for NODE_DELETED). */
  stat?: Stat;
}

export interface Member {
  id: number;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface StatusResult {
  header: ResponseHeader;
  id: number;
  role: Role;
  term: number;
  leader: number;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  snapshotIndex: number;
  peerUrls: string[];
  clientUrls: string[];
  members: Member[];
  version: string;
  nodeCount: number;
  sessionCount: number;
  errors: string[];
}

export interface MembersResult {
  header: ResponseHeader;
  members: Member[];
}

export interface SnapshotResult {
  header?: ResponseHeader;
  index: number;
  term: number;
  data: Buffer;
  sha256: Buffer;
}
