/** Errors of the participant SDK and their gRPC statuses. */
import * as grpc from '@grpc/grpc-js';

export type ParticipantErrorCode = 'INVALID_ARGUMENT' | 'UNAVAILABLE' | 'FAILED_PRECONDITION' | 'INTERNAL';

export class ParticipantError extends Error {
  constructor(
    readonly code: ParticipantErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ParticipantError';
  }

  get grpcCode(): grpc.status {
    return grpc.status[this.code];
  }
}

/**
 * Whether an error from a statement the SDK itself ran means "the database cannot be used right now" rather
 * than "this statement is wrong": socket errors, pool/connect timeouts, SQLSTATE classes 08 (connection), 53
 * (resources), 57P (shutdown), and a few more. Same classification as the lock store's (libs/lock).
 */
export function isUnavailable(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return true; // "Connection terminated", timeouts, pool ended
  if (!/^[0-9A-Z]{5}$/.test(code)) return true; // ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ...
  return (
    code.startsWith('08') ||
    code.startsWith('53') ||
    code.startsWith('57P') ||
    code === '25006' || // read-only transaction: a standby
    code === '57014' || // statement timeout / cancel
    code === '3D000' || // database does not exist
    code === '28000' ||
    code === '28P01' // authentication
  );
}

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The gRPC error (for a unary callback) of any error raised while serving a call. */
export function toServiceError(e: unknown): Partial<grpc.ServiceError> {
  if (e instanceof ParticipantError) return { code: e.grpcCode, details: e.message, message: e.message };
  const m = messageOf(e);
  return { code: grpc.status.INTERNAL, details: m, message: m };
}
