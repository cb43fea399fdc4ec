/**
 * The transaction coordinator's store on etcd v3 (the `etcd3` client): a second {@link TxnStore} next to
 * ConsensusTxnStore, selected with `--store etcd` (docs/txn.md).
 *
 * Layout (prefix default `synod/txn/`):
 *
 *     <prefix>data/<key>                 the versioned KV (`tx/<gid>`, `msg/<topic>/<seq>`, …)
 *     <prefix>election/<lease id hex>    one key per candidate, value = candidate id, on the candidate's lease
 *
 * KV. `version` is the key's mod revision. create = txn comparing the key's version == 0 (absent); update and a
 * versioned delete = txn comparing the mod revision (and version > 0, so revision 0 never matches an absent key).
 * `list(dir)` is one range over `<prefix>data/<dir>/` (paged, all pages at the first page's revision), keeping only
 * direct children, sorted by key.
 *
 * Election: etcd's election recipe. A campaign grants its own lease (TTL = sessionTimeoutMs rounded up to whole
 * seconds, kept alive by the store's keep-alive stream) and puts `<prefix>election/<lease id hex>` on it. The key
 * with the lowest create revision leads; every other candidate waits for the DELETE of the key with the next lower
 * create revision (a watch from the revision of the read that found it, so nothing in between is missed) and then
 * reads again. The epoch is the leader key's create revision: store-wide and strictly increasing, so a later leader
 * has a larger one.
 *
 * Guard. A write with `lead` is one txn that also compares the leader key's create revision == epoch: if that key
 * is gone (lease expired, resigned, deleted by an operator) — or is another key — nothing is written. The txn's
 * failure branch reads the leader key, so one round trip tells "not the leader any more" (NotLeaderError, and the
 * leadership's signal aborts) from "the write's own condition failed" (false). So a deposed leader cannot write
 * even when it has not noticed yet.
 *
 * A leadership ends (signal aborted) when: its lease is reported gone by a keep-alive answer, or no keep-alive was
 * answered for a whole TTL (counted from the send time of the oldest unanswered request, so never later than etcd
 * expires it); its key is deleted (watched); resign() (deletes the key, revokes the lease); close() (revokes).
 *
 * Streams: like libs/lock/src/backends/etcd.ts, not the etcd3 Watcher/Lease helpers: one watch stream per store
 * (client-chosen watch ids, etcd >= 3.4) and one keep-alive stream per store, both half-closed before they are
 * cancelled. etcd3 resets every connection to a host after a recoverable error on any call, so both streams may
 * break at any time: a broken watch makes its waiter read again, a broken keep-alive stream is reopened at the
 * next tick.
 *
 * Retries: none by the client (its default global policy retries recoverable errors, which could apply a txn twice
 * and report a successful create as "exists"); etcd3's per-host circuit breaker stays (a host that failed three
 * times in a row is skipped for 5 s; with more endpoints the call goes to another one). Failures to reach etcd
 * (unavailable, deadline — callTimeoutMs, default 5 s — broken circuit, closed client) are StoreUnavailableError.
 */
import { ClientClosedError, Etcd3, isRecoverableError } from 'etcd3';
import type { CallOptions } from '@grpc/grpc-js';
import type { ICompare, IDeleteRangeResponse, IDuplexStream, IKeyValue, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse, IOptions, IRangeResponse, IRequestOp, IResponseOp } from 'etcd3';
import { EtcdWatchMux, endStream, prefixEnd } from '@app/etcd';
import { NotLeaderError, StoreUnavailableError } from './store.js';
import type { Leadership, TxnStore, Versioned } from './store.js';

export interface EtcdTxnStoreOptions {
  /** etcd client endpoints, `host:port` or `http://host:port`. */
  endpoints: string[];
  /** Key prefix of the coordinator state (default `synod/txn/`). */
  prefix?: string;
  /** Election lease TTL (rounded up to whole seconds, at least 1; default 5000 ms): how long a dead leader blocks the next. */
  sessionTimeoutMs?: number;
  /** Deadline of each unary etcd call, ms. Default 5000. */
  callTimeoutMs?: number;
}

type GlobalPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** A global fault-handling policy that runs the call once (no retries; see the header). */
const NO_RETRY = {
  execute: <T>(fn: (ctx: { signal: AbortSignal; attempt: number }) => PromiseLike<T> | T): Promise<T> => Promise.resolve().then(() => fn({ signal: new AbortController().signal, attempt: 0 })),
} as unknown as GlobalPolicy;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));



function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return isRecoverableError(err) || err instanceof ClientClosedError || 'isBrokenCircuitError' in err || 'isIsolatedCircuitError' in err || err.name === 'GRPCConnectFailedError';
}

/** A granted election lease, kept alive until released or lost. */
interface Lease {
  id: string;
  ttlMs: number;
  /** etcd keeps the lease at least until then (the oldest unanswered request's send time + TTL). */
  validUntil: number;
  /** Send time of the oldest keep-alive request not yet answered. */
  sentAt: number | undefined;
  /** Aborted when the lease is gone (expired, revoked, released). */
  lost: AbortController;
}

interface Lead {
  key: string;
  epoch: number;
  lease: Lease;
  ac: AbortController;
}

export class EtcdTxnStore implements TxnStore {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly endpoints: string[];
  private readonly callTimeoutMs: number;
  private readonly ttlS: number;
  private closed = false;
  /** client.close() was called: no more calls at all. */
  private closedClient = false;
  /** One watch stream for every watch of this store (libs/etcd). */
  private readonly watches: EtcdWatchMux;
  private readonly leases = new Map<string, Lease>();
  private ka: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  private kaOpening: Promise<void> | undefined;
  private kaTimer: ReturnType<typeof setInterval> | undefined;
  private readonly leads = new Map<AbortSignal, Lead>();

