/**
 * The replicated store behind the transaction coordinator: a small versioned key-value interface with
 * compare-and-set, plus leader election whose epoch guards every write — so a coordinator that lost its
 * leadership (session expired, partitioned away) cannot write a decision, even if it has not noticed yet.
 *
 * Keys are relative paths of `[A-Za-z0-9._-]` segments joined by '/', e.g. `tx/<global id>`,
 * `msg/<topic>/<sequence>`. `list(dir)` returns the direct children of `dir`.
 *
 * Implementations: ConsensusTxnStore (the Synod consensus cluster; default) below; EtcdTxnStore in etcd.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { SynodClient, SynodError } from '@app/client';
import type { Session, TlsOptions } from '@app/client';

export interface Versioned {
  key: string;
  value: Buffer;
  /** Changes on every update; pass it back to `update`/`delete` for compare-and-set. */
  version: number;
}

export interface Leadership {
  /** Monotonic across leaders (a later leader has a larger epoch). */
  readonly epoch: number;
  readonly candidateId: string;
  /** Aborted when leadership is lost (session expired, resigned, store closed). */
  readonly signal: AbortSignal;
  resign(): Promise<void>;
}

/** A guarded write was refused because the writer is no longer the leader. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
}

/** The store cannot be reached (or has no quorum). */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
}

export interface TxnStore {
  start(): Promise<void>;
  close(): Promise<void>;
  get(key: string): Promise<Versioned | undefined>;
  /** Direct children of `dir`, sorted by key. */
  list(dir: string): Promise<Versioned[]>;
  /** Creates `key` if absent (false if it exists). With `lead`, only while that leadership holds (else NotLeaderError). */
  create(key: string, value: Buffer, lead?: Leadership): Promise<boolean>;
  /** Compare-and-set on `version`; false when the key is absent or at another version. */
  update(key: string, value: Buffer, version: number, lead?: Leadership): Promise<boolean>;
  /**
   * `create` / `update` that also return the key's version after the write (undefined when the condition
   * failed), so a leader can keep the records it writes cached and skip the read before its next
   * compare-and-set.
   */
  createVersioned(key: string, value: Buffer, lead?: Leadership): Promise<number | undefined>;
  updateVersioned(key: string, value: Buffer, version: number, lead?: Leadership): Promise<number | undefined>;
  /** Deletes (at `version` if given); false when absent or at another version. */
  delete(key: string, version?: number, lead?: Leadership): Promise<boolean>;
  /** Resolves once `candidateId` leads (FIFO among candidates); rejects if `signal` aborts first. */
  campaign(candidateId: string, signal: AbortSignal): Promise<Leadership>;
  /** The current leader's candidate id, if any. */
  leader(): Promise<string | undefined>;
}

const isCode = (err: unknown, code: string): boolean => err instanceof SynodError && err.codeName === code;

function wrap(err: unknown, what: string): never {
  if (err instanceof NotLeaderError || err instanceof StoreUnavailableError) throw err;
  if (err instanceof SynodError && (err.codeName === 'UNAVAILABLE' || err.codeName === 'DEADLINE_EXCEEDED'))
    throw new StoreUnavailableError(`consensus store: ${what}: ${err.message}`);
  throw err;
}

export interface ConsensusTxnStoreOptions {
  endpoints: string[];
  /** Tree path under which the coordinator keeps its state (default `/txn`). */
  root?: string;
  /** Session timeout of the leader election (default 5000 ms): how long a dead leader blocks a new one. */
  sessionTimeoutMs?: number;
  deadlineMs?: number;
  /** Mutual TLS to the consensus members (their CA, and this coordinator's certificate and key). */
  tls?: TlsOptions;
}

/**
 * The store on a Synod consensus cluster. Keys are nodes under `<root>/data/`; election is ZooKeeper's leader
 * recipe: each candidate creates an EPHEMERAL_SEQUENTIAL node under `<root>/election/` on its session; the
 * lowest leads, each other watches its predecessor. The epoch is the leader node's czxid. A guarded write is a
 * `multi` of `check(leader node)` and the write: if the leader node is gone, nothing is written.
 */
export class ConsensusTxnStore implements TxnStore {
  private readonly client: SynodClient;
  private readonly root: string;
  private session: Session | undefined;
  private readonly dirs = new Set<string>();
  private readonly leaderships = new Set<{ path: string; ac: AbortController }>();

