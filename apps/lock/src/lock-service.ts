/**
 * The gRPC `synod.lock.v1.Lock` service over one LockBackend, and the lease bookkeeping that makes loss
 * visible to the holder before anyone else can be granted.
 *
 * Leases. Every entry (waiting or held) that this instance queued has a local deadline = (when the request or
 * the last successful renewal *started*) + TTL. The backend's own expiry of that entry is measured from when
 * the backend *received* the enqueue / renewal, which is later, so the local deadline always comes first. At
 * the local deadline: a waiter's wait is aborted (its entry removed, `lost` sent: a waiter whose lease died is
 * never granted); a holder is sent `lost` first, and only then is its entry removed, which is what lets the
 * next waiter in. A backend that drops a held entry on its own (session expiry, lease revoked by an operator)
 * is noticed through `watchLoss` and reported as `lost` too.
 *
 * Streams. Acquire's stream carries queued → granted → (lost) and ends after Release; cancelling it while
 * waiting removes the waiter, cancelling it while holding does not release (a retried Acquire with the same
 * request id re-attaches to the grant through the backend). KeepAlive renews any lease by id.
 */
import * as grpc from '@grpc/grpc-js';
import { LockError, validateAcquire, validateLease, validateListLimit, validateName, validateTtl } from '@app/lock';
import type { AcquireSpec, Grant, LockBackend, LostReason } from '@app/lock';
import { LockMetrics } from './metrics.js';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  debug(msg: string): void;
}

interface Lease {
  name: string;
  leaseId: string;
  ttlMs: number;
  deadline: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  phase: 'waiting' | 'held' | 'gone';
  grant?: Grant;
  grantedAt?: number;
  /** Acquire streams attached to this lease (a retried Acquire adds one). */
  streams: Set<grpc.ServerWritableStream<Msg, Msg>>;
  /** Aborts the backend wait of a waiting lease. */
  waitAbort?: AbortController;
  /** Stops the loss watch of a held lease. */
  lossAbort?: AbortController;
}

export function statusOf(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof LockError) return { code: grpc.status[err.code], details: err.message };
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof e?.code === 'number' && typeof e.details === 'string') return { code: e.code, details: e.details };
  return { code: grpc.status.INTERNAL, details: `lock service: ${err instanceof Error ? err.message : String(err)}` };
}

const toMode = (m: unknown): string => (m === 'SHARED' ? 'SHARED' : 'EXCLUSIVE');

/** Lease ids are unique per lock name only (a consensus entry is `x-1-0000000000` in every lock). */
const leaseKey = (name: string, leaseId: string): string => `${name}\u0000${leaseId}`;

export class LockService {
  private readonly leases = new Map<string, Lease>();
  private closing = false;

  constructor(
    readonly backend: LockBackend,
    readonly metrics: LockMetrics,
    private readonly log: Logger,
  ) {}

  private b(): { backend: string } {
    return { backend: this.backend.kind };
  }

  /** Leases this instance tracks (waiting and held). */
  get trackedLeases(): number {
    return this.leases.size;
  }

  implementation(): grpc.UntypedServiceImplementation {
    return {
      Acquire: (call: grpc.ServerWritableStream<Msg, Msg>) => void this.acquire(call),
      KeepAlive: (call: grpc.ServerDuplexStream<Msg, Msg>) => this.keepAlive(call),
      Release: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => void this.unary(cb, () => this.release(call.request)),
      Describe: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => void this.unary(cb, () => this.describe(call.request)),
      List: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => void this.unary(cb, () => this.list(call.request)),
    };
  }

  private async unary(cb: grpc.sendUnaryData<Msg>, f: () => Promise<Msg>): Promise<void> {
    try {
      cb(null, await f());
    } catch (err) {
      cb(statusOf(err) as grpc.ServiceError);
    }
  }

  // ---- leases ---------------------------------------------------------------------------------------------

  private arm(lease: Lease, deadline: number): void {
    lease.deadline = deadline;
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = setTimeout(() => this.expire(lease), Math.max(0, deadline - Date.now()));
    lease.timer.unref?.();
  }

