/**
 * The Redis {@link QueueStore}: the lock queue of one name lives on one Redis primary, and
 * {@link QueueLockBackend} runs the lock algorithm (FIFO, read/write, semaphores, re-entrancy) on top of it.
 * See docs/locks/redis.md for the operator's view (data layout, guarantees, the failover caveat).
 *
 * Keys of lock `name` (prefix `synod:lock:` by default; the hash tag `{name}` keeps one lock's keys in one slot):
 * - `<p>{name}:seq`        INCR counter: the `order` of each entry, which is also the grant's fencing token.
 * - `<p>{name}:q`          ZSET of the queue: member = lease id `<order>.<nonce>`, score = order.
 * - `<p>{name}:e:<order>`  the entry, JSON `{n: nonce, m: mode, l: limit, o?: owner, r?: request, h: holds}`,
 *                          created with `SET … NX PX ttl` — Redis deletes it when the lease ends unrenewed.
 * - `<p>{name}:c:<lease>`  pub/sub channel of the entry: a message when it is removed, pruned or notified.
 * - `<p>names`             ZSET (lexicographic) of lock names, for `names()`; pruned lazily.
 *
 * Every change is ONE Lua script (atomic on the server): enqueue = INCR + SET NX PX + ZADD; remove =
 * compare-and-delete (the nonce must match: a stale lease id whose order was re-issued after a failover never
 * deletes someone else's entry) + ZREM + PUBLISH; renew = compare-and-extend (PEXPIRE only when the nonce
 * matches); addHolds = compare-and-update of the JSON keeping its TTL. Listing the queue prunes members whose
 * entry key expired, and publishes on their channels.
 *
 * Waiting: `watch` SUBSCRIBEs to the watched entries' channels on one shared subscriber connection FIRST, then
 * checks that they still exist (resolving at once when one is gone), then resolves on a message. An entry whose
 * key simply expires publishes nothing by itself, so `watch` also arms one timer at the watched entries' known
 * expiry (min PTTL) + a small margin and re-checks then (re-arming if they were renewed): no fixed-interval
 * polling. A subscriber reconnect wakes every watcher (messages may have been missed; the algorithm re-reads).
 *
 * Failover caveat: Redis replication is asynchronous. If the primary fails and a replica that had not yet
 * received the latest writes is promoted, an entry that was granted can vanish (two holders), and `seq` can go
 * back (a fencing token re-issued). Use this store where that is acceptable or with fencing plus a single
 * primary with persistence; use the consensus or etcd store when it is not.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { BackendKind, EnqueueSpec, QueueEntry, QueueStore } from '../backend.js';
import { LockError } from '../types.js';
import type { LockMode } from '../types.js';

export interface RedisConnectionOptions {
  /** redis://[user:pass@]host:port[/db]; takes precedence over host/port. */
  url?: string;
  host?: string;
  port?: number;
  /** Bound on every command, ms (a paused or partitioned server gives UNAVAILABLE after this). Default 5000. */
  commandTimeoutMs?: number;
  /** Bound on connecting, ms. Default 3000. */
  connectTimeoutMs?: number;
}

export interface RedisQueueStoreOptions extends RedisConnectionOptions {
  /** Key prefix. Default `synod:lock:`. */
  prefix?: string;
  /** How long after a watched entry's known expiry `watch` re-checks it, ms. Default 25. */
  expiryMarginMs?: number;
}

/** The ioredis options every Synod Redis connection uses: lazy connect, bounded commands and retries. */
export function redisOptions(o: RedisConnectionOptions, extra: Partial<RedisOptions> = {}): RedisOptions {
  const base: RedisOptions = {
    lazyConnect: true,
    connectTimeout: o.connectTimeoutMs ?? 3000,
    commandTimeout: o.commandTimeoutMs ?? 5000,
    maxRetriesPerRequest: 1,
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
    // How long disconnect() waits for a half-closed socket before destroying it (ioredis default 2000).
    disconnectTimeout: 200,
    ...extra,
  };
  if (o.url === undefined) {
    base.host = o.host ?? '127.0.0.1';
    base.port = o.port ?? 6379;
  }
  return base;
}

export function newRedis(o: RedisConnectionOptions, extra: Partial<RedisOptions> = {}): Redis {
  return o.url !== undefined ? new Redis(o.url, redisOptions(o, extra)) : new Redis(redisOptions(o, extra));
}

export function describeEndpoint(o: RedisConnectionOptions): string {
  if (o.url !== undefined) return o.url.replace(/\/\/[^@/]*@/, '//***@');
  return `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`;
}

