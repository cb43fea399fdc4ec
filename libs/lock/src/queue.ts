/**
 * The lock algorithm, written once over any {@link QueueStore}: ZooKeeper's lock recipes (Curator's
 * InterProcessMutex, InterProcessReadWriteLock, a FIFO semaphore) stated over an abstract ordered queue.
 *
 * Every Acquire appends one entry. Whether an entry holds is a pure function of the queue (`decide`):
 * - EXCLUSIVE, limit 1 (mutex / writer): holds when it is first. Waits on its immediate predecessor only.
 * - SHARED (reader): holds when no non-SHARED entry is before it. Waits on the nearest earlier writer only.
 * - EXCLUSIVE, limit L > 1 (semaphore): holds when it is among the first L and every entry before it is a
 *   semaphore entry with the same L. The first waiter watches the L holders; every later waiter watches its
 *   predecessor, and an entry that becomes a holder notifies its own watchers so the next waiter moves up.
 * - Write→read downgrade: a SHARED entry is not blocked by a granted EXCLUSIVE entry of the same owner id.
 * - A queue that mixes shapes (a reader behind a semaphore, two limits) degrades safely: an entry then holds
 *   only when it is first. New entries that would mix shapes are refused (FAILED_PRECONDITION); a mix can only
 *   arise from racing first acquires.
 *
 * So one release wakes exactly one waiter (mutex), or exactly the readers that may now proceed (read/write),
 * and a woken waiter always re-reads the queue: it re-checks that its own entry still exists (a waiter whose
 * lease ended is never granted) and waits again on whoever is now before it if its predecessor merely left.
 */
import type { AcquireContext, AcquireResult, EnqueueSpec, LockBackend, QueueEntry, QueueStore } from './backend.js';
import { LockError } from './types.js';
import type { AcquireSpec, EntryInfo, Grant, LockDescription, LockSummary, LostReason } from './types.js';

export type Decision =
  | { granted: true }
  /** `watch`: the keys whose removal (or notification) may change the decision; `position`: 1 = first waiter. */
  | { granted: false; watch: string[]; position: number };

interface Shape {
  mode: EnqueueSpec['mode'];
  limit: number;
  ownerId?: string;
}

const isSemaphore = (e: Shape): boolean => e.mode === 'EXCLUSIVE' && e.limit > 1;

/** Which entries of a queue hold, in one pass (O(n)). Pure. */
export function holders(entries: readonly (Shape & { key: string })[]): boolean[] {
  const out: boolean[] = [];
  let nonShared = 0; // non-SHARED entries seen so far
  let uniformSem = true; // every entry so far is a semaphore entry with the limit of entry 0
  const first = entries[0];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    let held: boolean;
    if (i === 0) held = true;
    else if (e.mode === 'SHARED') {
      // Write→read downgrade: the owner's own granted write lock (necessarily entry 0) does not block its read lock.
      const ownWriterFirst = first.mode !== 'SHARED' && !isSemaphore(first) && e.ownerId !== undefined && first.ownerId === e.ownerId;
      held = nonShared === 0 || (nonShared === 1 && ownWriterFirst);
    } else if (isSemaphore(e)) held = uniformSem && isSemaphore(first) && first.limit === e.limit && i < e.limit;
    else held = false;
    out.push(held);
    if (e.mode !== 'SHARED') nonShared++;
    if (!isSemaphore(e) || !isSemaphore(first) || e.limit !== first.limit) uniformSem = false;
  }
  return out;
}

