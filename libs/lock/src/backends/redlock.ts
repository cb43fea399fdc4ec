/**
 * RedLock (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/) over N >= 3 independent Redis
 * servers (no replication between them), implemented directly against the {@link LockBackend} contract.
 * See docs/locks/redis.md for the operator's view.
 *
 * Acquire: on every instance, in parallel and each bounded by a short per-instance timeout, one Lua script does
 * `SET key value NX PX ttl` (as GET-then-SET inside the script) and, when it set the key, `INCR` of the lock's
 * sequence key. The lock is granted when a majority (N/2+1) set it AND the time spent is below
 * `ttl - drift` (drift = ttl × 0.01 + 2 ms); its validity is `ttl - elapsed - drift`. Otherwise the key is
 * released on ALL instances (including those that did not answer in time) and the attempt is retried after a
 * random delay until `waitMs` runs out.
 *
 * What RedLock does NOT give, stated plainly:
 * - No queue: waiters retry with random jitter. There is no FIFO order, no waiter notification, no queue
 *   position; a waiter may starve under contention; `waitMs` is only a deadline for retries.
 * - Only EXCLUSIVE locks with limit 1 (`supportsSharedAndCounting = false`): majority voting over independent
 *   servers cannot count readers or permits. No re-entrancy by owner id (refused with FAILED_PRECONDITION
 *   rather than letting an owner wait for itself); a retried Acquire with the same request id gets the grant
 *   its earlier attempt obtained, if that attempt won.
 * - The fencing token is NOT a safe fencing token. Each instance INCRs its own counter; the grant takes the max
 *   of the majority's answers and writes it back (raising the counters of the granting majority), so tokens
 *   grow while every instance keeps its data and clocks behave. But the instances never agree through
 *   consensus: an instance that restarts without persistence, a counter write-back lost in a failure, or a
 *   pause longer than the TTL can make a later holder get a token that is not larger, or two holders at once
 *   (Kleppmann, "How to do distributed locking", 2016). Use the consensus or etcd backend when fencing must hold.
 * - Safety depends on timing: bounded clock drift between instances and bounded process pauses of the holder.
 *
 * Renew = compare-and-extend on all instances, true only with a majority within the validity window.
 * Release = compare-and-delete on all instances. watchLoss checks every ttl/3 (bounded) that a majority still
 * holds our value. describe/list are best effort from a majority read.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { AcquireContext, AcquireResult, BackendKind, LockBackend } from '../backend.js';
import { LockError } from '../types.js';
import type { AcquireSpec, Grant, LockDescription, LockSummary, LostReason } from '../types.js';
import { LuaScript, describeEndpoint, newRedis } from './redis.js';
import type { RedisConnectionOptions } from './redis.js';

export interface RedlockBackendOptions {
  /** N >= 3 independent Redis servers (not replicas of each other). */
  instances: RedisConnectionOptions[];
  /** Key prefix. Default `synod:redlock:`. */
  prefix?: string;
  /** Bound on one command to one instance, ms (a slow instance is a lost vote). Default 100. */
  instanceTimeoutMs?: number;
  /** Mean delay between acquire attempts, ms; each delay is drawn uniformly from [delay/2, delay*3/2]. Default 100. */
  retryDelayMs?: number;
  /** Clock drift factor. Default 0.01. */
  driftFactor?: number;
  /** Upper bound of watchLoss's check interval, ms (the interval is ttl/3, at most this). Default 5000. */
  maxCheckIntervalMs?: number;
}

/** KEYS: lock, seq. ARGV: value JSON without t, ttl ms. → {1, value} when set, {0, existing} when taken. */
const ACQUIRE = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v then return {0, v} end
local e = cjson.decode(ARGV[1])
e.t = string.format('%d', redis.call('INCR', KEYS[2]))
v = cjson.encode(e)
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return {1, v}
`);

/** KEYS: lock, seq. ARGV: nonce, token. Raises seq to the token and records it in our value. → 1 when our value is there. */
const SETTLE = new LuaScript(`
local s = tonumber(redis.call('GET', KEYS[2]) or '0')
if s < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
local v = redis.call('GET', KEYS[1])
if v then
  local e = cjson.decode(v)
  if e.n == ARGV[1] then
    e.t = ARGV[2]
    redis.call('SET', KEYS[1], cjson.encode(e), 'KEEPTTL')
    return 1
  end
