/**
 * The `consensus` lock backend (the default): ZooKeeper's lock recipe on Synod's own consensus cluster.
 *
 * Layout: `<root>/<encoded lock name>/<m>-<limit>-<10-digit sequence>` — one EPHEMERAL_SEQUENTIAL node per
 * entry (m = `x` for EXCLUSIVE, `s` for SHARED), owned by this store's session, data = JSON
 * `{ownerId?, requestId?, holdCount}`. The lock name is percent-encoded into one path segment. The lock
 * directories are persistent and stay (so the sequence counter of a lock never restarts).
 *
 * - order (the fencing token) = the node's czxid: the zxid of its creation, monotonic for the cluster's life.
 * - Leases: every entry is ephemeral on the store's one session (one per lock-service instance, kept alive by
 *   libs/client), so when the instance dies or is partitioned away its entries go when the session expires.
 *   Per-entry TTLs are enforced here: each entry this store created has a timer at its lease end, reset by
 *   `renew`; when it fires the node is deleted. `renew` of an entry created by another instance only reports
 *   whether it exists (clients renew on the instance they acquired through: the lock service's KeepAlive).
 * - Waiting: one PERSISTENT_RECURSIVE watch on `<root>` per store (one gRPC stream, resumed without gaps by
 *   libs/client after a member failure) feeds local listeners keyed by node path: a waiter registers for the
 *   nodes it waits on, then checks they still exist (linearizable read), so no deletion is missed; an event
 *   wakes only the listeners of that node, so one release wakes one waiter. `notify` rewrites the node's data
 *   (a NODE_DATA_CHANGED event). When the watch history is compacted every listener is woken to re-read.
 */
import { randomUUID } from 'node:crypto';
import { SynodClient, SynodError, WatchCompactedError } from '@app/client';
import type { Session, TlsOptions, Watch } from '@app/client';
import type { EnqueueSpec, QueueEntry, QueueStore } from '../backend.js';
import { LockError } from '../types.js';
import type { LockMode } from '../types.js';

export interface ConsensusQueueStoreOptions {
  /** Client addresses of the consensus members. */
  endpoints: string[];
  /** Tree path under which locks live (default `/locks`; `/synod` is reserved by the cluster). */
  root?: string;
  /** Timeout of the store's session: how long entries outlive a dead lock-service instance (default 10 s). */
  sessionTimeoutMs?: number;
  /** Per-call deadline (default 5 s). */
  deadlineMs?: number;
  /** An existing client to use (not closed by the store). */
  client?: SynodClient;
  /** Mutual TLS to the consensus members (their CA, and this service's certificate and key). */
  tls?: TlsOptions;
}

interface NodeData {
  ownerId?: string;
  requestId?: string;
  holdCount: number;
}

const NAME_RE = /^([xs])-(\d+)-(\d{10})$/;

function unavailable(err: unknown, what: string): never {
  if (err instanceof LockError) throw err;
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof SynodError && (err.codeName === 'INVALID_ARGUMENT' || err.codeName === 'FAILED_PRECONDITION'))
    throw new LockError(err.codeName, `consensus backend: ${what} failed: ${msg}`);
  throw new LockError('UNAVAILABLE', `consensus backend: ${what} failed: ${msg} (is the Synod consensus cluster reachable and does it have a leader?)`);
}

const isCode = (err: unknown, code: string): boolean => err instanceof SynodError && err.codeName === code;

export class ConsensusQueueStore implements QueueStore {
  readonly kind = 'consensus' as const;
  private readonly root: string;
  private readonly client: SynodClient;
  private readonly ownsClient: boolean;
  private session: Session | undefined;
  private sessionOpening: Promise<Session> | undefined;
  private rootWatch: Watch | undefined;
  private watchLoop: Promise<void> | undefined;
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly leaseTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly knownDirs = new Set<string>();
  /**
   * What never changes about an entry (its czxid, owner and request id), by path: a waiter re-reading the
   * queue then costs one GetChildren plus a Get per entry it has not seen yet, not a Get per entry. Hold counts
   * come from here only in `entries()` (for Describe); `get()` and `addHolds()` read them fresh.
   */
  private readonly known = new Map<string, QueueEntry>();
  private closed = false;