/** Whether entry `idx` of `entries` (in queue order) holds, and if not what it waits on. Pure, O(n). */
export function decide(entries: readonly (Shape & { key: string })[], idx: number): Decision {
  const e = entries[idx];
  if (e === undefined) throw new Error(`decide: no entry at ${idx}`);
  const held = holders(entries.slice(0, idx + 1));
  if (held[idx]) return { granted: true };
  let position = 1;
  for (let i = 0; i < idx; i++) if (!held[i]) position++;
  if (e.mode === 'SHARED') {
    // the nearest earlier entry that blocks a reader: a writer (or semaphore entry) other than the owner's own held writer
    for (let i = idx - 1; i >= 0; i--) {
      const w = entries[i];
      if (w.mode === 'SHARED') continue;
      if (i === 0 && held[0] && !isSemaphore(w) && e.ownerId !== undefined && w.ownerId === e.ownerId) continue;
      return { granted: false, watch: [w.key], position };
    }
  }
  if (isSemaphore(e) && idx >= e.limit) {
    let uniform = true;
    for (let i = 0; i < idx; i++) if (!isSemaphore(entries[i]) || entries[i].limit !== e.limit) uniform = false;
    if (uniform) {
      const watch = idx === e.limit ? entries.slice(0, e.limit).map((x) => x.key) : [entries[idx - 1].key];
      return { granted: false, watch, position: idx - e.limit + 1 };
    }
  }
  return { granted: false, watch: [entries[idx - 1].key], position };
}

/** Why a new entry of `spec`'s shape may not join this queue, or undefined. */
export function shapeConflict(entries: readonly QueueEntry[], name: string, spec: Shape): string | undefined {
  for (const e of entries) {
    if (isSemaphore(e) && isSemaphore(spec) && e.limit !== spec.limit)
      return `lock "${name}" is a semaphore with limit ${e.limit}; this request asks for limit ${spec.limit} (all holders and waiters of one lock must use the same limit)`;
    if (isSemaphore(e) !== isSemaphore(spec))
      return isSemaphore(e)
        ? `lock "${name}" is a counting semaphore (limit ${e.limit}); it cannot be taken with mode ${spec.mode} and limit ${spec.limit}`
        : `lock "${name}" is in use as a ${e.mode === 'SHARED' ? 'read/write lock' : 'mutex'} (limit 1); it cannot be taken as a semaphore with limit ${spec.limit}`;
  }
  return undefined;
}

function toGrant(name: string, e: QueueEntry, ttlMs: number): Grant {
  return { name, mode: e.mode, token: e.order, leaseId: e.key, ttlMs, holdCount: e.holdCount };
}

function aborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

export class QueueLockBackend implements LockBackend {
  readonly supportsSharedAndCounting = true;

  constructor(readonly store: QueueStore) {}

  get kind(): QueueStore['kind'] {
    return this.store.kind;
  }

  start(): Promise<void> {
    return this.store.start();
  }

  close(): Promise<void> {
    return this.store.close();
  }

