/**
 * The etcd lock store: a {@link QueueStore} over etcd v3 (the `etcd3` client), so `QueueLockBackend` runs the
 * lock algorithm (queue.ts) on etcd. Operator notes: docs/locks/etcd.md.
 *
 * Layout. Every entry of lock `name` is one key
 *
 *     <prefix>/<encodeURIComponent(name)>/<entry key>        e.g. synod/locks/jobs%2Fnightly/9f1c…
 *
 * `prefix` defaults to `synod/locks`. The name is one path segment (encodeURIComponent turns its '/' into %2F),
 * so the lock `a` never sees the entries of `a/b`. The entry key is 24 random hex characters; it is the lease id
 * clients see. The value is JSON `{mode, limit, ownerId?, requestId?, holdCount, ttlS, wake}`: `ttlS` is the
 * lease TTL the entry asked for (in seconds) and `wake` counts `notify` calls (see watch, below).
 *
 * Leases. Each entry is attached to its OWN etcd lease, granted with the entry's TTL. etcd lease TTLs are whole
 * seconds: `ttlMs` is rounded up, minimum 1 s; etcd itself raises a lease to its minimum TTL, ceil(1.5 × election
 * timeout) (2 s with etcd's default 1 s election timeout), and its leader checks for expired leases every 500 ms.
 * So an entry with `ttlMs` T ends between ceil(T/1000) s and about ceil(T/1000) s + 0.5 s after its last
 * renewal — never earlier (an etcd leader change restarts every lease's full TTL, so then later). etcd deletes the keys of an expired lease itself: an entry of a crashed client goes
 * without any timer of ours, and its DELETE reaches the watchers like a release does.
 *
 * Order. `order` is the key's create revision: etcd's store-wide revision, strictly increasing over the store's
 * whole life (so per lock name too, also after a queue empties). It is the fencing token of the grant. A put to
 * an existing key (notify, addHolds, a TTL change) keeps the create revision; every such put is a txn that
 * compares the key's mod revision, so it can never re-create a deleted key with a new order.
 *
 * Operations:
 * - enqueue: grant a lease, put the key with it; `order` = the put's revision (the key is new, so that is its
 *   create revision). The entry and its order appear together, atomically.
 * - entries: one range over `<prefix>/<name>/`, sorted by create revision.
 * - watch: a txn reads all the watched keys at one revision R (resolving at once if one is gone), then one etcd
 *   watch per key from R + 1, so no event after the read is missed. It resolves on a DELETE (release, or lease
 *   expiry) or on a PUT whose `wake` changed (notify); other puts (addHolds, a TTL change) do not wake anyone, so
 *   a release — hold count to 0, then delete — wakes its waiter once. It also resolves when the signal aborts and
 *   when the watch stream breaks (the caller re-reads: a spurious wake is safe, a missed one is not). Its etcd
 *   watches are always cancelled. All watches of a store share one gRPC stream (EtcdWatchMux, libs/etcd).
 * - entries and enqueue of one lock name run one after another, in call order (see serial()), so Acquires that
 *   reach one store in order join the queue in that order.
 * - notify: re-put the value with `wake + 1` on the same lease (`ignore_lease`), compare-and-swap on the mod revision.
 * - remove: delete the key (prev_kv), then revoke its lease. Idempotent.
 * - renew: one lease keep-alive on the entry's lease (read from the key). When `ttlMs` asks for a different TTL
 *   than the entry's, the entry moves to a fresh lease of that TTL (compare-and-swap put, then the old lease is
 *   revoked). false when the key or its lease is gone.
 * - addHolds: read-modify-write of `holdCount` in a txn comparing the mod revision, retried on conflict (the txn's
 *   failure branch returns the current value, so a retry costs one round trip).
 * - names: a keys-only scan of `<prefix>/<encoded prefix>`, paged, distinct names decoded and sorted.
 *
 * Errors: any failure to talk to etcd (connection refused, deadline — `callTimeoutMs`, default 5 s — a broken
 * circuit, lost quorum) becomes LockError('UNAVAILABLE') naming the endpoints.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import type { CallOptions } from '@grpc/grpc-js';
import type { IKeyValue, IRangeResponse, IRequestOp } from 'etcd3';
import { EtcdWatchMux, endStream, prefixEnd } from '@app/etcd';
import type { BackendKind, EnqueueSpec, QueueEntry, QueueStore } from '../backend.js';
import { LockError } from '../types.js';
import type { LockMode } from '../types.js';

export interface EtcdQueueStoreOptions {
  /** etcd client endpoints, `host:port` or `http://host:port`. */
  endpoints: string[];
  /** Key prefix of every lock entry. Default 'synod/locks'. */
  prefix?: string;
  /** Deadline of each unary etcd call (and of a keep-alive), ms. Default 5000. */
  callTimeoutMs?: number;
}