  constructor(private readonly opts: ConsensusTxnStoreOptions) {
    this.client = new SynodClient({ endpoints: opts.endpoints, deadlineMs: opts.deadlineMs ?? 5000, tls: opts.tls });
    this.root = (opts.root ?? '/txn').replace(/\/+$/, '');
  }

  private path(key: string): string {
    return `${this.root}/data/${key}`;
  }

  async start(): Promise<void> {
    try {
      await this.ensureDir(`${this.root}/data`);
      await this.ensureDir(`${this.root}/election`);
    } catch (err) {
      wrap(err, 'start');
    }
  }

  private async ensureDir(path: string): Promise<void> {
    if (this.dirs.has(path)) return;
    let cur = '';
    for (const p of path.split('/').filter(Boolean)) {
      cur += `/${p}`;
      if (this.dirs.has(cur)) continue;
      try {
        await this.client.create(cur);
      } catch (err) {
        if (!isCode(err, 'ALREADY_EXISTS')) throw err;
      }
      this.dirs.add(cur);
    }
  }

  async get(key: string): Promise<Versioned | undefined> {
    try {
      const r = await this.client.get(this.path(key));
      return { key, value: r.data, version: r.stat.version };
    } catch (err) {
      if (isCode(err, 'NOT_FOUND')) return undefined;
      wrap(err, `get ${key}`);
    }
  }

  async list(dir: string): Promise<Versioned[]> {
    try {
      let children: string[];
      try {
        children = (await this.client.getChildren(this.path(dir))).children;
      } catch (err) {
        if (isCode(err, 'NOT_FOUND')) return [];
        throw err;
      }
      const out: Versioned[] = [];
      for (let i = 0; i < children.length; i += 32) {
        const got = await Promise.all(children.slice(i, i + 32).map((c) => this.get(`${dir}/${c}`)));
        for (const g of got) if (g) out.push(g);
      }
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    } catch (err) {
      wrap(err, `list ${dir}`);
    }
  }

  private guard(lead: Leadership | undefined): { op: 'check'; path: string }[] {
    if (!lead) return [];
    const l = [...this.leaderships].find((x) => x.ac.signal === lead.signal);
    if (!l || lead.signal.aborted) throw new NotLeaderError(`candidate ${lead.candidateId} (epoch ${lead.epoch}) is no longer the leader`);
    return [{ op: 'check', path: l.path }];
  }

  /** Runs a guarded write as a multi; maps the failing op to false (the write's own condition) or NotLeaderError. */
  private async guarded(lead: Leadership | undefined, op: Parameters<SynodClient['multi']>[0][number], falseOn: grpc.status[]): Promise<boolean> {
    return (await this.guardedVersion(lead, op, falseOn)) !== undefined;
  }

  /** The same, returning the written node's version (-1 for a delete), or undefined when the condition failed. */
  private async guardedVersion(lead: Leadership | undefined, op: Parameters<SynodClient['multi']>[0][number], falseOn: grpc.status[]): Promise<number | undefined> {
    const checks = this.guard(lead);
    const r = await this.client.multi([...checks, op]);
    if (r.succeeded) {
      const res = r.results[checks.length];
      return res && (res.kind === 'create' || res.kind === 'set') ? res.stat.version : -1;
    }
    if (checks.length > 0 && r.failedOp === 0) {
      this.lose(lead!);
      throw new NotLeaderError(`candidate ${lead!.candidateId} (epoch ${lead!.epoch}) is no longer the leader: its election node is gone`);
    }
    const failed = r.results[r.failedOp];
    if (failed?.kind === 'error' && falseOn.includes(failed.code)) return undefined;
    throw new Error(`consensus store: ${op.op} ${op.path} failed: ${failed?.kind === 'error' ? failed.message : 'unknown'}`);
  }

  async create(key: string, value: Buffer, lead?: Leadership): Promise<boolean> {
    try {
      const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/')) : '';
      await this.ensureDir(dir ? this.path(dir) : `${this.root}/data`);
      return await this.guarded(lead, { op: 'create', path: this.path(key), data: value }, [grpc.status.ALREADY_EXISTS]);
    } catch (err) {
      wrap(err, `create ${key}`);
    }
  }

  async update(key: string, value: Buffer, version: number, lead?: Leadership): Promise<boolean> {
    return (await this.updateVersioned(key, value, version, lead)) !== undefined;
  }

  async updateVersioned(key: string, value: Buffer, version: number, lead?: Leadership): Promise<number | undefined> {
    try {
      return await this.guardedVersion(lead, { op: 'set', path: this.path(key), data: value, version }, [grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION]);
    } catch (err) {
      wrap(err, `update ${key}`);
    }
  }