  async acquire(spec: AcquireSpec, ctx: AcquireContext): Promise<AcquireResult> {
    const { name } = spec;
    let entries = await this.store.entries(name);
    let mine: QueueEntry | undefined = spec.requestId !== undefined ? entries.find((e) => e.requestId === spec.requestId) : undefined;
    if (mine !== undefined && (mine.mode !== spec.mode || mine.limit !== spec.limit))
      throw new LockError('FAILED_PRECONDITION', `request id "${spec.requestId}" was already used for lock "${name}" with mode ${mine.mode} and limit ${mine.limit}; use a new request id for a different request`);
    if (mine === undefined) {
      const conflict = shapeConflict(entries, name, spec);
      if (conflict !== undefined) throw new LockError('FAILED_PRECONDITION', conflict);
      if (spec.ownerId !== undefined) {
        // Re-entrancy: the owner already holds this lock in the same mode.
        const held = holders(entries);
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i];
          if (e.ownerId !== spec.ownerId) continue;
          if (!held[i]) continue;
          if (e.mode === 'EXCLUSIVE' && spec.mode === 'SHARED') continue; // downgrade: a new reader entry, granted by decide()
          if (e.mode !== spec.mode)
            throw new LockError(
              'FAILED_PRECONDITION',
              `owner "${spec.ownerId}" holds lock "${name}" SHARED: upgrading a read lock to a write lock is refused (two readers upgrading at once would deadlock); release the read lock, then acquire EXCLUSIVE`,
            );
          const holds = await this.store.addHolds(name, e.key, 1);
          if (holds !== undefined) return { granted: { ...toGrant(name, e, spec.ttlMs), holdCount: holds } };
        }
      }
      if (spec.waitMs === 0) {
        // Try once: do not queue behind a holder at all.
        const probe = [...entries, { key: '\u0000probe', mode: spec.mode, limit: spec.limit, ownerId: spec.ownerId }];
        if (!decide(probe, probe.length - 1).granted) return { timedOut: true };
      }
      mine = await this.store.enqueue(name, { mode: spec.mode, limit: spec.limit, ttlMs: spec.ttlMs, ownerId: spec.ownerId, requestId: spec.requestId });
    }
    let lastPosition = 0;
    let woken = false;
    for (;;) {
      entries = await this.store.entries(name);
      const idx = entries.findIndex((e) => e.key === mine.key);
      if (idx < 0) return { lost: 'LEASE_EXPIRED' };
      const d = decide(entries, idx);
      if (d.granted) {
        if (aborted(ctx.signal)) {
          await this.store.remove(name, mine.key);
          return { timedOut: true };
        }
        // A semaphore holder lets the waiter behind it move up (it may be watching this entry).
        if (isSemaphore(mine) && idx < entries.length - 1 && woken) await this.store.notify(name, mine.key);
        return { granted: toGrant(name, entries[idx], spec.ttlMs) };
      }
      if (spec.waitMs === 0 || aborted(ctx.signal)) {
        await this.store.remove(name, mine.key);
        return { timedOut: true };
      }
      if (d.position !== lastPosition) {
        lastPosition = d.position;
        ctx.onQueued?.(d.position, mine.key);
      }
      await this.store.watch(name, d.watch, ctx.signal);
      if (aborted(ctx.signal)) {
        await this.store.remove(name, mine.key);
        return { timedOut: true };
      }
      woken = true;
      ctx.onWake?.();
    }
  }

  renew(name: string, leaseId: string, ttlMs: number): Promise<boolean> {
    return this.store.renew(name, leaseId, ttlMs);
  }

  async release(name: string, leaseId: string, token: number): Promise<number> {
    const e = await this.store.get(name, leaseId);
    if (e === undefined || e.order !== token) return -1;
    // The common case (not re-entered) deletes at once: decrementing first would change the entry and wake its
    // watcher for nothing (a second wake-up per release). A re-entrant Acquire of the same owner racing with its
    // own last Release may then get a grant whose entry is already gone; its loss watch reports it at once.
    if (e.holdCount <= 1) return (await this.store.remove(name, leaseId)) ? 0 : -1;
    const left = await this.store.addHolds(name, leaseId, -1);
    if (left === undefined) return -1;
    if (left > 0) return left;
    return (await this.store.remove(name, leaseId)) ? 0 : -1;
  }

  async watchLoss(grant: Grant, signal: AbortSignal): Promise<LostReason | undefined> {
    for (;;) {
      await this.store.watch(grant.name, [grant.leaseId], signal);
      if (signal.aborted) return undefined;
      const e = await this.store.get(grant.name, grant.leaseId);
      if (signal.aborted) return undefined;
      if (e === undefined || e.order !== grant.token) return 'LEASE_EXPIRED';
    }
  }

  async describe(name: string): Promise<LockDescription> {
    const entries = await this.store.entries(name);
    const held = holders(entries);
    return { name, entries: entries.map((e, i): EntryInfo => describeEntry(e, held[i])) };
  }

  async list(prefix: string, limit: number): Promise<LockSummary[]> {
    const names = await this.store.names(prefix, limit);
    const out: LockSummary[] = [];
    for (const name of names) {
      const entries = await this.store.entries(name);
      if (entries.length === 0) continue;
      const n = holders(entries).filter(Boolean).length;
      out.push({ name, holders: n, waiters: entries.length - n });
    }
    return out;
  }
}

function describeEntry(e: QueueEntry, held: boolean): EntryInfo {
  return { leaseId: e.key, mode: e.mode, limit: e.limit, held, token: held ? e.order : undefined, ownerId: e.ownerId, holdCount: e.holdCount };
}