/** The JSON value of an entry key. */
interface StoredEntry {
  mode: LockMode;
  limit: number;
  ownerId?: string;
  requestId?: string;
  holdCount: number;
  /** The lease TTL the entry asked for, whole seconds. */
  ttlS: number;
  /** Incremented by notify: a PUT that changes it wakes the watchers. */
  wake: number;
}



/** Compare-and-swap attempts before giving up (only under heavy contention on one entry). */
const MAX_CAS_ATTEMPTS = 100;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** ms → whole etcd lease seconds: rounded up, at least 1. */
export function leaseSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000));
}


function parseEntry(value: Buffer): StoredEntry | undefined {
  try {
    const v = JSON.parse(value.toString('utf8')) as Partial<StoredEntry>;
    if ((v.mode !== 'EXCLUSIVE' && v.mode !== 'SHARED') || typeof v.limit !== 'number' || typeof v.holdCount !== 'number') return undefined;
    return { mode: v.mode, limit: v.limit, ownerId: v.ownerId, requestId: v.requestId, holdCount: v.holdCount, ttlS: typeof v.ttlS === 'number' ? v.ttlS : 0, wake: typeof v.wake === 'number' ? v.wake : 0 };
  } catch {
    return undefined;
  }
}

function encodeEntry(v: StoredEntry): Buffer {
  const out: StoredEntry = { mode: v.mode, limit: v.limit, holdCount: v.holdCount, ttlS: v.ttlS, wake: v.wake };
  if (v.ownerId !== undefined) out.ownerId = v.ownerId;
  if (v.requestId !== undefined) out.requestId = v.requestId;
  return Buffer.from(JSON.stringify(out), 'utf8');
}

export class EtcdQueueStore implements QueueStore {
  readonly kind: BackendKind = 'etcd';
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly endpoints: string[];
  private readonly callTimeoutMs: number;
  private closed = false;
  /** One watch stream for every watch() of this store (libs/etcd). */
  private readonly watches: EtcdWatchMux;
  /** Per lock name: the tail of the serial() chain. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(opts: EtcdQueueStoreOptions) {
    if (opts.endpoints.length === 0) throw new LockError('INVALID_ARGUMENT', 'etcd lock store: no endpoints given; pass at least one etcd client endpoint (host:port)');
    this.endpoints = [...opts.endpoints];
    this.prefix = (opts.prefix ?? 'synod/locks').replace(/\/+$/, '');
    this.callTimeoutMs = opts.callTimeoutMs ?? 5000;
    const timeout = this.callTimeoutMs;
    this.client = new Etcd3({
      hosts: this.endpoints,
      // Detect a silent etcd (hung, partitioned) on an open watch stream: ping every 10 s (etcd accepts pings
      // 5 s apart while a stream is open), give up on the connection after 5 s without an answer.
      grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5000, 'grpc.keepalive_permit_without_calls': 0 },
      // Unary calls get a deadline; streams (watches, keep-alives) set their own bounds.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    });
    this.watches = new EtcdWatchMux(() => this.client.watchClient.watch());
  }

  // ---- keys ----------------------------------------------------------------------------------------------

  private lockPrefix(name: string): string {
    return `${this.prefix}/${encodeURIComponent(name)}/`;
  }

  private entryKey(name: string, key: string): Buffer {
    return Buffer.from(this.lockPrefix(name) + encodeURIComponent(key), 'utf8');
  }

  /** The entry key (last segment) of an etcd key of lock `name`. */
  private keyOf(name: string, etcdKey: Buffer): string {
    return decodeURIComponent(etcdKey.toString('utf8').slice(this.lockPrefix(name).length));
  }