end
return 0
`);

/** KEYS: lock. ARGV: nonce. Compare-and-delete. */
const RELEASE = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).n == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/** KEYS: lock. ARGV: nonce, ttl ms. Compare-and-extend. */
const EXTEND = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).n == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

interface Value {
  n: string;
  t: string;
  o?: string;
  r?: string;
}

type Vote<T> = { ok: true; value: T } | { ok: false; error: unknown };

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

function parseLease(leaseId: string): { token: number; nonce: string } | undefined {
  const m = /^(\d{1,16})\.([0-9a-f]{32})$/.exec(leaseId);
  return m ? { token: Number(m[1]), nonce: m[2] } : undefined;
}

function parseValue(v: unknown): Value | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    return JSON.parse(v) as Value;
  } catch {
    return undefined;
  }
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export class RedlockBackend implements LockBackend {
  readonly kind: BackendKind = 'redlock';
  readonly supportsSharedAndCounting = false;
  private readonly clients: Redis[];
  private readonly endpoints: string[];
  private readonly prefix: string;
  private readonly quorum: number;
  private readonly retryDelayMs: number;
  private readonly driftFactor: number;
  private readonly maxCheckIntervalMs: number;

  constructor(opts: RedlockBackendOptions) {
    const n = opts.instances?.length ?? 0;
    if (n < 3)
      throw new Error(
        `redlock backend: configured with ${n} Redis instance(s); RedLock needs at least 3 independent Redis servers (a majority must survive one failure) — list 3 or 5 servers, or use the redis backend for a single server`,
      );
    this.prefix = opts.prefix ?? 'synod:redlock:';
    this.quorum = Math.floor(n / 2) + 1;
    this.retryDelayMs = opts.retryDelayMs ?? 100;
    this.driftFactor = opts.driftFactor ?? 0.01;
    this.maxCheckIntervalMs = opts.maxCheckIntervalMs ?? 5000;
    const timeout = opts.instanceTimeoutMs ?? 100;
    this.endpoints = opts.instances.map(describeEndpoint);
    this.clients = opts.instances.map((o) => {
      // No offline queue: a disconnected instance is a lost vote at once, not a queued command.
      const c = newRedis({ ...o, commandTimeoutMs: timeout, connectTimeoutMs: o.connectTimeoutMs ?? 1000 }, { enableOfflineQueue: false });
      c.on('error', () => {
        // a failed vote; ioredis reconnects by itself
      });
      return c;
    });
  }

  private get n(): number {
    return this.clients.length;
  }

  private lockKey(name: string): string {
    return `${this.prefix}{${name}}`;
  }

  private seqKey(name: string): string {
    return `${this.prefix}{${name}}:seq`;
  }

  private unavailableError(what: string, votes: Vote<unknown>[]): LockError {
    const errs = votes.map((v, i) => (v.ok ? undefined : `${this.endpoints[i]}: ${v.error instanceof Error ? v.error.message : String(v.error)}`)).filter((s) => s !== undefined);
    return new LockError(
      'UNAVAILABLE',
      `redlock: ${what} needs ${this.quorum} of ${this.n} Redis instances, but ${errs.length} did not answer (${errs.join('; ')}); check that the redis-servers are running and reachable`,
    );
  }

  /** Runs `f` on every instance in parallel; each is bounded by the per-instance command timeout. */
  private all<T>(f: (c: Redis) => Promise<T>): Promise<Vote<T>[]> {
    return Promise.all(
      this.clients.map((c) =>
        f(c).then(
          (value): Vote<T> => ({ ok: true, value }),
          (error: unknown): Vote<T> => ({ ok: false, error }),
        ),
      ),
    );
  }

  private drift(ttlMs: number): number {
    return ttlMs * this.driftFactor + 2;
  }

  async start(): Promise<void> {
    const votes = await this.all(async (c) => {
      if (c.status === 'wait') await c.connect();
      return c.ping();
    });
    if (votes.filter((v) => v.ok).length < this.quorum) {
      const err = this.unavailableError('start', votes);
      for (const c of this.clients) c.disconnect();
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all(
      this.clients.map(async (c) => {
        try {
          if (c.status === 'ready') await c.quit();
        } catch {
          // closing anyway
        }
        c.disconnect();
      }),
    );
  }

  async acquire(spec: AcquireSpec, ctx: AcquireContext): Promise<AcquireResult> {
    if (spec.mode !== 'EXCLUSIVE' || spec.limit !== 1)
      throw new LockError(
        'FAILED_PRECONDITION',
        `redlock supports only EXCLUSIVE locks with limit 1 (asked: ${spec.mode}, limit ${spec.limit}): majority voting over independent servers cannot count readers or permits; use the consensus, etcd, redis or postgres backend for SHARED and counting locks`,
      );
    const deadline = performance.now() + spec.waitMs;
    const nonce = randomBytes(16).toString('hex');
    const body: Omit<Value, 't'> = { n: nonce };
    if (spec.ownerId !== undefined) body.o = spec.ownerId;
    if (spec.requestId !== undefined) body.r = spec.requestId;
    const json = JSON.stringify(body);
    for (;;) {
      if (ctx.signal.aborted) return { timedOut: true };
      const r = await this.attempt(spec, nonce, json);
      if ('granted' in r) return { granted: r.granted };
      if (r.reentrant)
        throw new LockError(
          'FAILED_PRECONDITION',
          `owner "${spec.ownerId}" already holds lock "${spec.name}": the redlock backend has no re-entrant locks (no hold counts over independent servers); release it first, or use another backend for re-entrancy`,
        );
      const left = deadline - performance.now();
      if (spec.waitMs === 0 || left <= 0 || ctx.signal.aborted) {
        if (r.unreachable !== undefined) throw r.unreachable;
        return { timedOut: true };
      }
      // No queue: retry after a random delay (no FIFO, no notification when the holder releases).
      const delay = this.retryDelayMs / 2 + Math.random() * this.retryDelayMs;
      await sleep(Math.min(delay, left), ctx.signal);
    }
  }

  /** One RedLock round. */
  private async attempt(spec: AcquireSpec, nonce: string, json: string): Promise<{ granted: Grant } | { reentrant: boolean; unreachable?: LockError }> {
    const { name, ttlMs } = spec;
    const t0 = performance.now();
    const votes = await this.all(async (c) => (await ACQUIRE.run(c, [this.lockKey(name), this.seqKey(name)], [json, ttlMs])) as [number, string]);
    const won = votes.filter((v): v is { ok: true; value: [number, string] } => v.ok && v.value[0] === 1);
    if (won.length >= this.quorum && ttlMs - (performance.now() - t0) - this.drift(ttlMs) > 0) {
      const token = Math.max(...won.map((v) => Number(parseValue(v.value[1])?.t ?? 0)));
      // Raise the counters of the instances to the token (so the next majority, which intersects this one, goes higher).
      const settled = await this.all(async (c) => (await SETTLE.run(c, [this.lockKey(name), this.seqKey(name)], [nonce, token])) === 1);
      const validity = ttlMs - (performance.now() - t0) - this.drift(ttlMs);
      if (settled.filter((v) => v.ok && v.value).length >= this.quorum && validity > 0)
        return { granted: { name, mode: 'EXCLUSIVE', token, leaseId: `${token}.${nonce}`, ttlMs, holdCount: 1 } };
    }
    // Not granted: release on ALL instances (a vote that timed out may still have set the key).
    await this.all((c) => RELEASE.run(c, [this.lockKey(name)], [nonce]));
    const others = votes.map((v) => (v.ok && v.value[0] === 0 ? parseValue(v.value[1]) : undefined));
    const holder = this.majorityValue(others);
    if (holder !== undefined && spec.requestId !== undefined && holder.value.r === spec.requestId) {
      // A retried Acquire: the earlier attempt with this request id won; continue with its grant.
      const token = holder.maxToken;
      return { granted: { name, mode: 'EXCLUSIVE', token, leaseId: `${token}.${holder.value.n}`, ttlMs, holdCount: 1 } };
    }
    const reentrant = holder !== undefined && spec.ownerId !== undefined && holder.value.o === spec.ownerId;
    const answered = votes.filter((v) => v.ok).length;
    return { reentrant, unreachable: answered < this.quorum ? this.unavailableError(`acquiring "${name}"`, votes) : undefined };
  }

  /** The value (same nonce) held by a majority, with the largest token among them. */
  private majorityValue(values: (Value | undefined)[]): { value: Value; maxToken: number } | undefined {
    const byNonce = new Map<string, Value[]>();
    for (const v of values) {
      if (v === undefined) continue;
      const list = byNonce.get(v.n) ?? [];
      list.push(v);
      byNonce.set(v.n, list);
    }
    for (const list of byNonce.values()) if (list.length >= this.quorum) return { value: list[0], maxToken: Math.max(...list.map((v) => Number(v.t))) };
    return undefined;
  }

  async renew(name: string, leaseId: string, ttlMs: number): Promise<boolean> {
    const p = parseLease(leaseId);
    if (p === undefined) return false;
    const t0 = performance.now();
    const votes = await this.all(async (c) => (await EXTEND.run(c, [this.lockKey(name)], [p.nonce, ttlMs])) === 1);
    const extended = votes.filter((v) => v.ok && v.value).length;
    if (extended >= this.quorum && ttlMs - (performance.now() - t0) - this.drift(ttlMs) > 0) return true;
    if (votes.filter((v) => v.ok).length < this.quorum) throw this.unavailableError(`renewing "${name}"`, votes);
    return false;
  }

  async release(name: string, leaseId: string, token: number): Promise<number> {
    const p = parseLease(leaseId);
    if (p === undefined || p.token !== token) return -1;
    const votes = await this.all(async (c) => Number(await RELEASE.run(c, [this.lockKey(name)], [p.nonce])));
    if (votes.some((v) => v.ok && v.value > 0)) return 0;
    if (votes.filter((v) => v.ok).length < this.quorum) throw this.unavailableError(`releasing "${name}"`, votes);
    return -1;
  }

  /** Whether a majority holds our value: 'held', 'lost' (a majority can no longer hold it), or 'unknown' (too few answers). */
  private async check(name: string, nonce: string): Promise<'held' | 'lost' | 'unknown'> {
    const votes = await this.all((c) => c.get(this.lockKey(name)));
    const ours = votes.filter((v) => v.ok && parseValue(v.value)?.n === nonce).length;
    const failed = votes.filter((v) => !v.ok).length;
    if (ours >= this.quorum) return 'held';
    if (ours + failed < this.quorum) return 'lost';
    return 'unknown';
  }

  async watchLoss(grant: Grant, signal: AbortSignal): Promise<LostReason | undefined> {
    const p = parseLease(grant.leaseId);
    if (p === undefined) return 'LEASE_EXPIRED';
    const every = Math.max(20, Math.min(this.maxCheckIntervalMs, Math.floor(grant.ttlMs / 3)));
    let lastHeld = performance.now();
    for (;;) {
      await sleep(every, signal);
      if (signal.aborted) return undefined;
      const state = await this.check(grant.name, p.nonce);
      if (signal.aborted) return undefined;
      if (state === 'held') lastHeld = performance.now();
      else if (state === 'lost') return 'LEASE_EXPIRED';
      else if (performance.now() - lastHeld > grant.ttlMs) return 'BACKEND_UNAVAILABLE';
    }
  }

  async describe(name: string): Promise<LockDescription> {
    const votes = await this.all((c) => c.get(this.lockKey(name)));
    if (votes.filter((v) => v.ok).length < this.quorum) throw this.unavailableError(`describing "${name}"`, votes);
    const holder = this.majorityValue(votes.map((v) => (v.ok ? parseValue(v.value) : undefined)));
    if (holder === undefined) return { name, entries: [] };
    const { value, maxToken } = holder;
    return { name, entries: [{ leaseId: `${maxToken}.${value.n}`, mode: 'EXCLUSIVE', limit: 1, held: true, token: maxToken, ownerId: value.o, holdCount: 1 }] };
  }

  async list(prefix: string, limit: number): Promise<LockSummary[]> {
    const pattern = `${globEscape(this.prefix)}{${globEscape(prefix)}*}`;
    const votes = await this.all(async (c) => {
      const names: string[] = [];
      let cursor = '0';
      do {
        const [next, keys] = await c.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        for (const k of keys) names.push(k.slice(this.prefix.length + 1, -1));
      } while (cursor !== '0');
      return names;
    });
    if (votes.filter((v) => v.ok).length < this.quorum) throw this.unavailableError('listing locks', votes);
    const names = [...new Set(votes.flatMap((v) => (v.ok ? v.value : [])))].filter((n) => n.startsWith(prefix)).sort();
    const out: LockSummary[] = [];
    for (const name of names) {
      if (out.length >= limit) break;
      const d = await this.describe(name);
      if (d.entries.length > 0) out.push({ name, holders: 1, waiters: 0 });
    }
    return out;
  }
}
