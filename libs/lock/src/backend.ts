/**
 * The two contracts a lock backend can implement.
 *
 * 1. {@link LockBackend}: what the lock service (apps/lock) calls. RedLock implements it directly (it has no
 *    queue: majority voting on independent servers).
 * 2. {@link QueueStore}: a small set of storage primitives — an ordered queue of entries per lock name with
 *    leases, and a way to wait for an entry to go. `QueueLockBackend` (queue.ts) builds the whole lock
 *    algorithm (FIFO, read/write, counting, re-entrancy, retried requests, no herd effect) once on top of any
 *    QueueStore, so consensus, etcd, Redis and PostgreSQL share one tested algorithm and differ only in how
 *    they store entries. This is ZooKeeper's lock recipe (ephemeral sequential nodes, each waiter watching
 *    only the entry it waits for) stated over an abstract store.
 */
import type { AcquireSpec, Grant, LockDescription, LockMode, LockSummary, LostReason } from './types.js';

export type BackendKind = 'consensus' | 'etcd' | 'redis' | 'redlock' | 'postgres';

export interface AcquireContext {
  /** Aborted when the wait times out or the caller goes away: the backend removes the entry it queued. */
  signal: AbortSignal;
  /** Called once the entry is in the queue and not granted at once (position 1 = first waiter), and again when the position changes. */
  onQueued?(position: number, leaseId: string): void;
  /** A waiter was woken by a change of an entry it watched (herd-effect accounting). */
  onWake?(): void;
}

export type AcquireResult =
  | { granted: Grant; timedOut?: undefined; lost?: undefined }
  /** Not granted: `waitMs` was 0 and the lock is taken, or the wait timed out (signal aborted). */
  | { granted?: undefined; timedOut: true; lost?: undefined }
  /** The entry's lease ended while it waited (never granted). */
  | { granted?: undefined; timedOut?: undefined; lost: LostReason };

export interface LockBackend {
  readonly kind: BackendKind;
  /** Whether SHARED and EXCLUSIVE-with-limit>1 are supported (all but redlock). */
  readonly supportsSharedAndCounting: boolean;
  /** Connects / prepares (creates tables, ...). Throws LockError('UNAVAILABLE') when the store cannot be reached. */
  start(): Promise<void>;
  acquire(spec: AcquireSpec, ctx: AcquireContext): Promise<AcquireResult>;
  /** Extends the entry's lease to `ttlMs` from now. false when the entry is gone (the lease ended: lost). */
  renew(name: string, leaseId: string, ttlMs: number): Promise<boolean>;
  /**
   * Idempotent, fenced release: removes one hold of the entry `leaseId` only if it is still the entry that
   * was granted with `token`. Returns the hold count left (0 = the entry is gone), or -1 when there was
   * nothing to release (already released, expired, or a different grant).
   */
  release(name: string, leaseId: string, token: number): Promise<number>;
  /** Resolves with a reason when the backend loses the granted entry (deleted, lease ended, session lost); never resolves otherwise until `signal` aborts (then resolves undefined). */
  watchLoss(grant: Grant, signal: AbortSignal): Promise<LostReason | undefined>;
  describe(name: string): Promise<LockDescription>;
  /** Locks with at least one entry whose name starts with `prefix`, by name, at most `limit`. */
  list(prefix: string, limit: number): Promise<LockSummary[]>;
  close(): Promise<void>;
}

/** One entry of a lock queue as a {@link QueueStore} keeps it. Its `key` is the lease id clients see. */
export interface QueueEntry {
  /** Unique within the lock name, stable for the entry's life (the store's id: node name, key, row id). */
  key: string;
  /**
   * Creation order, strictly increasing per lock name across the store's whole life (a zxid, an etcd create
   * revision, a Redis INCR, a PostgreSQL sequence): orders the queue and is the fencing token of the grant.
   */
  order: number;
  mode: LockMode;
  limit: number;
  ownerId?: string;
  requestId?: string;
  /** Re-entrant holds (1 when not re-entered). */
  holdCount: number;
}

export interface EnqueueSpec {
  mode: LockMode;
  limit: number;
  ttlMs: number;
  ownerId?: string;
  requestId?: string;
}

/**
 * Storage primitives for {@link QueueLockBackend}. Every method may throw LockError('UNAVAILABLE', ...) when
 * the store cannot be reached. Contract (tested for every store by libs/lock/test/conformance.ts):
 */
export interface QueueStore {
  readonly kind: BackendKind;
  start(): Promise<void>;
  /** Appends an entry with a lease of `ttlMs` (the store deletes it when the lease ends unrenewed). Atomic: the entry and its order appear together. */
  enqueue(name: string, spec: EnqueueSpec): Promise<QueueEntry>;
  /** The live entries of `name` in increasing `order` (entries whose lease ended are not returned). */
  entries(name: string): Promise<QueueEntry[]>;
  /** One live entry, or undefined. */
  get(name: string, key: string): Promise<QueueEntry | undefined>;
  /**
   * Resolves when any entry in `keys` of lock `name` is removed (released, expired) or signalled after the
   * call began; resolves at once if one of them is already gone. Resolves (without error) when `signal`
   * aborts. A lease that ends without an explicit delete must also resolve it, at the latest shortly after
   * the lease's end (a timer at the known expiry is fine; a fixed-interval poll only as a bounded fallback).
   */
  watch(name: string, keys: string[], signal: AbortSignal): Promise<void>;
  /** Wakes the watchers of entry `key` without changing it (used when a semaphore entry becomes a holder). */
  notify(name: string, key: string): Promise<void>;
  /** Deletes the entry; idempotent (false when it was not there). Its watchers wake. */
  remove(name: string, key: string): Promise<boolean>;
  /** Extends the lease of the entry to `ttlMs` from now; false when the entry is gone. */
  renew(name: string, key: string, ttlMs: number): Promise<boolean>;
  /** Atomically adds `delta` to the entry's hold count; the new count, or undefined when the entry is gone. */
  addHolds(name: string, key: string, delta: number): Promise<number | undefined>;
  /** Lock names with at least one live entry starting with `prefix`, sorted, at most `limit`. */
  names(prefix: string, limit: number): Promise<string[]>;
  close(): Promise<void>;
}