  async createVersioned(key: string, value: Buffer, lead?: Leadership): Promise<number | undefined> {
    try {
      const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/')) : '';
      await this.ensureDir(dir ? this.path(dir) : `${this.root}/data`);
      return await this.guardedVersion(lead, { op: 'create', path: this.path(key), data: value }, [grpc.status.ALREADY_EXISTS]);
    } catch (err) {
      wrap(err, `create ${key}`);
    }
  }

  async delete(key: string, version?: number, lead?: Leadership): Promise<boolean> {
    try {
      return await this.guarded(lead, { op: 'delete', path: this.path(key), version: version ?? -1 }, [grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION]);
    } catch (err) {
      wrap(err, `delete ${key}`);
    }
  }

  private lose(lead: Leadership): void {
    for (const l of this.leaderships) if (l.ac.signal === lead.signal) {
      this.leaderships.delete(l);
      l.ac.abort(new NotLeaderError('leadership lost'));
    }
  }

  private async ensureSession(): Promise<Session> {
    if (this.session && this.session.state === 'open') return this.session;
    const s = await this.client.session({ timeoutMs: this.opts.sessionTimeoutMs ?? 5000, name: 'synod-txn' });
    s.once('expired', () => {
      for (const l of [...this.leaderships]) {
        this.leaderships.delete(l);
        l.ac.abort(new NotLeaderError('the election session expired'));
      }
    });
    this.session = s;
    return s;
  }

  async campaign(candidateId: string, signal: AbortSignal): Promise<Leadership> {
    const dir = `${this.root}/election`;
    await this.ensureDir(dir);
    const s = await this.ensureSession();
    const mine = await this.client.create(`${dir}/c-`, candidateId, { mode: 'EPHEMERAL_SEQUENTIAL', session: s });
    const myName = mine.path.slice(dir.length + 1);
    try {
      for (;;) {
        if (signal.aborted) throw signal.reason ?? new Error('campaign aborted');
        const children = (await this.client.getChildren(dir)).children.sort();
        const idx = children.indexOf(myName);
        if (idx < 0) throw new NotLeaderError('the election node disappeared (session expired); campaign again');
        if (idx === 0) break;
        const pred = `${dir}/${children[idx - 1]}`;
        const ex = await this.client.exists(pred, { watch: true });
        if (!ex.exists) {
          ex.watch?.close();
          continue;
        }
        const w = ex.watch!;
        const onAbort = (): void => w.close();
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          for await (const _ev of w) break;
        } finally {
          signal.removeEventListener('abort', onAbort);
          w.close();
        }
      }
    } catch (err) {
      await this.client.delete(mine.path).catch(() => undefined);
      throw err;
    }
    const ac = new AbortController();
    const entry = { path: mine.path, ac };
    this.leaderships.add(entry);
    // watch our own node: an operator deleting it, or the session expiring, ends the leadership
    void (async () => {
      try {
        const ex = await this.client.exists(mine.path, { watch: true });
        if (!ex.exists) return this.lose({ signal: ac.signal } as Leadership);
        const w = ex.watch!;
        ac.signal.addEventListener('abort', () => w.close(), { once: true });
        for await (const ev of w) if (ev.type === 'NODE_DELETED') this.lose({ signal: ac.signal } as Leadership);
      } catch {
        // the watch failed: the guard on every write still protects decisions
      }
    })();
    const client = this.client;
    return {
      epoch: mine.stat.czxid,
      candidateId,
      signal: ac.signal,
      resign: async () => {
        this.leaderships.delete(entry);
        ac.abort(new NotLeaderError('resigned'));
        await client.delete(mine.path).catch(() => undefined);
      },
    };
  }

  async leader(): Promise<string | undefined> {
    try {
      const dir = `${this.root}/election`;
      const children = (await this.client.getChildren(dir)).children.sort();
      for (const c of children) {
        try {
          return (await this.client.get(`${dir}/${c}`)).data.toString('utf8');
        } catch (err) {
          if (!isCode(err, 'NOT_FOUND')) throw err;
        }
      }
      return undefined;
    } catch (err) {
      if (isCode(err, 'NOT_FOUND')) return undefined;
      wrap(err, 'leader');
    }
  }

  async close(): Promise<void> {
    for (const l of [...this.leaderships]) {
      this.leaderships.delete(l);
      l.ac.abort(new NotLeaderError('store closed'));
    }
    await this.session?.close().catch(() => undefined);
    this.client.close();
  }
}