/** Wraps any client error as LockError('UNAVAILABLE') with the endpoint and what to check. LockErrors pass through. */
export function unavailable(endpoint: string, what: string, err: unknown): LockError {
  if (err instanceof LockError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new LockError('UNAVAILABLE', `redis at ${endpoint} is unavailable (${what}: ${msg}); check that redis-server is running and reachable`);
}

/** Waits for `p` at most `ms` (then returns undefined); the timer is cleared when `p` settles first. */
export async function atMost<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (t = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** A Lua script run with EVALSHA, falling back to EVAL when the server does not have it cached (NOSCRIPT). */
export class LuaScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.includes('NOSCRIPT')) return client.eval(this.source, keys.length, ...keys, ...args);
      throw err;
    }
  }
}

// ---- Lua -------------------------------------------------------------------------------------------------------

/** KEYS: seq, queue, names. ARGV: entry key prefix, nonce, entry JSON (without n), ttl ms, name. → {order, json}. */
const ENQUEUE = new LuaScript(`
local order = redis.call('INCR', KEYS[1])
local id = string.format('%d', order)
local e = cjson.decode(ARGV[3])
e.n = ARGV[2]
local v = cjson.encode(e)
if not redis.call('SET', ARGV[1] .. id, v, 'NX', 'PX', ARGV[4]) then
  return redis.error_reply('entry key ' .. ARGV[1] .. id .. ' already exists: the sequence key was reset')
end
redis.call('ZADD', KEYS[2], order, id .. '.' .. ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[5])
return {order, v}
`);

/** KEYS: queue. ARGV: entry key prefix, channel prefix. → flat {leaseId, json, ...} of live entries; prunes the rest. */
const ENTRIES = new LuaScript(`
local m = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for i = 1, #m do
  local lease = m[i]
  local dot = string.find(lease, '.', 1, true)
  local live = false
  if dot then
    local v = redis.call('GET', ARGV[1] .. string.sub(lease, 1, dot - 1))
    if v and cjson.decode(v).n == string.sub(lease, dot + 1) then
      out[#out + 1] = lease
      out[#out + 1] = v
      live = true
    end
  end
  if not live then
    redis.call('ZREM', KEYS[1], lease)
    redis.call('PUBLISH', ARGV[2] .. lease, 'expired')
  end
end
return out
`);

/** KEYS: entry, queue. ARGV: lease id, nonce, channel. Compare-and-delete → 1, else 0. */
const REMOVE = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).n == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('PUBLISH', ARGV[3], 'removed')
  return 1
end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then redis.call('PUBLISH', ARGV[3], 'expired') end
return 0
`);

/** KEYS: entry. ARGV: nonce, ttl ms. Compare-and-extend → 1, else 0. */
const RENEW = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).n == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);

/** KEYS: entry. ARGV: nonce, delta. → new hold count, or nil when the entry is gone. Keeps the TTL. */
const ADD_HOLDS = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
local e = cjson.decode(v)
if e.n ~= ARGV[1] then return false end
e.h = e.h + tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(e), 'KEEPTTL')
return e.h
`);

/** KEYS: entries. ARGV: their nonces. → -2 when one is gone, else the smallest PTTL (-1 = no expiry). */
const MIN_PTTL = new LuaScript(`
local min = nil
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v or cjson.decode(v).n ~= ARGV[i] then return -2 end
  local t = redis.call('PTTL', KEYS[i])
  if t < 0 then t = -1 end
  if min == nil or (t >= 0 and (min < 0 or t < min)) then min = t end
end
return min or -2
`);

/** KEYS: queue, names. ARGV: name. Drops the name from the index when its queue is empty. */
const DROP_NAME = new LuaScript(`
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) return 1 end
return 0
`);

// ---- the store -------------------------------------------------------------------------------------------------

interface StoredEntry {
  n: string;
  m: LockMode;
  l: number;
  o?: string;
  r?: string;
  h: number;
}

/** `<order>.<nonce>` → parts, or undefined for anything else. */
function parseLease(key: string): { order: string; nonce: string } | undefined {
  const m = /^(\d{1,19})\.([0-9a-f]{8,64})$/.exec(key);
  return m ? { order: m[1], nonce: m[2] } : undefined;
}

function toEntry(key: string, json: string): QueueEntry {
  const e = JSON.parse(json) as StoredEntry;
  const order = Number(key.slice(0, key.indexOf('.')));
  return { key, order, mode: e.m, limit: e.l, ownerId: e.o, requestId: e.r, holdCount: e.h };
}

export class RedisQueueStore implements QueueStore {
  readonly kind: BackendKind = 'redis';
  private readonly client: Redis;
  private sub: Redis | undefined;
  private subConnecting: Promise<Redis> | undefined;
  private subReadyCount = 0;
  private readonly prefix: string;
  private readonly endpoint: string;
  private readonly marginMs: number;
  /** channel → the wake functions of the watches listening on it (the channel is subscribed while non-empty). */
  private readonly listeners = new Map<string, Set<() => void>>();
  private closed = false;