  private toEntry(name: string, kv: IKeyValue): QueueEntry | undefined {
    const v = parseEntry(kv.value);
    if (v === undefined) return undefined;
    const e: QueueEntry = { key: this.keyOf(name, kv.key), order: Number(kv.create_revision), mode: v.mode, limit: v.limit, holdCount: v.holdCount };
    if (v.ownerId !== undefined) e.ownerId = v.ownerId;
    if (v.requestId !== undefined) e.requestId = v.requestId;
    return e;
  }

  // ---- errors --------------------------------------------------------------------------------------------

  private unavailable(what: string, err: unknown): LockError {
    const cause = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return new LockError('UNAVAILABLE', `etcd lock store: ${what} failed: etcd at ${this.endpoints.join(', ')} is unreachable or has no quorum (${cause}); check that the etcd cluster is running and reachable from this service`);
  }

  /**
   * Runs `f`, turning every error that is not already a LockError into LockError('UNAVAILABLE'). `o` carries one
   * deadline for the whole operation (callTimeoutMs from now), passed to every etcd call it makes: the etcd3
   * client retries recoverable errors, and a shared absolute deadline keeps those retries inside the bound.
   */
  private async call<T>(what: string, f: (o: CallOptions) => Promise<T>): Promise<T> {
    if (this.closed) throw new LockError('UNAVAILABLE', `etcd lock store: ${what} after close()`);
    try {
      return await f({ deadline: Date.now() + this.callTimeoutMs });
    } catch (err) {
      if (err instanceof LockError) throw err;
      throw this.unavailable(what, err);
    }
  }