  private track(name: string, leaseId: string, ttlMs: number, deadline: number, phase: Lease['phase']): Lease {
    let lease = this.leases.get(leaseKey(name, leaseId));
    if (!lease) {
      lease = { name, leaseId, ttlMs, deadline, timer: undefined, phase, streams: new Set() };
      this.leases.set(leaseKey(name, leaseId), lease);
      this.arm(lease, deadline);
    }
    return lease;
  }

  private forget(lease: Lease): void {
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = undefined;
    lease.lossAbort?.abort();
    if (lease.phase === 'held') {
      this.metrics.held.dec(this.b());
      if (lease.grantedAt !== undefined) this.metrics.holdDuration.observe(this.b(), (Date.now() - lease.grantedAt) / 1000);
    }
    lease.phase = 'gone';
    const k = leaseKey(lease.name, lease.leaseId);
    if (this.leases.get(k) === lease) this.leases.delete(k);
  }

  /** The local deadline passed without a renewal. */
  private expire(lease: Lease): void {
    if (lease.phase === 'gone') return;
    this.metrics.expired.inc(this.b());
    if (lease.phase === 'waiting') {
      this.log.debug(`lease ${lease.leaseId} of waiter on "${lease.name}" ended unrenewed`);
      lease.waitAbort?.abort('expired');
      return;
    }
    void this.lose(lease, 'LEASE_EXPIRED', `the lease was not renewed within its TTL of ${lease.ttlMs} ms`, true);
  }

  /** Tells the holder first, then (if `remove`) deletes its entry so the next waiter can go. */
  private async lose(lease: Lease, reason: LostReason, message: string, remove: boolean): Promise<void> {
    if (lease.phase !== 'held') return;
    const grant = lease.grant!;
    this.metrics.lost.inc({ ...this.b(), reason });
    this.log.info(`lock "${lease.name}" token ${grant.token} lost: ${reason} (${message})`);
    for (const s of lease.streams) {
      s.write({ lost: { reason, message } });
      s.end();
    }
    lease.streams.clear();
    this.forget(lease);
    if (remove) {
      try {
        await this.backend.release(grant.name, grant.leaseId, grant.token);
      } catch (err) {
        this.log.warn(`removing the expired entry of "${grant.name}" failed (the backend's own expiry will remove it): ${(err as Error).message}`);
      }
    }
  }

  private held(lease: Lease, grant: Grant): void {
    if (lease.phase !== 'held') {
      lease.phase = 'held';
      lease.grantedAt = Date.now();
      this.metrics.held.inc(this.b());
    }
    lease.grant = grant;
    if (!lease.lossAbort) {
      const ac = new AbortController();
      lease.lossAbort = ac;
      this.backend
        .watchLoss(grant, ac.signal)
        .then((reason) => {
          if (reason && lease.phase === 'held' && lease.grant?.token === grant.token) void this.lose(lease, reason, 'the backend no longer has the entry (its lease or session ended, or it was deleted)', false);
        })
        .catch((err: unknown) => {
          if (ac.signal.aborted || lease.phase !== 'held') return;
          void this.lose(lease, 'BACKEND_UNAVAILABLE', `watching the lock failed: ${(err as Error).message}`, false);
        });
    }
  }

  // ---- Acquire --------------------------------------------------------------------------------------------

