/**
 * @app/raft-node — the driver that runs the pure Raft core (@app/raft) as a node: tick timer, WAL
 * (@app/storage), transport, proposal tracking, reads, snapshots. See node.ts for the Ready loop.
 */
export { RaftNode } from './node.js';
export type {
  RaftNodeOptions,
  RaftNodeLogger,
  RaftNodeStatus,
  PeerProgress,
  RaftNodePhase,
  ProposeResult,
  ConfChangeResult,
} from './node.js';
export type { StateMachine } from './state-machine.js';
export { RoundTripProbe, timedFileOps } from './observer.js';
export type { RaftNodeObserver, ElectionKind, ProposalFailureReason, SnapshotKind } from './observer.js';
export { InMemoryHub, InMemoryTransport } from './transport.js';
export type { Transport, TransportHandler, HubStats } from './transport.js';
export { NodeStoppedError, RequestTimeoutError } from './errors.js';
export { ProposalDroppedError } from '@app/raft';
export { REQUEST_HEADER_BYTES, REQUEST_MAGIC, encodeRequest, decodeRequest } from './request.js';
export type { RequestId } from './request.js';
