/**
 * The lock service's vocabulary, shared by the gRPC service (apps/lock), every backend (libs/lock/src/backends)
 * and the client (libs/client). Semantics are written down in docs/locks.md; the short form:
 *
 * - A lock is identified by its `name`. Every Acquire puts one *entry* in the lock's FIFO queue. An entry has
 *   a lease (TTL, renewed by KeepAlive); an entry whose lease ends is removed, whether it held or waited.
 * - EXCLUSIVE with limit 1: a mutex. EXCLUSIVE with limit N > 1: a counting semaphore, at most N holders.
 *   SHARED: a reader; readers hold together until an earlier EXCLUSIVE entry (a writer) is in the queue.
 * - Every grant carries a fencing token: a number that only grows per lock name (a later grant of the same
 *   name always has a larger token than any earlier one), so a resource can refuse a stale holder.
 */

export type LockMode = 'EXCLUSIVE' | 'SHARED';

/** What a caller asks for. Validated by `validateAcquire` before any backend sees it. */
export interface AcquireSpec {
  /** 1..256 characters of [A-Za-z0-9._:/-], no leading '/', no '//' and no '..' segment. */
  name: string;
  mode: LockMode;
  /** Permits. 1 for a mutex or a reader; > 1 only with EXCLUSIVE (a counting semaphore). */
  limit: number;
  /** Lease TTL of the entry (waiting or holding), in ms. */
  ttlMs: number;
  /** How long to wait for the grant: 0 = try once (never queue), otherwise ms. */
  waitMs: number;
  /**
   * Opt-in re-entrancy: an Acquire whose owner already holds the lock (same name, same mode) is granted at
   * once with the same lease and token and the hold count + 1; each Release takes one hold off.
   */
  ownerId?: string;
  /**
   * A retried Acquire (same name and request id) finds its earlier entry, still queued or already granted,
   * and continues with it instead of queueing a second one.
   */
  requestId?: string;
}

/** A granted entry. */
export interface Grant {
  name: string;
  mode: LockMode;
  /** Monotonic per lock name. */
  token: number;
  /** Identifies the entry's lease: what KeepAlive and Release name. Opaque, backend-specific. */
  leaseId: string;
  ttlMs: number;
  /** 1 unless re-entered. */
  holdCount: number;
}

/** One entry of a lock's queue, as Describe shows it (in queue order, holders first). */
export interface EntryInfo {
  leaseId: string;
  mode: LockMode;
  limit: number;
  held: boolean;
  /** Present when held. */
  token?: number;
  ownerId?: string;
  holdCount: number;
}

export interface LockDescription {
  name: string;
  /** Holders then waiters, in queue order. Empty when nobody holds or waits. */
  entries: EntryInfo[];
}

export interface LockSummary {
  name: string;
  holders: number;
  waiters: number;
}

export type LostReason = 'LEASE_EXPIRED' | 'SESSION_LOST' | 'REVOKED' | 'BACKEND_UNAVAILABLE' | 'SERVICE_SHUTDOWN';

/**
 * Errors every backend and the service throw; apps/lock maps `code` to the gRPC status of the same name.
 * Messages say what to do.
 */
export type LockErrorCode = 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' | 'NOT_FOUND' | 'UNAVAILABLE' | 'DEADLINE_EXCEEDED' | 'UNIMPLEMENTED' | 'ABORTED';

export class LockError extends Error {
  constructor(
    readonly code: LockErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LockError';
  }
}