  private async acquire(call: grpc.ServerWritableStream<Msg, Msg>): Promise<void> {
    const started = Date.now();
    let spec: AcquireSpec;
    try {
      if (this.closing) throw new LockError('UNAVAILABLE', 'the lock service is shutting down; retry on another instance');
      const r = call.request;
      spec = validateAcquire(
        { name: r.name, mode: r.mode, limit: r.limit, ttlMs: r.ttlMs, waitMs: r.waitMs, ownerId: r.ownerId, requestId: r.requestId },
        this.backend.supportsSharedAndCounting,
        `the ${this.backend.kind} backend`,
      );
    } catch (err) {
      call.emit('error', statusOf(err));
      return;
    }
    const ac = new AbortController();
    let outcome: 'pending' | 'done' = 'pending';
    let waitedOnce = false;
    let myLease: Lease | undefined;
    const waitTimer = spec.waitMs > 0 ? setTimeout(() => ac.abort('timeout'), spec.waitMs) : undefined;
    call.on('cancelled', () => {
      if (outcome === 'pending') ac.abort('cancelled');
      if (myLease) myLease.streams.delete(call);
    });
    this.metrics.waiters.inc(this.b());
    let counted = true;
    const uncount = (): void => {
      if (counted) this.metrics.waiters.dec(this.b());
      counted = false;
    };
    try {
      const res = await this.backend.acquire(spec, {
        signal: ac.signal,
        onQueued: (position, leaseId) => {
          if (!waitedOnce) this.metrics.contended.inc(this.b());
          waitedOnce = true;
          const lease = this.track(spec.name, leaseId, spec.ttlMs, started + spec.ttlMs, 'waiting');
          lease.waitAbort ??= ac;
          lease.streams.add(call);
          myLease = lease;
          call.write({ queued: { position, leaseId } });
        },
        onWake: () => this.metrics.wake(),
      });
      outcome = 'done';
      uncount();
      if (res.granted) {
        const g = res.granted;
        let lease = this.leases.get(leaseKey(g.name, g.leaseId));
        if (!lease) {
          // Fresh entry: its backend lease began after `started`. An entry found by request id may be older:
          // renew it first so that the local deadline is again the earlier one.
          let deadline = started + spec.ttlMs;
          if (spec.requestId !== undefined || g.holdCount > 1) {
            const t = Date.now();
            if (!(await this.backend.renew(g.name, g.leaseId, spec.ttlMs))) throw new LockError('ABORTED', `the grant of "${g.name}" ended while it was being attached; acquire again`);
            deadline = t + spec.ttlMs;
          }
          lease = this.track(g.name, g.leaseId, spec.ttlMs, deadline, 'held');
        }
        myLease = lease;
        const reentered = lease.phase === 'held' && g.holdCount > 1;
        this.held(lease, g);
        lease.waitAbort = undefined;
        lease.streams.add(call);
        this.metrics.acquisitions.inc({ ...this.b(), result: reentered ? 'reentered' : 'granted' });
        this.metrics.waitDuration.observe(this.b(), (Date.now() - started) / 1000);
        call.write({ granted: { name: g.name, mode: g.mode, token: g.token, leaseId: g.leaseId, ttlMs: lease.ttlMs, holdCount: g.holdCount, backend: this.backend.kind } });
        if (call.cancelled) lease.streams.delete(call);
        return; // the stream stays open until release or loss
      }
      if (myLease && myLease.phase === 'waiting') this.forget(myLease);
      if (res.timedOut && ac.signal.reason === 'expired') {
        this.metrics.acquisitions.inc({ ...this.b(), result: 'lost' });
        call.write({ lost: { reason: 'LEASE_EXPIRED', message: `the waiter's lease was not renewed within its TTL of ${spec.ttlMs} ms; it was removed from the queue` } });
      } else if (res.timedOut && ac.signal.reason === 'shutdown') {
        this.metrics.acquisitions.inc({ ...this.b(), result: 'cancelled' });
        call.write({ lost: { reason: 'SERVICE_SHUTDOWN', message: 'the lock service instance is shutting down; acquire again through another instance' } });
      } else if (res.timedOut) {
        const cancelled = ac.signal.reason === 'cancelled';
        this.metrics.acquisitions.inc({ ...this.b(), result: cancelled ? 'cancelled' : 'timed_out' });
        if (!cancelled) call.write({ timedOut: { waitedMs: Date.now() - started } });
      } else {
        this.metrics.acquisitions.inc({ ...this.b(), result: 'lost' });
        call.write({ lost: { reason: res.lost, message: 'the waiter\'s entry disappeared before it was granted (its lease or session ended); it was never granted' } });
      }
      call.end();
    } catch (err) {
      outcome = 'done';
      uncount();
      if (myLease && myLease.phase === 'waiting') this.forget(myLease);
      this.metrics.acquisitions.inc({ ...this.b(), result: 'error' });
      call.emit('error', statusOf(err));
    } finally {
      if (waitTimer) clearTimeout(waitTimer);
    }
  }

  // ---- KeepAlive ------------------------------------------------------------------------------------------

