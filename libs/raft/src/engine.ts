/**
 * The boundary between a consensus engine and its driver (libs/raft-node, the simulator in libs/testing).
 *
 * Any engine (Raft today; ZAB or Multi-Paxos later) that implements this interface can run behind the same
 * driver and be checked by the same simulator. The contract, identical to etcd-io/raft's RawNode:
 *
 *  - The engine is a pure, single-threaded state machine. It never reads a clock, sleeps, draws random
 *    numbers of its own or performs I/O. Time advances only through `tick()`; input arrives only through
 *    `step()` and the propose/read/transfer calls; output leaves only through `ready()`.
 *  - The driver loop: call `tick()` every tick interval; feed every received message to `step()`; whenever
 *    `hasReady()` is true take `ready()`, carry it out in the order documented on {@link Ready}, then call
 *    `advance()`. No other `ready()` may be taken between a `ready()` and its `advance()`.
 *  - Committed entries are handed out exactly once, in index order. A ConfChange entry must be given back
 *    through `applyConfChange()` when it is applied.
 */
import { ProgressState } from './progress.js';
import {
  ConfChange,
  ConfState,
  HardState,
  Message,
  NodeId,
  Ready,
  SoftState,
} from './types.js';

export interface PeerStatus {
  match: number;
  next: number;
  state: ProgressState;
  isLearner: boolean;
  recentActive: boolean;
}

export interface EngineStatus {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  leadTransferee: NodeId;
  config: ConfState;
  /** Only on the leader: replication progress per member. */
  progress: Map<NodeId, PeerStatus>;
}

export interface ConsensusEngine {
  /** Advance logical time by one tick. */
  tick(): void;
  /** Feed a message from a peer (or a local message). Messages from unknown or stale senders are ignored. */
  step(m: Message): void;
  /** Propose an application command; throws ProposalDroppedError when it cannot be accepted now. */
  propose(data: Uint8Array): void;
  /** Propose a membership change (one at a time). */
  proposeConfChange(cc: ConfChange): void;
  /** Apply a committed ConfChange entry; returns the new membership. */
  applyConfChange(cc: ConfChange): ConfState;
  /** Request a linearizable read point; answered by a ReadState in a later Ready with the same ctx. */
  readIndex(ctx: Uint8Array): void;
  /** Ask the leader to hand leadership to `to`. */
  transferLeader(to: NodeId): void;
  /** Start an election now (tests and tooling). */
  campaign(): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(rd: Ready): void;
  /** The driver could not deliver to this peer. */
  reportUnreachable(id: NodeId): void;
  /** The driver finished (ok) or failed (!ok) sending a snapshot to this peer. */
  reportSnapshot(id: NodeId, ok: boolean): void;
  status(): EngineStatus;
}