  constructor(private readonly opts: RedisQueueStoreOptions = {}) {
    this.prefix = opts.prefix ?? 'synod:lock:';
    this.endpoint = describeEndpoint(opts);
    this.marginMs = opts.expiryMarginMs ?? 25;
    this.client = newRedis(opts);
    this.client.on('error', () => {
      // Surfaced through the failing commands (UNAVAILABLE); ioredis reconnects by itself.
    });
  }

  /** Number of channels the shared subscriber connection is subscribed to (for tests and metrics). */
  get subscribedChannels(): number {
    return this.listeners.size;
  }

  async start(): Promise<void> {
    try {
      if (this.client.status === 'wait') await this.client.connect();
      await this.client.ping();
    } catch (err) {
      throw unavailable(this.endpoint, 'connect', err);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const set of this.listeners.values()) for (const wake of [...set]) wake();
    this.listeners.clear();
    const quit = async (c: Redis | undefined): Promise<void> => {
      if (c === undefined) return;
      try {
        if (c.status === 'ready') await atMost(c.quit(), 1000);
      } catch {
        // closing anyway
      }
      c.disconnect();
    };
    const sub = this.sub ?? (await this.subConnecting?.catch(() => undefined));
    await Promise.all([quit(this.client), quit(sub)]);
  }

  private base(name: string): string {
    return `${this.prefix}{${name}}`;
  }

  private entryKey(name: string, order: string): string {
    return `${this.base(name)}:e:${order}`;
  }