  constructor(opts: EtcdTxnStoreOptions) {
    if (opts.endpoints.length === 0) throw new Error('etcd txn store: no endpoints given; pass at least one etcd client endpoint (host:port)');
    this.endpoints = [...opts.endpoints];
    const p = opts.prefix ?? 'synod/txn/';
    this.prefix = p.endsWith('/') ? p : `${p}/`;
    this.callTimeoutMs = opts.callTimeoutMs ?? 5000;
    this.ttlS = Math.max(1, Math.ceil((opts.sessionTimeoutMs ?? 5000) / 1000));
    const timeout = this.callTimeoutMs;
    this.client = new Etcd3({
      hosts: this.endpoints,
      grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5000, 'grpc.keepalive_permit_without_calls': 0 },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: { global: NO_RETRY },
    });
    this.watches = new EtcdWatchMux(() => this.client.watchClient.watch());
  }

  // ---- keys and errors -------------------------------------------------------------------------------------

  private dataKey(key: string): Buffer {
    return Buffer.from(`${this.prefix}data/${key}`, 'utf8');
  }

  private get electionPrefix(): Buffer {
    return Buffer.from(`${this.prefix}election/`, 'utf8');
  }

  private opts(): CallOptions {
    return { deadline: Date.now() + this.callTimeoutMs };
  }

  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError(`etcd store: ${what} after close()`);
    try {
      return await f();
    } catch (err) {
      if (err instanceof NotLeaderError || err instanceof StoreUnavailableError) throw err;
      if (isUnavailable(err) || this.closed) throw new StoreUnavailableError(`etcd store: ${what}: etcd at ${this.endpoints.join(', ')} is unreachable or has no quorum (${(err as Error).name}: ${(err as Error).message})`);
      throw err;
    }
  }

  // ---- KV --------------------------------------------------------------------------------------------------

  async start(): Promise<void> {
    // a linearizable read: answers only when the cluster has a leader and a quorum
    const p = Buffer.from(this.prefix, 'utf8');
    await this.call('start', () => this.client.kv.range({ key: p, range_end: prefixEnd(p), count_only: true }, this.opts()));
  }

  async get(key: string): Promise<Versioned | undefined> {
    return this.call(`get ${key}`, async () => {
      const kv = (await this.client.kv.range({ key: this.dataKey(key) }, this.opts())).kvs[0];
      return kv === undefined ? undefined : { key, value: kv.value, version: Number(kv.mod_revision) };
    });
  }

  async list(dir: string): Promise<Versioned[]> {
    return this.call(`list ${dir}`, async () => {
      const rel = dir === '' ? '' : `${dir.replace(/\/+$/, '')}/`;
      const p = this.dataKey(rel);
      const end = prefixEnd(p);
      const strip = `${this.prefix}data/`.length;
      const out: Versioned[] = [];
      let from = p;
      let revision: string | undefined;
      for (;;) {
        const res = await this.client.kv.range({ key: from, range_end: end, limit: 1000, ...(revision ? { revision } : {}) }, this.opts());
        revision ??= res.header.revision;
        for (const kv of res.kvs) {
          const key = kv.key.toString('utf8').slice(strip);
          if (key.slice(rel.length).includes('/')) continue; // deeper than a direct child
          out.push({ key, value: kv.value, version: Number(kv.mod_revision) });
        }
        const last = res.kvs[res.kvs.length - 1];
        if (!res.more || last === undefined) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  private leadOf(lead: Leadership): Lead {
    const l = this.leads.get(lead.signal);
    if (!l || lead.signal.aborted) throw new NotLeaderError(`candidate ${lead.candidateId} (epoch ${lead.epoch}) is no longer the leader`);
    return l;
  }

  /**
   * One txn: [leader guard] + `compare` → `op`. true when it succeeded and `applied` (if given) says so; false when
   * the write's own condition failed; NotLeaderError when the leader key is gone or another one.
   */
  private async write(what: string, lead: Leadership | undefined, compare: ICompare[], op: IRequestOp, applied?: (res: IResponseOp | undefined) => boolean): Promise<boolean> {
    return (await this.writeRevision(what, lead, compare, op, applied)) !== undefined;
  }

  /** The same, returning the revision of the write (the key's new mod revision), or undefined when not applied. */
  private async writeRevision(what: string, lead: Leadership | undefined, compare: ICompare[], op: IRequestOp, applied?: (res: IResponseOp | undefined) => boolean): Promise<number | undefined> {
    const g = lead ? this.leadOf(lead) : undefined; // a leadership already known lost fails without a round trip
    return this.call(what, async () => {
      const guardKey = g ? Buffer.from(g.key, 'utf8') : undefined;
      const res = await this.client.kv.txn({
        compare: [...(g ? [{ key: guardKey, target: 'Create' as const, result: 'Equal' as const, create_revision: g.epoch }] : []), ...compare],
        success: [op],
        failure: g ? [{ request_range: { key: guardKey } }] : [],
      }, this.opts());
      if (res.succeeded) return !applied || applied(res.responses[0]) ? Number(res.header.revision) : undefined;
      if (g) {
        const kv = (res.responses[0]?.response_range as IRangeResponse | undefined)?.kvs[0];
        if (kv === undefined || Number(kv.create_revision) !== g.epoch) {
          this.lose(g, new NotLeaderError(`candidate ${lead!.candidateId} (epoch ${g.epoch}) is no longer the leader: its election key is gone`));
          throw new NotLeaderError(`candidate ${lead!.candidateId} (epoch ${g.epoch}) is no longer the leader: its election key is gone`);
        }
      }
      return undefined;
    });
  }

  async create(key: string, value: Buffer, lead?: Leadership): Promise<boolean> {
    const k = this.dataKey(key);
    return this.write(`create ${key}`, lead, [{ key: k, target: 'Version', result: 'Equal', version: 0 }], { request_put: { key: k, value } });
  }

  async createVersioned(key: string, value: Buffer, lead?: Leadership): Promise<number | undefined> {
    const k = this.dataKey(key);
    return this.writeRevision(`create ${key}`, lead, [{ key: k, target: 'Version', result: 'Equal', version: 0 }], { request_put: { key: k, value } });
  }

  async updateVersioned(key: string, value: Buffer, version: number, lead?: Leadership): Promise<number | undefined> {
    const k = this.dataKey(key);
    return this.writeRevision(`update ${key}`, lead, [
      { key: k, target: 'Version', result: 'Greater', version: 0 },
      { key: k, target: 'Mod', result: 'Equal', mod_revision: version },
    ], { request_put: { key: k, value } });
  }

  async update(key: string, value: Buffer, version: number, lead?: Leadership): Promise<boolean> {
    const k = this.dataKey(key);
    return this.write(`update ${key}`, lead, [
      { key: k, target: 'Version', result: 'Greater', version: 0 },
      { key: k, target: 'Mod', result: 'Equal', mod_revision: version },
    ], { request_put: { key: k, value } });
  }

  async delete(key: string, version?: number, lead?: Leadership): Promise<boolean> {
    const k = this.dataKey(key);
    const compare: ICompare[] = version === undefined ? [] : [
      { key: k, target: 'Version', result: 'Greater', version: 0 },
      { key: k, target: 'Mod', result: 'Equal', mod_revision: version },
    ];
    return this.write(`delete ${key}`, lead, compare, { request_delete_range: { key: k } }, (r) => Number((r?.response_delete_range as IDeleteRangeResponse | undefined)?.deleted ?? 0) > 0);
  }

  // ---- leases ----------------------------------------------------------------------------------------------

  private async grantLease(): Promise<Lease> {
    const sent = Date.now();
    const res = await this.client.leaseClient.leaseGrant({ TTL: this.ttlS, ID: 0 }, this.opts());
    const ttlMs = Number(res.TTL) * 1000;
    const lease: Lease = { id: res.ID, ttlMs, validUntil: sent + ttlMs, sentAt: undefined, lost: new AbortController() };
    this.leases.set(lease.id, lease);
    this.kaTimer ??= setInterval(() => this.keepAliveTick(), Math.max(100, Math.floor((this.ttlS * 1000) / 3)));
    return lease;
  }

  /** Every tick: a lease with no renewal for a whole TTL is lost; the others get one keep-alive request. */
  private keepAliveTick(): void {
    const now = Date.now();
    for (const l of [...this.leases.values()]) {
      if (now >= l.validUntil) this.loseLease(l, new NotLeaderError(`the election lease ${l.id} expired: no keep-alive answered for ${l.ttlMs} ms`));
    }
    if (this.leases.size === 0 || this.closed) return;
    void this.keepAliveStream()
      .then((s) => {
        const t = Date.now();
        for (const l of this.leases.values()) {
          l.sentAt ??= t;
          s.write({ ID: l.id });
        }
      })
      .catch(() => undefined); // next tick tries again
  }

  private async keepAliveStream(): Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>> {
    if (this.ka) return this.ka;
    if (!this.kaOpening) {
      this.kaOpening = (async () => {
        const s = await this.client.leaseClient.leaseKeepAlive();
        const broken = (): void => {
          if (this.ka !== s) return;
          this.ka = undefined;
          endStream(s);
          for (const l of this.leases.values()) l.sentAt = undefined; // requests on the dead stream are never answered
        };
        s.on('data', (r: ILeaseKeepAliveResponse) => {
          const l = this.leases.get(String(r.ID));
          if (!l) return;
          if (Number(r.TTL) <= 0) return this.loseLease(l, new NotLeaderError(`the election lease ${l.id} expired`));
          const from = l.sentAt ?? Date.now() - l.ttlMs; // sentAt cleared: be conservative
          l.validUntil = Math.max(l.validUntil, from + Number(r.TTL) * 1000);
          l.sentAt = undefined;
        });
        s.on('error', broken);
        s.on('end', broken);
        if (this.closed) endStream(s);
        else this.ka = s;
      })().finally(() => (this.kaOpening = undefined));
    }
    await this.kaOpening;
    if (!this.ka) throw new Error('keep-alive stream not open');
    return this.ka;
  }

  private loseLease(l: Lease, reason: Error): void {
    if (!this.leases.delete(l.id)) return;
    l.lost.abort(reason);
    void this.revoke(l.id); // best effort: if etcd still has it, the election moves on at once
    this.stopKeepAliveIfIdle();
  }

  private stopKeepAliveIfIdle(): void {
    if (this.leases.size > 0) return;
    if (this.kaTimer) clearInterval(this.kaTimer);
    this.kaTimer = undefined;
  }

  private async revoke(id: string): Promise<void> {
    if (this.closedClient) return;
    await this.client.leaseClient.leaseRevoke({ ID: id }, this.opts()).catch(() => undefined);
  }

  // ---- watches ---------------------------------------------------------------------------------------------

  /**
   * Waits for the DELETE of `key` at or after `fromRevision`. 'deleted'; 'again' when the watch stream broke or
   * etcd cancelled the watch (the caller reads again); 'aborted' when one of `signals` aborts.
   */
  private async waitDeleted(key: Buffer, fromRevision: string, signals: AbortSignal[]): Promise<'deleted' | 'again' | 'aborted'> {
    if (signals.some((s) => s.aborted)) return 'aborted';
    return new Promise((resolve) => {
      let done = false;
      let cancel: (() => void) | undefined;
      const finish = (r: 'deleted' | 'again' | 'aborted'): void => {
        if (done) return;
        done = true;
        for (const s of signals) s.removeEventListener('abort', onAbort);
        cancel?.();
        if (r === 'again') setTimeout(() => resolve(r), 100); // no hot loop on a stream that keeps breaking
        else resolve(r);
      };
      const onAbort = (): void => finish('aborted');
      for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
      this.watches
        .add({ key, start_revision: fromRevision, filters: ['Noput'] }, (res) => {
          if (res === undefined || res.canceled) return finish('again');
          if ((res.events ?? []).some((ev) => ev.type === 'Delete')) finish('deleted');
        })
        .then(
          (c) => {
            if (done) c();
            else cancel = c;
          },
          () => finish('again'), // the stream could not be opened: read again (after the 100 ms pause)
        );
    });
  }

  // ---- election --------------------------------------------------------------------------------------------

  private async candidates(): Promise<{ kvs: IKeyValue[]; revision: string }> {
    const p = this.electionPrefix;
    const res = await this.client.kv.range({ key: p, range_end: prefixEnd(p), sort_target: 'Create', sort_order: 'Ascend' }, this.opts());
    const kvs = [...res.kvs].sort((a, b) => Number(a.create_revision) - Number(b.create_revision));
    return { kvs, revision: res.header.revision };
  }

  async campaign(candidateId: string, signal: AbortSignal): Promise<Leadership> {
    if (signal.aborted) throw signal.reason ?? new Error('campaign aborted');
    const lease = await this.call('campaign: granting a lease', () => this.grantLease());
    const key = `${this.prefix}election/${BigInt(lease.id).toString(16)}`;
    const keyBuf = Buffer.from(key, 'utf8');
    let epoch = 0;
    let verifiedAt = '0';
    try {
      await this.call('campaign: putting the election key', () =>
        this.client.kv.txn({ compare: [{ key: keyBuf, target: 'Version', result: 'Equal', version: 0 }], success: [{ request_put: { key: keyBuf, value: Buffer.from(candidateId, 'utf8'), lease: lease.id } }] }, this.opts()),
      );
      for (;;) {
        if (signal.aborted) throw signal.reason ?? new Error('campaign aborted');
        if (lease.lost.signal.aborted) throw lease.lost.signal.reason as Error;
        const { kvs, revision } = await this.call('campaign: reading the candidates', () => this.candidates());
        const idx = kvs.findIndex((kv) => kv.key.equals(keyBuf));
        if (idx < 0) throw new NotLeaderError('the election key disappeared (its lease expired); campaign again');
        if (idx === 0) {
          epoch = Number(kvs[0].create_revision);
          verifiedAt = revision;
          break;
        }
        await this.waitDeleted(kvs[idx - 1].key, String(BigInt(revision) + 1n), [signal, lease.lost.signal]);
      }
    } catch (err) {
      this.leases.delete(lease.id);
      this.stopKeepAliveIfIdle();
      lease.lost.abort(err);
      if (!this.closed) {
        await this.client.kv.deleteRange({ key: keyBuf }, this.opts()).catch(() => undefined);
        await this.revoke(lease.id);
      }
      throw err;
    }
    const ac = new AbortController();
    const entry: Lead = { key, epoch, lease, ac };
    this.leads.set(ac.signal, entry);
    lease.lost.signal.addEventListener('abort', () => this.lose(entry, lease.lost.signal.reason as Error), { once: true });
    if (lease.lost.signal.aborted) this.lose(entry, lease.lost.signal.reason as Error);
    void this.watchOwnKey(entry, verifiedAt);
    return {
      epoch,
      candidateId,
      signal: ac.signal,
      resign: async () => {
        this.lose(entry, new NotLeaderError('resigned'));
        if (this.closed) return;
        await this.client.kv.txn({ compare: [{ key: keyBuf, target: 'Create', result: 'Equal', create_revision: epoch }], success: [{ request_delete_range: { key: keyBuf } }] }, this.opts()).catch(() => undefined);
        await this.revoke(lease.id);
      },
    };
  }

  /** Ends the leadership when its key is deleted (an operator, or etcd expiring the lease); re-checks after a broken watch. */
  private async watchOwnKey(l: Lead, verifiedAt: string): Promise<void> {
    const key = Buffer.from(l.key, 'utf8');
    let from = String(BigInt(verifiedAt) + 1n);
    while (!l.ac.signal.aborted && !this.closed) {
      const r = await this.waitDeleted(key, from, [l.ac.signal]);
      if (r === 'deleted') return this.lose(l, new NotLeaderError(`the election key of epoch ${l.epoch} was deleted`));
      if (r === 'aborted') return;
      try {
        const res = await this.client.kv.range({ key }, this.opts());
        const kv = res.kvs[0];
        if (kv === undefined || Number(kv.create_revision) !== l.epoch) return this.lose(l, new NotLeaderError(`the election key of epoch ${l.epoch} is gone`));
        from = String(BigInt(res.header.revision) + 1n);
      } catch {
        await sleep(200); // etcd unreachable: the lease keep-alive decides
      }
    }
  }

  private lose(l: Lead, reason: Error): void {
    if (!this.leads.delete(l.ac.signal)) return;
    l.ac.abort(reason);
  }

  async leader(): Promise<string | undefined> {
    return this.call('leader', async () => {
      const p = this.electionPrefix;
      const res = await this.client.kv.range({ key: p, range_end: prefixEnd(p), sort_target: 'Create', sort_order: 'Ascend', limit: 1 }, this.opts());
      return res.kvs[0]?.value.toString('utf8');
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.leads.values()]) this.lose(l, new NotLeaderError('store closed'));
    const leases = [...this.leases.values()];
    this.leases.clear();
    this.stopKeepAliveIfIdle();
    for (const l of leases) l.lost.abort(new NotLeaderError('store closed'));
    // revoke (bounded): the election moves on at once, as when a consensus session closes
    await Promise.all(leases.map((l) => this.client.leaseClient.leaseRevoke({ ID: l.id }, { deadline: Date.now() + Math.min(this.callTimeoutMs, 2000) }).catch(() => undefined)));
    if (this.ka) endStream(this.ka);
    this.ka = undefined;
    this.watches.close();
    this.closedClient = true;
    this.client.close();
  }
}