  constructor(private readonly opts: ConsensusQueueStoreOptions) {
    this.root = (opts.root ?? '/locks').replace(/\/+$/, '');
    this.ownsClient = opts.client === undefined;
    this.client = opts.client ?? new SynodClient({ endpoints: opts.endpoints, deadlineMs: opts.deadlineMs ?? 5000, tls: opts.tls });
  }

  async start(): Promise<void> {
    try {
      await this.ensurePath(this.root);
      await this.ensureSession();
    } catch (err) {
      unavailable(err, 'start');
    }
    this.startWatch();
  }

  // ---- paths ----------------------------------------------------------------------------------------------

  private dir(name: string): string {
    return `${this.root}/${encodeURIComponent(name)}`;
  }

  private path(name: string, key: string): string {
    return `${this.dir(name)}/${key}`;
  }

  private async ensurePath(path: string): Promise<void> {
    if (this.knownDirs.has(path)) return;
    const parts = path.split('/').filter(Boolean);
    let cur = '';
    for (const p of parts) {
      cur += `/${p}`;
      if (this.knownDirs.has(cur)) continue;
      try {
        await this.client.create(cur);
      } catch (err) {
        if (!isCode(err, 'ALREADY_EXISTS')) throw err;
      }
      this.knownDirs.add(cur);
    }
  }

  // ---- session --------------------------------------------------------------------------------------------

  private async ensureSession(): Promise<Session> {
    if (this.session && this.session.state !== 'expired' && this.session.state !== 'closed') return this.session;
    this.sessionOpening ??= (async () => {
      try {
        const s = await this.client.session({ timeoutMs: this.opts.sessionTimeoutMs ?? 10_000, name: `synod-lock-${randomUUID()}` });
        s.once('expired', () => {
          if (this.session === s) this.session = undefined;
          // every entry of the session is gone: their lease timers are moot; watchers learn it from the deletes
          for (const t of this.leaseTimers.values()) clearTimeout(t);
          this.leaseTimers.clear();
        });
        this.session = s;
        return s;
      } finally {
        this.sessionOpening = undefined;
      }
    })();
    return this.sessionOpening;
  }

  // ---- the watch feeding local listeners -------------------------------------------------------------------

