/**
 * Every failure leaves the service as a gRPC status with a message a person can act on (docs/consensus.md,
 * "Errors"). `ServiceError` carries the code, the message and optional trailing metadata (the leader hint on
 * UNAVAILABLE); `toStatus` turns anything thrown into one.
 */
import * as grpc from '@grpc/grpc-js';
import { ProposalDroppedError } from '@app/raft';
import { NodeStoppedError, RequestTimeoutError } from '@app/raft-node';
import { PeerError } from '@app/peer';
import { GRPC_STATUS_OF, TreeErrorCode, TreeFailure } from '@app/tree';

export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  constructor(
    readonly code: grpc.status,
    message: string,
    readonly metadata?: grpc.Metadata,
  ) {
    super(message);
  }
}

export const LEADER_ID_KEY = 'synod-leader-id';
export const LEADER_ADDRESS_KEY = 'synod-leader-address';

/** The gRPC code of a tree error code, through libs/tree's table. */
export function treeStatus(code: TreeErrorCode): grpc.status {
  return grpc.status[GRPC_STATUS_OF[code]];
}

export function treeError(f: TreeFailure): ServiceError {
  return new ServiceError(treeStatus(f.code), f.message);
}

export const invalid = (message: string): ServiceError => new ServiceError(grpc.status.INVALID_ARGUMENT, message);

/** What the serving member knows about the leader, for UNAVAILABLE answers. */
export interface LeaderHint {
  self: number;
  leader: number;
  term: number;
  leaderAddress?: string;
}

export function leaderMetadata(h: LeaderHint): grpc.Metadata {
  const md = new grpc.Metadata();
  if (h.leader !== 0) {
    md.set(LEADER_ID_KEY, String(h.leader));
    if (h.leaderAddress) md.set(LEADER_ADDRESS_KEY, h.leaderAddress);
  }
  return md;
}

export function unavailable(reason: string, h: LeaderHint): ServiceError {
  const where =
    h.leader === 0
      ? `no leader yet (election in term ${h.term}); retry shortly`
      : `leader is member ${h.leader}${h.leaderAddress ? ` at ${h.leaderAddress}` : ''}; retry there or on any member`;
  return new ServiceError(grpc.status.UNAVAILABLE, `member ${h.self}: ${reason}; ${where}`, leaderMetadata(h));
}

/** Maps anything thrown on a request path to a ServiceError. */
export function toServiceError(err: unknown, hint: () => LeaderHint): ServiceError {
  if (err instanceof ServiceError) return err;
  if (err instanceof ProposalDroppedError) return unavailable(err.message, hint());
  if (err instanceof NodeStoppedError) return unavailable(`the member is not serving (${err.message})`, hint());
  if (err instanceof RequestTimeoutError) return unavailable(err.message, hint());
  if (err instanceof PeerError) {
    if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) return unavailable(`cannot reach the leader (${err.message})`, hint());
    return new ServiceError(err.code, err.message);
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return new ServiceError(grpc.status.INTERNAL, `internal error on member ${hint().self}: ${e.message}`);
}

/** A grpc-js status object for callbacks and stream errors. */
export function statusOf(e: ServiceError): Partial<grpc.StatusObject> {
  return { code: e.code, details: e.message, metadata: e.metadata ?? new grpc.Metadata() };
}
