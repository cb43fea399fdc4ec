/**
 * Wire and storage types of the pure Raft core (modelled on etcd-io/raft's raftpb).
 *
 * Everything here is plain data: no classes with behaviour, no Buffers (Uint8Array only), numbers for
 * terms, indexes and node ids (safe up to 2^53, far beyond any real log). Node id 0 means "none".
 */

export type NodeId = number;
export const NONE: NodeId = 0;

export enum EntryType {
  /** An application command (or the empty no-op a new leader appends). */
  Normal = 0,
  /** A membership change; `data` is an encoded {@link ConfChange} (see `encodeConfChange`). */
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be durable before a node answers anything that depends on it (Raft §5.1, Figure 2). */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/** Volatile state, reported when it changes (not persisted). */
export interface SoftState {
  lead: NodeId;
  state: StateType;
}

export enum StateType {
  Follower = 'Follower',
  Candidate = 'Candidate',
  Leader = 'Leader',
  PreCandidate = 'PreCandidate',
}

/** The membership of the cluster. Voters decide; learners only receive the log. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The application's serialized state machine at `metadata.index`. */
  data: Uint8Array;
}

export enum ConfChangeType {
  /** Add a voter, or promote an existing learner to voter. */
  AddNode = 'AddNode',
  RemoveNode = 'RemoveNode',
  /** Add a non-voting learner (it catches up, then is promoted with AddNode). */
  AddLearnerNode = 'AddLearnerNode',
}

/** One membership change at a time (Raft thesis §4.1 single-server changes). */
export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to the core: e.g. the new member's peer address. */
  context?: string;
}

export enum MessageType {
  /** Local: a tick expired, start an election. */
  Hup = 'Hup',
  /** Local: leader should broadcast heartbeats. */
  Beat = 'Beat',
  /** Local or forwarded: propose entries. */
  Prop = 'Prop',
  App = 'App',
  AppResp = 'AppResp',
  Vote = 'Vote',
  VoteResp = 'VoteResp',
  PreVote = 'PreVote',
  PreVoteResp = 'PreVoteResp',
  Snap = 'Snap',
  Heartbeat = 'Heartbeat',
  HeartbeatResp = 'HeartbeatResp',
  /** Local: the driver could not reach a peer. */
  Unreachable = 'Unreachable',
  /** Local: the driver reports a snapshot send's result (`reject` = failed). */
  SnapStatus = 'SnapStatus',
  /** Local: leader checks it still hears from a quorum. */
  CheckQuorum = 'CheckQuorum',
  TransferLeader = 'TransferLeader',
  TimeoutNow = 'TimeoutNow',
  ReadIndex = 'ReadIndex',
  ReadIndexResp = 'ReadIndexResp',
}

export interface Message {
  type: MessageType;
  to: NodeId;
  from: NodeId;
  term: number;
  /** App: term of the entry at `index`; AppResp (reject): term hint for fast back-off. */
  logTerm: number;
  /** App: index of the entry before `entries`; AppResp: last matched/appended index or the rejected index. */
  index: number;
  entries: Entry[];
  commit: number;
  snapshot?: Snapshot;
  reject: boolean;
  /** AppResp (reject): the follower's hint of where its log could match. */
  rejectHint: number;
  /** ReadIndex / Heartbeat round-trip context (opaque bytes, compared by value). */
  context?: Uint8Array;
}

/** Result of a ReadIndex request: once the node has applied up to `index`, reads for `requestCtx` are linearizable. */
export interface ReadState {
  index: number;
  requestCtx: Uint8Array;
}

/**
 * The batch of work the driver must carry out, in this order (see docs/raft.md):
 *  1. persist `hardState`, `entries` and `snapshot` — with one fdatasync when `mustSync` is true;
 *  2. only then send `messages` (they may depend on the persisted term, vote or entries);
 *  3. apply `snapshot` (if any) and then `committedEntries` to the state machine;
 *  4. call `advance()`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  readStates: ReadState[];
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  mustSync: boolean;
}

export function emptyHardState(): HardState {
  return { term: 0, vote: NONE, commit: 0 };
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === NONE && hs.commit === 0;
}

export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

export function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: new Uint8Array(0) };
}

export function isLocalMessage(t: MessageType): boolean {
  return (
    t === MessageType.Hup ||
    t === MessageType.Beat ||
    t === MessageType.Unreachable ||
    t === MessageType.SnapStatus ||
    t === MessageType.CheckQuorum
  );
}

export function isResponseMessage(t: MessageType): boolean {
  return (
    t === MessageType.AppResp ||
    t === MessageType.VoteResp ||
    t === MessageType.HeartbeatResp ||
    t === MessageType.Unreachable ||
    t === MessageType.PreVoteResp
  );
}

/** Build a message with defaults for every field not given. */
export function msg(m: Partial<Message> & { type: MessageType }): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...m,
  };
}

export function entrySize(e: Entry): number {
  // A fixed overhead approximates the framing cost of an entry on the wire and in the WAL.
  return e.data.length + 24;
}
