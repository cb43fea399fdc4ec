/**
 * Errors of the Synod client. Every failed call rejects with a `SynodError`: the gRPC status `code` (a number,
 * `codeName` is its name), the server's message in `details`, and the trailing metadata when there was some.
 */
import * as grpc from '@grpc/grpc-js';

export const LEADER_ID_KEY = 'synod-leader-id';
export const LEADER_ADDRESS_KEY = 'synod-leader-address';

export class SynodError extends Error {
  override readonly name: string = 'SynodError';
  /** The status name, e.g. `NOT_FOUND`. */
  readonly codeName: string;

  constructor(
    /** The gRPC status code (`grpc.status`). */
    readonly code: grpc.status,
    /** The server's (or the client's) message. */
    readonly details: string,
    readonly metadata?: grpc.Metadata,
    /** The endpoint that answered, when known. */
    readonly endpoint?: string,
  ) {
    super(`${grpc.status[code] ?? `status ${code}`}: ${details}`);
    this.codeName = grpc.status[code] ?? String(code);
  }
}

/** The server cancelled a watch because the history it asked for is compacted: re-read, then watch again. */
export class WatchCompactedError extends SynodError {
  override readonly name = 'WatchCompactedError';
  constructor(
    readonly path: string,
    readonly requestedZxid: number,
    /** The oldest zxid a watch can start from now. */
    readonly compactZxid: number,
    endpoint?: string,
  ) {
    super(
      grpc.status.OUT_OF_RANGE,
      `watch on ${path}: the history after zxid ${requestedZxid} is compacted (oldest retained zxid ${compactZxid}); re-read the state and watch again from the zxid you read`,
      undefined,
      endpoint,
    );
  }
}

/** The session expired (the server said so, or the client could not renew it within its timeout). */
export class SessionExpiredError extends SynodError {
  override readonly name = 'SessionExpiredError';
  constructor(readonly sessionId: number, reason: string) {
    super(grpc.status.FAILED_PRECONDITION, `session ${sessionId} expired: ${reason}`);
  }
}

/** Statuses that are answers: retrying the same request gets the same answer. */
export const NON_RETRYABLE: ReadonlySet<grpc.status> = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.OUT_OF_RANGE,
  grpc.status.ABORTED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.UNIMPLEMENTED,
  grpc.status.CANCELLED,
]);

/** Retrying on another member (or the same one later) may succeed. */
export function isRetryable(code: grpc.status): boolean {
  return code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED;
}

export function toSynodError(err: unknown, endpoint?: string): SynodError {
  if (err instanceof SynodError) return err;
  const e = err as Partial<grpc.ServiceError> & Error;
  if (typeof e?.code === 'number') return new SynodError(e.code, e.details ?? e.message, e.metadata, endpoint);
  return new SynodError(grpc.status.UNKNOWN, e instanceof Error ? e.message : String(err), undefined, endpoint);
}

/** The leader's client address from an UNAVAILABLE answer: trailing metadata, else the message. */
export function leaderHint(err: SynodError): string | undefined {
  const v = err.metadata?.get(LEADER_ADDRESS_KEY)[0];
  if (typeof v === 'string' && v) return v;
  const m = /leader is member \d+ at (\S+?);/.exec(err.details);
  return m?.[1];
}