  private keepAlive(call: grpc.ServerDuplexStream<Msg, Msg>): void {
    let chain = Promise.resolve();
    call.on('data', (req: Msg) => {
      chain = chain.then(async () => {
        try {
          const name = validateName(req.name);
          const leaseId = typeof req.leaseId === 'string' && req.leaseId !== '' ? req.leaseId : (() => {
            throw new LockError('INVALID_ARGUMENT', 'lease_id is required: the lease id from the Queued or Granted event');
          })();
          const lease = this.leases.get(leaseKey(name, leaseId));
          const ttlMs = validateTtl(req.ttlMs) || lease?.ttlMs || 10_000;
          if (lease && lease.phase === 'gone') {
            call.write({ name, leaseId, lost: true, reason: 'LEASE_EXPIRED', ttlMs: 0 });
            return;
          }
          const t = Date.now();
          const ok = await this.backend.renew(name, leaseId, ttlMs);
          if (!ok) {
            call.write({ name, leaseId, lost: true, reason: 'LEASE_EXPIRED', ttlMs: 0 });
            if (lease?.phase === 'held') void this.lose(lease, 'LEASE_EXPIRED', 'the backend no longer has the entry', false);
            return;
          }
          if (lease && lease.phase !== 'gone') {
            lease.ttlMs = ttlMs;
            this.arm(lease, t + ttlMs);
          }
          call.write({ name, leaseId, ttlMs, lost: false, reason: '' });
        } catch (err) {
          call.emit('error', statusOf(err));
        }
      });
    });
    call.on('end', () => void chain.then(() => call.end()));
    call.on('error', () => undefined);
  }

  // ---- Release, Describe, List ----------------------------------------------------------------------------

  private async release(req: Msg): Promise<Msg> {
    const name = validateName(req.name);
    const { leaseId, token } = validateLease(req.leaseId, req.token);
    const left = await this.backend.release(name, leaseId, token);
    if (left < 0) return { released: false, holdCount: 0 };
    this.metrics.release();
    const lease = this.leases.get(leaseKey(name, leaseId));
    if (lease && lease.grant?.token === token) {
      if (left === 0) {
        for (const s of lease.streams) s.end();
        lease.streams.clear();
        this.forget(lease);
      } else lease.grant = { ...lease.grant, holdCount: left };
    }
    return { released: true, holdCount: left };
  }

  private async describe(req: Msg): Promise<Msg> {
    const name = validateName(req.name);
    const d = await this.backend.describe(name);
    return {
      name,
      backend: this.backend.kind,
      entries: d.entries.map((e) => ({ leaseId: e.leaseId, mode: toMode(e.mode), limit: e.limit, held: e.held, token: e.token ?? 0, ownerId: e.ownerId ?? '', holdCount: e.holdCount })),
    };
  }

  private async list(req: Msg): Promise<Msg> {
    const prefix = typeof req.prefix === 'string' ? req.prefix : '';
    if (prefix.length > 256) throw new LockError('INVALID_ARGUMENT', `prefix is ${prefix.length} characters long; the limit is 256`);
    const limit = validateListLimit(req.limit);
    return { locks: await this.backend.list(prefix, limit) };
  }

  // ---- shutdown -------------------------------------------------------------------------------------------

  /**
   * Tells every holder and waiter attached here that the service is going away (`lost` SERVICE_SHUTDOWN), then
   * releases the held entries (bounded by `timeoutMs`) so that their next waiters need not wait for the TTL.
   */
  async shutdown(timeoutMs = 2000): Promise<void> {
    this.closing = true;
    const releases: Promise<unknown>[] = [];
    for (const lease of [...this.leases.values()]) {
      if (lease.phase === 'held') {
        this.metrics.lost.inc({ ...this.b(), reason: 'SERVICE_SHUTDOWN' });
        for (const s of lease.streams) {
          s.write({ lost: { reason: 'SERVICE_SHUTDOWN', message: 'the lock service instance is shutting down; the lock is released' } });
          s.end();
        }
        const g = lease.grant!;
        releases.push(this.backend.release(g.name, g.leaseId, g.token).catch(() => undefined));
      } else lease.waitAbort?.abort('shutdown');
      lease.streams.clear();
      this.forget(lease);
    }
    let t: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.allSettled(releases), new Promise((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
  }
}