  /**
   * Runs `f` (through call()) after every earlier serial() call of this store on lock `name` has settled. Used
   * by entries() and enqueue(), so that Acquires this store receives for one lock queue in the order they
   * arrived: QueueLockBackend.acquire reads the queue and then enqueues with no wait in between, so A's enqueue
   * is chained before B's whenever A's read was. Without it the two RPCs of an enqueue (lease grant, put) of
   * concurrent Acquires could overtake each other on the shared HTTP/2 connection. Every call has a deadline,
   * so a chain cannot stall for longer than that.
   */
  private serial<T>(name: string, what: string, f: (o: CallOptions) => Promise<T>): Promise<T> {
    const prev = this.chains.get(name);
    const run = prev === undefined ? this.call(what, f) : prev.then(() => this.call(what, f));
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(name, tail);
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name);
    });
    return run;
  }

  private async getKv(key: Buffer, o: CallOptions): Promise<IKeyValue | undefined> {
    const res = await this.client.kv.range({ key }, o);
    return res.kvs[0];
  }

  // ---- QueueStore ----------------------------------------------------------------------------------------

  async start(): Promise<void> {
    // A linearizable read: answers only when the cluster has a leader and a quorum.
    await this.call('connecting', (o) => this.client.kv.range({ key: Buffer.from(`${this.prefix}/`), range_end: prefixEnd(Buffer.from(`${this.prefix}/`)), count_only: true }, o));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watches.close();
    this.client.close();
  }

  async enqueue(name: string, spec: EnqueueSpec): Promise<QueueEntry> {
    return this.serial(name, 'enqueue', async (o) => {
      const ttlS = leaseSeconds(spec.ttlMs);
      const key = randomBytes(12).toString('hex');
      const value: StoredEntry = { mode: spec.mode, limit: spec.limit, ownerId: spec.ownerId, requestId: spec.requestId, holdCount: 1, ttlS, wake: 0 };
      const lease = await this.client.leaseClient.leaseGrant({ TTL: ttlS, ID: 0 }, o);
      let revision: string;
      try {
        const res = await this.client.kv.put({ key: this.entryKey(name, key), value: encodeEntry(value), lease: lease.ID }, o);
        revision = res.header.revision;
      } catch (err) {
        // The put may have been applied before the error: revoking the lease removes the entry either way.
        await this.revoke(lease.ID);
        throw err;
      }
      const e: QueueEntry = { key, order: Number(revision), mode: spec.mode, limit: spec.limit, holdCount: 1 };
      if (spec.ownerId !== undefined) e.ownerId = spec.ownerId;
      if (spec.requestId !== undefined) e.requestId = spec.requestId;
      return e;
    });
  }

  async entries(name: string): Promise<QueueEntry[]> {
    return this.serial(name, 'reading a lock queue', async (o) => {
      const p = Buffer.from(this.lockPrefix(name), 'utf8');
      const res = await this.client.kv.range({ key: p, range_end: prefixEnd(p), sort_target: 'Create', sort_order: 'Ascend' }, o);
      const out: QueueEntry[] = [];
      for (const kv of res.kvs) {
        const e = this.toEntry(name, kv);
        if (e !== undefined) out.push(e);
      }
      out.sort((a, b) => a.order - b.order); // already sorted by etcd; kept explicit
      return out;
    });
  }

  async get(name: string, key: string): Promise<QueueEntry | undefined> {
    return this.call('reading a lock entry', async (o) => {
      const kv = await this.getKv(this.entryKey(name, key), o);
      return kv === undefined ? undefined : this.toEntry(name, kv);
    });
  }

  async watch(name: string, keys: string[], signal: AbortSignal): Promise<void> {
    if (signal.aborted || keys.length === 0) return;
    // Read every watched key at one revision; the watches start right after it.
    const etcdKeys = keys.map((k) => this.entryKey(name, k));
    const read = await this.call('reading watched entries', (o) => this.client.kv.txn({ compare: [], success: etcdKeys.map((key): IRequestOp => ({ request_range: { key } })) }, o));
    const wakes = new Map<string, number>();
    for (let i = 0; i < etcdKeys.length; i++) {
      const kv = (read.responses[i]?.response_range as IRangeResponse | undefined)?.kvs[0];
      if (kv === undefined) return; // already gone
      wakes.set(etcdKeys[i].toString('utf8'), parseEntry(kv.value)?.wake ?? 0);
    }
    if (signal.aborted || this.closed) return;
    const startRevision = String(BigInt(read.header.revision) + 1n);
    let done = false;
    let resolve!: () => void;
    const finished = new Promise<void>((r) => (resolve = r));
    const cancels: (() => void)[] = [];
    const finish = (): void => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', finish);
      for (const cancel of cancels) cancel();
      resolve();
    };
    signal.addEventListener('abort', finish, { once: true });
    try {
      for (const [key, wake] of wakes) {
        if (done) break;
        const cancel = await this.call('watching entries', () =>
          this.watches.add({ key: Buffer.from(key, 'utf8'), start_revision: startRevision }, (res) => {
            // undefined: the stream broke; canceled: etcd ended the watch (e.g. compaction). Wake: the caller re-reads.
            if (res === undefined || res.canceled) return finish();
            for (const ev of res.events ?? []) {
              if (ev.type === 'Delete' || (parseEntry(ev.kv.value)?.wake ?? 0) !== wake) return finish();
            }
          }),
        );
        if (done) cancel();
        else cancels.push(cancel);
      }
    } catch (err) {
      finish();
      throw err;
    }
    await finished;
  }

  async notify(name: string, key: string): Promise<void> {
    await this.update('notifying waiters', name, key, (v) => ({ ...v, wake: v.wake + 1 }));
  }

  async remove(name: string, key: string): Promise<boolean> {
    return this.call('removing a lock entry', async (o) => {
      const res = await this.client.kv.deleteRange({ key: this.entryKey(name, key), prev_kv: true }, o);
      const prev = res.prev_kvs[0];
      if (prev === undefined) return false;
      if (prev.lease !== '0') await this.revoke(prev.lease);
      return true;
    });
  }

  /**
   * Revokes a lease, with a deadline of its own (it often follows a failure); a lease that is already gone is
   * fine, and so is a failure (the lease then ends by its TTL).
   */
  private async revoke(lease: string): Promise<void> {
    await this.client.leaseClient.leaseRevoke({ ID: lease }, { deadline: Date.now() + this.callTimeoutMs }).catch(() => undefined);
  }

  async renew(name: string, key: string, ttlMs: number): Promise<boolean> {
    return this.call('renewing a lease', async (o) => {
      const ttlS = leaseSeconds(ttlMs);
      const etcdKey = this.entryKey(name, key);
      let deadLease: string | undefined;
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        const kv = await this.getKv(etcdKey, o);
        if (kv === undefined || kv.lease === '0' || kv.lease === deadLease) return false;
        const v = parseEntry(kv.value);
        if (v === undefined) return false;
        if (v.ttlS === ttlS) {
          if (await this.keepAliveOnce(kv.lease, o)) return true;
          // The lease is gone. Usually the key went with it; a concurrent TTL change may have moved it: look again.
          deadLease = kv.lease;
          continue;
        }
        // A different TTL: move the entry to a fresh lease of that TTL (same key, same create revision).
        const lease = await this.client.leaseClient.leaseGrant({ TTL: ttlS, ID: 0 }, o);
        const res = await this.client.kv
          .txn({
            compare: [{ key: etcdKey, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
            success: [{ request_put: { key: etcdKey, value: encodeEntry({ ...v, ttlS }), lease: lease.ID } }],
          }, o)
          .catch(async (err: unknown) => {
            await this.revoke(lease.ID);
            throw err;
          });
        if (res.succeeded) {
          await this.revoke(kv.lease);
          return true;
        }
        await this.revoke(lease.ID);
      }
      throw new LockError('ABORTED', `etcd lock store: renewing entry ${key} of lock "${name}" conflicted ${MAX_CAS_ATTEMPTS} times in a row; retry`);
    });
  }

  /** One keep-alive of `lease` on its own stream, bounded by the operation's deadline; false when etcd says the lease is gone. */
  private async keepAliveOnce(lease: string, o: CallOptions): Promise<boolean> {
    const stream = await this.client.leaseClient.leaseKeepAlive(o);
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        const left = Math.max(1, Number(o.deadline) - Date.now());
        const timer = setTimeout(() => reject(new Error(`no keep-alive answer within ${this.callTimeoutMs} ms`)), left);
        stream.on('data', (r: { TTL: string }) => {
          clearTimeout(timer);
          resolve(r);
        });
        stream.on('error', (err: Error) => {
          clearTimeout(timer);
          reject(err);
        });
        stream.write({ ID: lease });
      });
      return Number(res.TTL) > 0;
    } finally {
      endStream(stream);
    }
  }

  async addHolds(name: string, key: string, delta: number): Promise<number | undefined> {
    const v = await this.update('changing a hold count', name, key, (v) => ({ ...v, holdCount: v.holdCount + delta }));
    return v?.holdCount;
  }

  /**
   * Compare-and-swap of the entry's value on its current lease: `f` maps the current value to the new one; the
   * txn compares the mod revision and, on conflict, returns the current key so the retry needs no extra read.
   * The new value, or undefined when the entry is gone.
   */
  private async update(what: string, name: string, key: string, f: (v: StoredEntry) => StoredEntry): Promise<StoredEntry | undefined> {
    return this.call(what, async (o) => {
      const etcdKey = this.entryKey(name, key);
      let kv = await this.getKv(etcdKey, o);
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        if (kv === undefined) return undefined;
        const cur = parseEntry(kv.value);
        if (cur === undefined) return undefined;
        const next = f(cur);
        const res = await this.client.kv.txn({
          compare: [{ key: etcdKey, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
          success: [{ request_put: { key: etcdKey, value: encodeEntry(next), ignore_lease: true } }],
          failure: [{ request_range: { key: etcdKey } }],
        }, o);
        if (res.succeeded) return next;
        kv = (res.responses[0]?.response_range as IRangeResponse | undefined)?.kvs[0];
        if (attempt > 5) await sleep(Math.random() * Math.min(50, attempt * 2));
      }
      throw new LockError('ABORTED', `etcd lock store: ${what} for entry ${key} of lock "${name}" conflicted ${MAX_CAS_ATTEMPTS} times in a row; retry`);
    });
  }

  async names(prefix: string, limit: number): Promise<string[]> {
    if (limit <= 0) return [];
    return this.call('listing locks', async (o) => {
      const root = `${this.prefix}/`;
      const p = Buffer.from(root + encodeURIComponent(prefix), 'utf8');
      const end = prefixEnd(p);
      const names = new Set<string>();
      let from = p;
      for (;;) {
        const res = await this.client.kv.range({ key: from, range_end: end, keys_only: true, limit: 1000 }, o);
        for (const kv of res.kvs) {
          const rest = kv.key.toString('utf8').slice(root.length);
          const slash = rest.indexOf('/');
          if (slash < 0) continue;
          let name: string;
          try {
            name = decodeURIComponent(rest.slice(0, slash));
          } catch {
            continue; // not one of ours
          }
          if (name.startsWith(prefix)) names.add(name);
        }
        const last = res.kvs[res.kvs.length - 1];
        if (!res.more || last === undefined) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
      return [...names].sort().slice(0, limit);
    });
  }
}
