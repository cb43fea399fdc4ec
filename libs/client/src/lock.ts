/**
 * Typed client of Synod's lock service (`synod.lock.v1.Lock`, docs/locks.md).
 *
 *   await using lock = await locks.acquire('orders/42', { ttlMs: 10_000, waitMs: 5_000 });
 *   await resource.write(data, { fencingToken: lock.token, signal: lock.signal });
 *
 * A handle keeps its lease alive (one KeepAlive stream per client, a renewal every TTL/3) and aborts
 * `handle.signal` when the lock is lost: `lost` pushed by the service, a renewal answered `lost`, the
 * Acquire stream broken (the service instance died: the lock must be presumed gone), or no successful renewal
 * for a whole TTL. Disposing the handle releases it (idempotent). Waiters keep their lease alive too, so a
 * paused client's queue entry dies with it. An Acquire that fails with UNAVAILABLE before its grant is retried
 * on the next endpoint with the same request id (it reuses its queue slot, no ghost waiter).
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadLockProto } from '@app/proto';
import { SynodError, toSynodError } from './errors.js';
import type { TlsOptions } from './client.js';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export type LockMode = 'EXCLUSIVE' | 'SHARED';

export interface LockClientOptions {
  /** Lock service addresses, host:port. */
  endpoints: string[];
  tls?: TlsOptions;
  /** Deadline of unary calls (Release, Describe, List), ms. Default 5000. */
  deadlineMs?: number;
}

export interface AcquireOptions {
  mode?: LockMode;
  /** Permits of a counting semaphore (EXCLUSIVE only). Default 1. */
  limit?: number;
  /** Lease TTL, ms. Default 10000. */
  ttlMs?: number;
  /** How long to wait; 0 = try once. Default 30000. */
  waitMs?: number;
  ownerId?: string;
  /** Default: a new UUID (retries of this call reuse it). */
  requestId?: string;
  /** Called with the queue position while waiting (1 = first waiter). */
  onQueued?: (position: number) => void;
  /** Cancels the wait (the waiter is removed). */
  signal?: AbortSignal;
}

export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';
}

export class LockLostError extends Error {
  override readonly name = 'LockLostError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

export interface LockEntry {
  leaseId: string;
  mode: LockMode;
  limit: number;
  held: boolean;
  token: number;
  ownerId: string;
  holdCount: number;
}

export class LockHandle implements AsyncDisposable {
  private readonly ac = new AbortController();
  private released = false;
  /** @internal */ lastRenewal = Date.now();

  constructor(
    private readonly owner: LockClient,
    /** @internal */ readonly endpoint: string,
    readonly name: string,
    readonly mode: LockMode,
    readonly token: number,
    readonly leaseId: string,
    readonly ttlMs: number,
    public holdCount: number,
    readonly backend: string,
    /** @internal */ readonly stream: grpc.ClientReadableStream<Msg>,
  ) {}

  /** Aborted (with a LockLostError as its reason) when the lock is lost. */
  get signal(): AbortSignal {
    return this.ac.signal;
  }

  get lost(): boolean {
    return this.ac.signal.aborted;
  }

  /** @internal */
  markLost(reason: string, message: string): void {
    if (this.ac.signal.aborted || this.released) return;
    this.ac.abort(new LockLostError(reason, message));
    this.owner.forget(this);
    this.stream.cancel();
  }

  /** Releases one hold; true when this call released it (false: already released, lost or superseded). */
  async release(): Promise<boolean> {
    if (this.released) return false;
    this.released = true;
    this.owner.forget(this);
    try {
      const r = await this.owner.unaryOn(this.endpoint, 'Release', { name: this.name, leaseId: this.leaseId, token: this.token });
      return r.released as boolean;
    } finally {
      this.stream.cancel();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release().catch(() => undefined);
  }
}

/** Lease ids are unique per lock name only. */
const leaseKey = (name: string, leaseId: string): string => `${name}\u0000${leaseId}`;

interface Tracked {
  name: string;
  leaseId: string;
  ttlMs: number;
  endpoint: string;
  handle?: LockHandle;
  nextAt: number;
}

export class LockClient implements AsyncDisposable {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly keepAlives = new Map<string, grpc.ClientDuplexStream<Msg, Msg>>();
  private readonly tracked = new Map<string, Tracked>();
  private readonly creds: grpc.ChannelCredentials;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  readonly deadlineMs: number;