  private channel(name: string, key: string): string {
    return `${this.base(name)}:c:${key}`;
  }

  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    if (this.closed) throw new LockError('UNAVAILABLE', `the redis lock store for ${this.endpoint} is closed`);
    try {
      return await f();
    } catch (err) {
      throw unavailable(this.endpoint, what, err);
    }
  }

  async enqueue(name: string, spec: EnqueueSpec): Promise<QueueEntry> {
    const nonce = randomBytes(8).toString('hex');
    const body: Omit<StoredEntry, 'n'> = { m: spec.mode, l: spec.limit, h: 1 };
    if (spec.ownerId !== undefined) body.o = spec.ownerId;
    if (spec.requestId !== undefined) body.r = spec.requestId;
    const b = this.base(name);
    const [order, json] = (await this.call('enqueue', () =>
      ENQUEUE.run(this.client, [`${b}:seq`, `${b}:q`, `${this.prefix}names`], [`${b}:e:`, nonce, JSON.stringify(body), spec.ttlMs, name]),
    )) as [number, string];
    return toEntry(`${order}.${nonce}`, json);
  }

  async entries(name: string): Promise<QueueEntry[]> {
    const b = this.base(name);
    const flat = (await this.call('entries', () => ENTRIES.run(this.client, [`${b}:q`], [`${b}:e:`, `${b}:c:`]))) as string[];
    const out: QueueEntry[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push(toEntry(flat[i], flat[i + 1]));
    return out;
  }

  async get(name: string, key: string): Promise<QueueEntry | undefined> {
    const p = parseLease(key);
    if (p === undefined) return undefined;
    const json = await this.call('get', () => this.client.get(this.entryKey(name, p.order)));
    if (json === null) return undefined;
    if ((JSON.parse(json) as StoredEntry).n !== p.nonce) return undefined;
    return toEntry(key, json);
  }

  async notify(name: string, key: string): Promise<void> {
    await this.call('notify', () => this.client.publish(this.channel(name, key), 'notify'));
  }

  async remove(name: string, key: string): Promise<boolean> {
    const p = parseLease(key);
    if (p === undefined) return false;
    const r = await this.call('remove', () => REMOVE.run(this.client, [this.entryKey(name, p.order), `${this.base(name)}:q`], [key, p.nonce, this.channel(name, key)]));
    return r === 1;
  }

  async renew(name: string, key: string, ttlMs: number): Promise<boolean> {
    const p = parseLease(key);
    if (p === undefined) return false;
    const r = await this.call('renew', () => RENEW.run(this.client, [this.entryKey(name, p.order)], [p.nonce, ttlMs]));
    return r === 1;
  }

  async addHolds(name: string, key: string, delta: number): Promise<number | undefined> {
    const p = parseLease(key);
    if (p === undefined) return undefined;
    const r = await this.call('addHolds', () => ADD_HOLDS.run(this.client, [this.entryKey(name, p.order)], [p.nonce, delta]));
    return typeof r === 'number' ? r : undefined;
  }

  async names(prefix: string, limit: number): Promise<string[]> {
    const index = `${this.prefix}names`;
    const out: string[] = [];
    const batch = Math.max(100, limit);
    let offset = 0;
    while (out.length < limit) {
      const page = await this.call('names', () => this.client.zrangebylex(index, `[${prefix}`, '+', 'LIMIT', offset, batch));
      if (page.length === 0) break;
      for (const name of page) {
        if (!name.startsWith(prefix)) return out;
        if ((await this.entries(name)).length > 0) {
          out.push(name);
          if (out.length >= limit) return out;
        } else {
          const dropped = await this.call('names', () => DROP_NAME.run(this.client, [`${this.base(name)}:q`, index], [name]));
          if (dropped !== 1) offset++;
          continue;
        }
        offset++;
      }
      if (page.length < batch) break;
    }
    return out;
  }

  // ---- watch ---------------------------------------------------------------------------------------------------

  /** The shared subscriber connection (created on first use). */
  private subscriber(): Promise<Redis> {
    if (this.sub !== undefined) return Promise.resolve(this.sub);
    if (this.subConnecting === undefined) {
      const sub = this.client.duplicate(redisOptions(this.opts, { commandTimeout: this.opts.commandTimeoutMs ?? 5000 }));
      sub.on('error', () => {
        // reconnects by itself; the watchers are woken on 'ready'
      });
      sub.on('message', (channel: string) => {
        const set = this.listeners.get(channel);
        if (set) for (const wake of [...set]) wake();
      });
      sub.on('ready', () => {
        this.subReadyCount++;
        // After a reconnect, messages may have been lost: wake everyone (they re-read the queue).
        if (this.subReadyCount > 1) for (const set of this.listeners.values()) for (const wake of [...set]) wake();
      });
      this.subConnecting = sub.connect().then(
        () => {
          this.sub = sub;
          return sub;
        },
        (err: unknown) => {
          this.subConnecting = undefined;
          sub.disconnect();
          throw unavailable(this.endpoint, 'subscribe', err);
        },
      );
    }
    return this.subConnecting;
  }

  private async listen(channels: string[], wake: () => void): Promise<void> {
    const fresh: string[] = [];
    for (const ch of channels) {
      let set = this.listeners.get(ch);
      if (set === undefined) {
        set = new Set();
        this.listeners.set(ch, set);
        fresh.push(ch);
      }
      set.add(wake);
    }
    if (fresh.length === 0) return;
    const sub = await this.subscriber();
    await this.call('subscribe', () => sub.subscribe(...fresh));
  }

  private unlisten(channels: string[], wake: () => void): void {
    const gone: string[] = [];
    for (const ch of channels) {
      const set = this.listeners.get(ch);
      if (set === undefined || !set.delete(wake)) continue;
      if (set.size === 0) {
        this.listeners.delete(ch);
        gone.push(ch);
      }
    }
    if (gone.length === 0 || this.closed) return;
    // Through the connecting promise, so it is sent after a SUBSCRIBE still waiting for the connection.
    void this.subConnecting?.then(
      (sub) => {
        const still = gone.filter((ch) => !this.listeners.has(ch));
        if (still.length > 0 && !this.closed) sub.unsubscribe(...still).catch(() => undefined);
      },
      () => undefined,
    );
  }

  /** -2 when one of `keys` is gone, else the smallest remaining lease in ms (-1: no expiry). */
  private async minPttl(name: string, keys: string[]): Promise<number> {
    const parsed = keys.map(parseLease);
    if (parsed.some((p) => p === undefined)) return -2;
    const ps = parsed as { order: string; nonce: string }[];
    const r = await this.call('watch', () =>
      MIN_PTTL.run(
        this.client,
        ps.map((p) => this.entryKey(name, p.order)),
        ps.map((p) => p.nonce),
      ),
    );
    return Number(r);
  }

  watch(name: string, keys: string[], signal: AbortSignal): Promise<void> {
    if (signal.aborted || keys.length === 0 || this.closed) return Promise.resolve();
    const channels = [...new Set(keys)].map((k) => this.channel(name, k));
    return new Promise<void>((resolve, reject) => {
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (err?: unknown): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.unlisten(channels, wake);
        if (err !== undefined) reject(err);
        else resolve();
      };
      const wake = (): void => finish();
      const onAbort = (): void => finish();
      signal.addEventListener('abort', onAbort, { once: true });
      // Re-check at the watched entries' known expiry (the only bounded fallback: no fixed-interval polling).
      const check = async (): Promise<void> => {
        timer = undefined;
        if (done) return;
        try {
          const pttl = await this.minPttl(name, keys);
          if (done) return;
          if (pttl === -2) return finish();
          timer = setTimeout(() => void check(), pttl < 0 ? 1000 : pttl + this.marginMs);
        } catch (err) {
          finish(err);
        }
      };
      // Subscribe first, then check: a removal between the two is seen either as a message or by the check.
      this.listen(channels, wake).then(
        () => check(),
        (err: unknown) => finish(err),
      );
    });
  }
}