  private startWatch(): void {
    if (this.watchLoop || this.closed) return;
    this.watchLoop = (async () => {
      let backoff = 50;
      while (!this.closed) {
        const w = this.client.watch(this.root, 'PERSISTENT_RECURSIVE');
        this.rootWatch = w;
        try {
          for await (const ev of w) {
            backoff = 50;
            if (ev.type === 'NODE_DELETED') this.known.delete(ev.path);
            if (ev.type === 'NODE_DELETED' || ev.type === 'NODE_DATA_CHANGED') this.fire(ev.path);
          }
        } catch (err) {
          if (this.closed) break;
          // compacted history or a non-retryable failure: wake everyone to re-read, then watch afresh
          if (!(err instanceof WatchCompactedError)) await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 2000);
          this.fireAll();
        } finally {
          w.close();
        }
      }
    })();
  }

  private fire(path: string): void {
    const set = this.listeners.get(path);
    if (!set) return;
    for (const f of [...set]) f();
  }

  private fireAll(): void {
    for (const set of [...this.listeners.values()]) for (const f of [...set]) f();
  }

  // ---- QueueStore ------------------------------------------------------------------------------------------

  async enqueue(name: string, spec: EnqueueSpec): Promise<QueueEntry> {
    const data: NodeData = { ownerId: spec.ownerId, requestId: spec.requestId, holdCount: 1 };
    try {
      const dir = this.dir(name);
      await this.ensurePath(dir);
      const s = await this.ensureSession();
      const prefix = `${dir}/${spec.mode === 'SHARED' ? 's' : 'x'}-${spec.limit}-`;
      const r = await this.client.create(prefix, JSON.stringify(data), { mode: 'EPHEMERAL_SEQUENTIAL', session: s });
      const key = r.path.slice(dir.length + 1);
      this.armLease(name, key, spec.ttlMs);
      const e: QueueEntry = { key, order: r.stat.czxid, mode: spec.mode, limit: spec.limit, ownerId: spec.ownerId, requestId: spec.requestId, holdCount: 1 };
      this.known.set(r.path, e);
      return { ...e };
    } catch (err) {
      unavailable(err, `enqueue on lock "${name}"`);
    }
  }

  private armLease(name: string, key: string, ttlMs: number): void {
    const path = this.path(name, key);
    const old = this.leaseTimers.get(path);
    if (old) clearTimeout(old);
    const t = setTimeout(() => {
      this.leaseTimers.delete(path);
      void this.client.delete(path).catch(() => undefined);
    }, ttlMs);
    t.unref();
    this.leaseTimers.set(path, t);
  }

  private async read(name: string, key: string): Promise<QueueEntry | undefined> {
    const m = NAME_RE.exec(key);
    if (!m) return undefined;
    try {
      const r = await this.client.get(this.path(name, key));
      let d: NodeData = { holdCount: 1 };
      try {
        d = JSON.parse(r.data.toString('utf8')) as NodeData;
      } catch {
        // not ours: treated as a plain exclusive entry
      }
      const mode: LockMode = m[1] === 's' ? 'SHARED' : 'EXCLUSIVE';
      const e: QueueEntry = { key, order: r.stat.czxid, mode, limit: Number(m[2]), ownerId: d.ownerId, requestId: d.requestId, holdCount: d.holdCount ?? 1 };
      if (this.known.size > 100_000) this.known.clear();
      this.known.set(this.path(name, key), e);
      return e;
    } catch (err) {
      if (isCode(err, 'NOT_FOUND')) {
        this.known.delete(this.path(name, key));
        return undefined;
      }
      throw err;
    }
  }

  async entries(name: string): Promise<QueueEntry[]> {
    try {
      let children: string[];
      try {
        children = (await this.client.getChildren(this.dir(name))).children;
      } catch (err) {
        if (isCode(err, 'NOT_FOUND')) return [];
        throw err;
      }
      const seq = (k: string): string => k.slice(k.lastIndexOf('-') + 1);
      const keys = children.filter((c) => NAME_RE.test(c)).sort((a, b) => (seq(a) < seq(b) ? -1 : seq(a) > seq(b) ? 1 : 0));
      const out: QueueEntry[] = [];
      const missing = keys.filter((k) => !this.known.has(this.path(name, k)));
      for (let i = 0; i < missing.length; i += 16) await Promise.all(missing.slice(i, i + 16).map((k) => this.read(name, k)));
      for (const k of keys) {
        const e = this.known.get(this.path(name, k));
        if (e) out.push(e);
      }
      return out.sort((a, b) => a.order - b.order);
    } catch (err) {
      unavailable(err, `reading lock "${name}"`);
    }
  }

  async get(name: string, key: string): Promise<QueueEntry | undefined> {
    try {
      return await this.read(name, key);
    } catch (err) {
      unavailable(err, `reading entry ${key} of lock "${name}"`);
    }
  }

  async watch(name: string, keys: string[], signal: AbortSignal): Promise<void> {
    if (signal.aborted || keys.length === 0) return;
    this.startWatch();
    const paths = keys.map((k) => this.path(name, k));
    let wake!: () => void;
    const woken = new Promise<void>((r) => (wake = r));
    for (const p of paths) {
      let set = this.listeners.get(p);
      if (!set) this.listeners.set(p, (set = new Set()));
      set.add(wake);
    }
    const onAbort = (): void => wake();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // Registered first, then checked: a deletion after this read arrives as an event.
      const exist = await Promise.all(paths.map((p) => this.client.exists(p).then((r) => r.exists)));
      if (exist.some((e) => !e)) return;
      await woken;
    } catch (err) {
      unavailable(err, `watching lock "${name}"`);
    } finally {
      signal.removeEventListener('abort', onAbort);
      for (const p of paths) {
        const set = this.listeners.get(p);
        set?.delete(wake);
        if (set?.size === 0) this.listeners.delete(p);
      }
    }
  }

  async notify(name: string, key: string): Promise<void> {
    try {
      const e = await this.client.get(this.path(name, key));
      await this.client.set(this.path(name, key), e.data);
    } catch (err) {
      if (isCode(err, 'NOT_FOUND')) return;
      unavailable(err, `notify on lock "${name}"`);
    }
  }

  async remove(name: string, key: string): Promise<boolean> {
    const path = this.path(name, key);
    const t = this.leaseTimers.get(path);
    if (t) clearTimeout(t);
    this.leaseTimers.delete(path);
    try {
      await this.client.delete(path);
      return true;
    } catch (err) {
      if (isCode(err, 'NOT_FOUND')) return false;
      unavailable(err, `removing entry ${key} of lock "${name}"`);
    }
  }

  async renew(name: string, key: string, ttlMs: number): Promise<boolean> {
    const path = this.path(name, key);
    try {
      const r = await this.client.exists(path);
      if (!r.exists) return false;
      if (this.leaseTimers.has(path)) this.armLease(name, key, ttlMs);
      return true;
    } catch (err) {
      unavailable(err, `renewing entry ${key} of lock "${name}"`);
    }
  }

  async addHolds(name: string, key: string, delta: number): Promise<number | undefined> {
    const path = this.path(name, key);
    try {
      for (let attempt = 0; attempt < 100; attempt++) {
        let r;
        try {
          r = await this.client.get(path);
        } catch (err) {
          if (isCode(err, 'NOT_FOUND')) return undefined;
          throw err;
        }
        const d = JSON.parse(r.data.toString('utf8')) as NodeData;
        const next: NodeData = { ...d, holdCount: (d.holdCount ?? 1) + delta };
        try {
          await this.client.set(path, JSON.stringify(next), { version: r.stat.version });
          return next.holdCount;
        } catch (err) {
          if (isCode(err, 'NOT_FOUND')) return undefined;
          if (!isCode(err, 'FAILED_PRECONDITION')) throw err;
        }
      }
      throw new LockError('ABORTED', `hold count of entry ${key} of lock "${name}" kept changing: 100 compare-and-set attempts failed`);
    } catch (err) {
      unavailable(err, `updating entry ${key} of lock "${name}"`);
    }
  }

  async names(prefix: string, limit: number): Promise<string[]> {
    try {
      let dirs: string[];
      try {
        dirs = (await this.client.getChildren(this.root)).children;
      } catch (err) {
        if (isCode(err, 'NOT_FOUND')) return [];
        throw err;
      }
      const names = dirs.map((d) => decodeURIComponent(d)).filter((n) => n.startsWith(prefix)).sort();
      const out: string[] = [];
      for (const n of names) {
        if (out.length >= limit) break;
        const c = await this.client.getChildren(this.dir(n)).catch(() => ({ children: [] as string[] }));
        if (c.children.some((k) => NAME_RE.test(k))) out.push(n);
      }
      return out;
    } catch (err) {
      unavailable(err, 'listing locks');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.leaseTimers.values()) clearTimeout(t);
    this.leaseTimers.clear();
    this.fireAll();
    this.rootWatch?.close();
    await this.watchLoop?.catch(() => undefined);
    await this.session?.close().catch(() => undefined);
    if (this.ownsClient) this.client.close();
  }
}