  constructor(private readonly opts: LockClientOptions) {
    if (opts.endpoints.length === 0) throw new Error('LockClient: give at least one endpoint (host:port of a lock service instance)');
    this.deadlineMs = opts.deadlineMs ?? 5000;
    this.creds = opts.tls ? grpc.credentials.createSsl(Buffer.from(opts.tls.ca), opts.tls.key ? Buffer.from(opts.tls.key) : null, opts.tls.cert ? Buffer.from(opts.tls.cert) : null) : grpc.credentials.createInsecure();
  }

  private client(ep: string): grpc.Client {
    let c = this.clients.get(ep);
    if (!c) {
      const Ctor = loadLockProto().Lock;
      c = new Ctor(ep, this.creds, { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 });
      this.clients.set(ep, c);
    }
    return c;
  }

  /** @internal */
  unaryOn(ep: string, method: string, req: Msg): Promise<Msg> {
    const c = this.client(ep) as unknown as Record<string, (r: Msg, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => void>;
    return new Promise((res, rej) => c[method].call(this.client(ep), req, { deadline: Date.now() + this.deadlineMs }, (e, r) => (e ? rej(toSynodError(e, ep)) : res(r))));
  }

  private async unary(method: string, req: Msg): Promise<Msg> {
    let last: unknown;
    for (const ep of this.opts.endpoints) {
      try {
        return await this.unaryOn(ep, method, req);
      } catch (err) {
        last = err;
        if (!(err instanceof SynodError) || err.code !== grpc.status.UNAVAILABLE) throw err;
      }
    }
    throw last;
  }

  /** Acquires or throws LockTimeoutError (wait ran out), LockLostError (the waiter's lease ended) or SynodError. */
  async acquire(name: string, o: AcquireOptions = {}): Promise<LockHandle> {
    const h = await this.tryAcquire(name, { waitMs: 30_000, ...o });
    if (!h) throw new LockTimeoutError(`lock "${name}" was not granted within ${o.waitMs ?? 30_000} ms`);
    return h;
  }

  /** Like acquire, but resolves undefined when the lock was not granted in time (waitMs defaults to 0: try once). */
  async tryAcquire(name: string, o: AcquireOptions = {}): Promise<LockHandle | undefined> {
    if (this.closed) throw new Error('LockClient is closed');
    const req = {
      name,
      mode: o.mode ?? 'EXCLUSIVE',
      limit: o.limit ?? 1,
      ttlMs: o.ttlMs ?? 10_000,
      waitMs: o.waitMs ?? 0,
      ownerId: o.ownerId ?? '',
      requestId: o.requestId ?? randomUUID(),
    };
    const started = Date.now();
    let last: unknown;
    for (let attempt = 0; attempt < this.opts.endpoints.length * 3; attempt++) {
      const ep = this.opts.endpoints[attempt % this.opts.endpoints.length];
      const waitLeft = req.waitMs === 0 ? 0 : Math.max(1, req.waitMs - (Date.now() - started));
      try {
        return await this.acquireOn(ep, { ...req, waitMs: waitLeft }, o);
      } catch (err) {
        last = err;
        if (!(err instanceof SynodError) || err.code !== grpc.status.UNAVAILABLE) throw err;
        if (req.waitMs > 0 && Date.now() - started >= req.waitMs) return undefined;
        await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
      }
    }
    throw last;
  }

  private acquireOn(ep: string, req: Msg, o: AcquireOptions): Promise<LockHandle | undefined> {
    const c = this.client(ep) as unknown as { Acquire(r: Msg): grpc.ClientReadableStream<Msg> };
    const stream = c.Acquire.call(this.client(ep), req);
    return new Promise((resolve, reject) => {
      let settled = false;
      let handle: LockHandle | undefined;
      let waiterLease: string | undefined;
      const onAbort = (): void => {
        if (!settled) {
          settled = true;
          if (waiterLease) this.tracked.delete(leaseKey(req.name, waiterLease));
          stream.cancel();
          resolve(undefined);
        }
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => {
        settled = true;
        o.signal?.removeEventListener('abort', onAbort);
        if (waiterLease && !handle) this.tracked.delete(leaseKey(req.name, waiterLease));
      };
      stream.on('data', (ev: Msg) => {
        if (ev.queued) {
          waiterLease = ev.queued.leaseId as string;
          if (!this.tracked.has(leaseKey(req.name, waiterLease))) this.track({ name: req.name, leaseId: waiterLease, ttlMs: req.ttlMs, endpoint: ep, nextAt: Date.now() + req.ttlMs / 3 });
          o.onQueued?.(ev.queued.position as number);
        } else if (ev.granted && !settled) {
          const g = ev.granted;
          handle = new LockHandle(this, ep, g.name, g.mode, Number(g.token), g.leaseId, g.ttlMs, g.holdCount, g.backend, stream);
          const t = this.tracked.get(leaseKey(g.name, g.leaseId));
          this.track({ name: g.name, leaseId: g.leaseId, ttlMs: g.ttlMs, endpoint: ep, handle, nextAt: t?.nextAt ?? Date.now() + g.ttlMs / 3 });
          done();
          resolve(handle);
        } else if (ev.lost) {
          if (handle) handle.markLost(ev.lost.reason, ev.lost.message);
          else if (!settled) {
            done();
            reject(new LockLostError(ev.lost.reason, ev.lost.message));
          }
        } else if (ev.timedOut && !settled) {
          done();
          resolve(undefined);
        }
      });
      stream.on('error', (e: grpc.ServiceError) => {
        if (handle) handle.markLost('SERVICE_UNAVAILABLE', `the Acquire stream to ${ep} broke (${e.details || e.message}); the lock must be presumed lost`);
        else if (!settled) {
          done();
          if (e.code === grpc.status.CANCELLED && o.signal?.aborted) resolve(undefined);
          else reject(toSynodError(e, ep));
        }
      });
      stream.on('end', () => {
        if (!settled) {
          done();
          reject(new SynodError(grpc.status.UNAVAILABLE, `the Acquire stream to ${ep} ended without an answer`, undefined, ep));
        }
      });
    });
  }

  /** @internal */
  forget(h: LockHandle): void {
    this.tracked.delete(leaseKey(h.name, h.leaseId));
  }

  private track(t: Tracked): void {
    this.tracked.set(leaseKey(t.name, t.leaseId), t);
    if (!this.timer) {
      this.timer = setInterval(() => this.renewDue(), 50);
      this.timer.unref?.();
    }
  }

  private keepAlive(ep: string): grpc.ClientDuplexStream<Msg, Msg> {
    let s = this.keepAlives.get(ep);
    if (s) return s;
    const c = this.client(ep) as unknown as { KeepAlive(): grpc.ClientDuplexStream<Msg, Msg> };
    s = c.KeepAlive.call(this.client(ep));
    const stream = s;
    this.keepAlives.set(ep, stream);
    stream.on('data', (r: Msg) => {
      const t = this.tracked.get(leaseKey(r.name as string, r.leaseId as string));
      if (!t) return;
      if (r.lost) {
        t.handle?.markLost(r.reason || 'LEASE_EXPIRED', 'the service answered a renewal with lost');
        this.tracked.delete(leaseKey(t.name, t.leaseId));
      } else if (t.handle) t.handle.lastRenewal = Date.now();
    });
    const broken = (): void => {
      if (this.keepAlives.get(ep) === stream) this.keepAlives.delete(ep);
    };
    stream.on('error', broken);
    stream.on('end', broken);
    return stream;
  }

  private renewDue(): void {
    const now = Date.now();
    for (const t of this.tracked.values()) {
      if (t.handle && now - t.handle.lastRenewal > t.ttlMs) {
        t.handle.markLost('LEASE_EXPIRED', `no successful renewal for ${t.ttlMs} ms (the service may be unreachable)`);
        continue;
      }
      if (now < t.nextAt) continue;
      t.nextAt = now + t.ttlMs / 3;
      this.keepAlive(t.endpoint).write({ name: t.name, leaseId: t.leaseId, ttlMs: t.ttlMs });
    }
    if (this.tracked.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  async describe(name: string): Promise<{ name: string; backend: string; entries: LockEntry[] }> {
    const r = await this.unary('Describe', { name });
    return { name: r.name, backend: r.backend, entries: (r.entries as Msg[]).map((e) => ({ ...e, token: Number(e.token) }) as LockEntry) };
  }

  async list(prefix = '', limit = 1000): Promise<{ name: string; holders: number; waiters: number }[]> {
    return (await this.unary('List', { prefix, limit })).locks as { name: string; holders: number; waiters: number }[];
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const s of this.keepAlives.values()) s.end();
    for (const c of this.clients.values()) c.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
