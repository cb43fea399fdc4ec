/**
 * @app/peer — Raft traffic between members over gRPC (synod.peer.v1.Raft): GrpcPeerTransport implements the
 * driver's Transport (libs/raft-node) with one batched stream per peer, chunked snapshots, reconnection with
 * back-off and forwarded client requests. See transport.ts for the design.
 */
export { GrpcPeerTransport, PEER_SERVER_OPTIONS, PeerError } from './transport.js';
export type {
  BackoffOptions,
  ForwardHandler,
  ForwardResult,
  GrpcPeerTransportOptions,
  PeerLogger,
  PeerTransportStats,
} from './transport.js';
export { PeerCodecError, messageFromWire, messageToWire, messageSize, wireMessageTypeNames } from './codec.js';
export type { WireEntry, WireMessage, WireSnapshot } from './codec.js';
