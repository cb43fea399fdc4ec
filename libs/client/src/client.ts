/**
 * `SynodClient` — a typed client for the consensus cluster (docs/api.md, docs/cli.md).
 *
 * - Endpoints: it knows several members' client addresses and talks to one at a time (the first, to start
 *   with). On UNAVAILABLE or a connection error it follows the leader hint of the answer (trailing metadata
 *   `synod-leader-address`, else the message) or moves on to the next endpoint; after a full round without
 *   success it backs off (50 ms doubling to 500 ms) until the call's deadline.
 * - Exactly-once writes: every mutating call carries a `RequestHeader {clientId, seq}`. A retry (after
 *   UNAVAILABLE or a per-attempt DEADLINE_EXCEEDED) resends the SAME header, so the cluster applies it once and
 *   answers the retry with the remembered result. The server keeps one record per client id, so concurrent
 *   writes use separate "lanes" (`<clientId>`, `<clientId>~1`, ...): each lane carries at most one write at a
 *   time, so its seqs reach the server in order and a retry is never refused as stale.
 * - Reads retry freely. SEQUENTIAL reads pass the highest zxid this client has seen as `min_zxid`, so a read on
 *   another member never goes backwards.
 * - Non-retryable statuses (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
 *   RESOURCE_EXHAUSTED, ...) reject at once with a `SynodError`.
 */
import { createHash, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadConsensusProto } from '@app/proto';
import { SynodError, isRetryable, leaderHint, toSynodError } from './errors.js';
import { Session, SessionOptions } from './session.js';
import type {
  ChildrenResult,
  Consistency,
  CreateMode,
  CreateResult,
  Data,
  ExistsResult,
  GetResult,
  Member,
  MembersResult,
  MultiOp,
  MultiOpResult,
  MultiResult,
  ResponseHeader,
  SetResult,
  SnapshotResult,
  StatusResult,
  WatchKind,
} from './types.js';
import { Watch, WatchOptions } from './watch.js';

export interface TlsOptions {
  /** PEM of the cluster CA (Buffer or string). */
  ca: Buffer | string;
  /** PEM of the client certificate and key, for mutual TLS. */
  cert?: Buffer | string;
  key?: Buffer | string;
}

export interface SynodClientOptions {
  /** Client addresses of members, `host:port`. */
  endpoints: string[];
  tls?: TlsOptions;
  /** Overall deadline of one call, retries included (default 5000 ms). */
  deadlineMs?: number;
  /** Deadline of one attempt on one member (default max(1000, deadlineMs / 2)). */
  attemptTimeoutMs?: number;
  /** Identity for exactly-once writes (default a random UUID). At most 240 characters. */
  clientId?: string;
}

export interface CallOptions {
  /** Overrides the client's `deadlineMs` for this call. */
  deadlineMs?: number;
}

export interface ReadOptions extends CallOptions {
  consistency?: Consistency;
  /** The session reading (SEQUENTIAL monotonicity per session on the member). */
  session?: Session | number;
  /**
   * Also watch the node: the result carries a one-shot `Watch` (DATA for get/exists, CHILDREN for getChildren)
   * started at the read's zxid, so no change between the read and the watch is missed.
   */
  watch?: boolean;
}

export interface CreateOptions extends CallOptions {
  mode?: CreateMode;
  /** The owning session (required for EPHEMERAL modes). */
  session?: Session | number;
  /** Same as `session`, as an id. */
  sessionId?: number;
}

export interface VersionOptions extends CallOptions {
  /** Expected `Stat.version`; -1 (default) matches any. */
  version?: number;
}

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Unary = (req: Msg, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => grpc.ClientUnaryCall;

interface Channel {
  coordination: grpc.Client;
  cluster: grpc.Client;
}

/** How a call may be retried. */
type RetryMode = 'read' | 'write' | 'admin';

interface Lane {
  clientId: string;
  seq: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const toBytes = (d: Data | undefined): Buffer => (d === undefined ? Buffer.alloc(0) : typeof d === 'string' ? Buffer.from(d, 'utf8') : Buffer.from(d.buffer, d.byteOffset, d.byteLength));

const sessionIdOf = (s: Session | number | undefined): number => (s === undefined ? 0 : typeof s === 'number' ? s : s.id);

export class SynodClient implements AsyncDisposable {
  readonly clientId: string;
  readonly deadlineMs: number;
  readonly attemptTimeoutMs: number;
  private readonly endpointList: string[];
  private readonly channels = new Map<string, Channel>();
  private readonly creds: grpc.ChannelCredentials;
  private cur = 0;
  private maxZxid = 0;
  private closed = false;
  private readonly freeLanes: Lane[] = [];
  private laneCount = 0;
  private readonly sessions = new Set<Session>();
  private readonly watches = new Set<Watch>();

  constructor(opts: SynodClientOptions) {
    if (!opts.endpoints || opts.endpoints.length === 0) throw new SynodError(grpc.status.INVALID_ARGUMENT, 'SynodClient needs at least one endpoint (host:port)');
    this.endpointList = [...new Set(opts.endpoints.map((e) => e.trim()).filter((e) => e.length > 0))];
    this.deadlineMs = opts.deadlineMs ?? 5000;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? Math.max(1000, Math.floor(this.deadlineMs / 2));
    this.clientId = opts.clientId ?? randomUUID();
    if (this.clientId.length === 0 || this.clientId.length > 240) throw new SynodError(grpc.status.INVALID_ARGUMENT, 'clientId must have 1 to 240 characters');
    this.creds = opts.tls
      ? grpc.credentials.createSsl(
          Buffer.from(opts.tls.ca),
          opts.tls.key !== undefined ? Buffer.from(opts.tls.key) : null,
          opts.tls.cert !== undefined ? Buffer.from(opts.tls.cert) : null,
        )
      : grpc.credentials.createInsecure();
  }

  /** The endpoints known (the configured ones, then leader addresses learnt from hints). */
  get endpoints(): readonly string[] {
    return this.endpointList;
  }

  /** The endpoint the next call goes to. */
  get currentEndpoint(): string {
    return this.endpointList[this.cur];
  }

  /** The highest zxid seen in any response (passed as `min_zxid` on SEQUENTIAL reads). */
  get lastZxid(): number {
    return this.maxZxid;
  }

  // ---- plumbing -------------------------------------------------------------------------------------------

  private channel(ep: string): Channel {
    if (this.closed) throw new SynodError(grpc.status.CANCELLED, 'the client is closed');
    let ch = this.channels.get(ep);
    if (!ch) {
      const { Coordination, Cluster } = loadConsensusProto();
      const coordination = new Coordination(ep, this.creds, { 'grpc.use_local_subchannel_pool': 1 });
      const cluster = new Cluster(ep, this.creds, { channelOverride: coordination.getChannel() });
      ch = { coordination, cluster };
      this.channels.set(ep, ch);
    }
    return ch;
  }

  /** @internal the Coordination stub of an endpoint (for sessions and watches). */
  stub(ep: string): grpc.Client & Record<string, unknown> {
    return this.channel(ep).coordination as grpc.Client & Record<string, unknown>;
  }

  /** @internal the endpoint after `ep`. */
  nextEndpoint(ep: string): string {
    const i = this.endpointList.indexOf(ep);
    return this.endpointList[(i + 1) % this.endpointList.length];
  }

  /** Sends the next calls to `endpoint` first (added to the known endpoints if new); failover still applies. */
  use(endpoint: string): void {
    this.prefer(this.learn(endpoint));
  }

  /** @internal prefer `ep` for the next calls (it answered). */
  prefer(ep: string): void {
    const i = this.endpointList.indexOf(ep);
    if (i >= 0) this.cur = i;
  }

  private learn(ep: string): string {
    if (!this.endpointList.includes(ep)) this.endpointList.push(ep);
    return ep;
  }

  /** @internal records a response header's zxid. */
  observe(h: ResponseHeader | null | undefined): void {
    if (h && h.zxid > this.maxZxid) this.maxZxid = h.zxid;
  }

  private callOnce(ep: string, svc: keyof Channel, method: string, req: Msg, timeoutMs: number): Promise<Msg> {
    const stub = this.channel(ep)[svc] as unknown as Record<string, Unary>;
    return new Promise((res, rej) => {
      stub[method].call(stub, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) => (err ? rej(toSynodError(err, ep)) : res(r)));
    });
  }

  /**
   * One unary call with failover. Reads and writes retry UNAVAILABLE and DEADLINE_EXCEEDED (writes with the
   * same request header, which the caller put in `req`); admin calls retry UNAVAILABLE only (a member that is
   * not the leader refuses them with UNAVAILABLE and the leader's address).
   */
  private async unary<T>(svc: keyof Channel, method: string, req: Msg, mode: RetryMode, opts: CallOptions = {}): Promise<T> {
    const end = Date.now() + (opts.deadlineMs ?? this.deadlineMs);
    let ep = this.currentEndpoint;
    let failedInRound = 0;
    let backoff = 50;
    let last: SynodError | undefined;
    for (;;) {
      const remaining = end - Date.now();
      if (remaining <= 0) {
        throw last ?? new SynodError(grpc.status.DEADLINE_EXCEEDED, `${method}: no answer within ${opts.deadlineMs ?? this.deadlineMs} ms`);
      }
      try {
        const r = await this.callOnce(ep, svc, method, req, Math.min(remaining, this.attemptTimeoutMs));
        this.observe(r.header as ResponseHeader | undefined);
        this.prefer(ep);
        return r as T;
      } catch (err) {
        const e = err as SynodError;
        if (this.closed) throw e;
        const retry = mode === 'admin' ? e.code === grpc.status.UNAVAILABLE : isRetryable(e.code);
        if (!retry) throw e;
        last = e;
        const hint = e.code === grpc.status.UNAVAILABLE ? leaderHint(e) : undefined;
        failedInRound++;
        if (hint && hint !== ep && failedInRound < this.endpointList.length + 1) {
          ep = this.learn(hint);
          this.prefer(ep);
          continue;
        }
        ep = this.nextEndpoint(ep);
        this.prefer(ep);
        if (failedInRound >= this.endpointList.length) {
          failedInRound = 0;
          await sleep(Math.min(backoff, Math.max(0, end - Date.now())));
          backoff = Math.min(500, backoff * 2);
        }
      }
    }
  }

  private acquireLane(): Lane {
    const l = this.freeLanes.pop();
    if (l) return l;
    const n = this.laneCount++;
    return { clientId: n === 0 ? this.clientId : `${this.clientId}~${n}`, seq: 0 };
  }

  /** A mutating call: a new seq on a free lane, the same header on every retry. */
  private async write<T>(svc: keyof Channel, method: string, req: Msg, opts: CallOptions = {}): Promise<T> {
    const lane = this.acquireLane();
    lane.seq += 1;
    try {
      return await this.unary<T>(svc, method, { ...req, request: { clientId: lane.clientId, seq: lane.seq } }, 'write', opts);
    } finally {
      this.freeLanes.push(lane);
    }
  }

  private readReq(path: string, o: ReadOptions): Msg {
    const consistency = o.consistency ?? 'LINEARIZABLE';
    const session = typeof o.session === 'object' ? o.session : undefined;
    const minZxid = consistency === 'SEQUENTIAL' ? Math.max(this.maxZxid, session?.lastZxid ?? 0) : 0;
    return { path, consistency, sessionId: sessionIdOf(o.session), minZxid };
  }

  private seen(o: { session?: Session | number }, h: ResponseHeader | undefined): void {
    if (typeof o.session === 'object' && h) o.session.observe(h);
  }

  // ---- the tree -------------------------------------------------------------------------------------------

  async create(path: string, data?: Data, opts: CreateOptions = {}): Promise<CreateResult> {
    const sessionId = opts.sessionId ?? sessionIdOf(opts.session);
    const r = await this.write<CreateResult>('coordination', 'Create', { path, data: toBytes(data), mode: opts.mode ?? 'PERSISTENT', sessionId }, opts);
    this.seen(opts, r.header);
    return r;
  }

  async get(path: string, opts: ReadOptions = {}): Promise<GetResult & { watch?: Watch }> {
    const r = await this.unary<GetResult>('coordination', 'Get', this.readReq(path, opts), 'read', opts);
    this.seen(opts, r.header);
    return opts.watch ? { ...r, watch: this.watch(path, 'DATA', { startZxid: r.header.zxid }) } : r;
  }

  async set(path: string, data: Data, opts: VersionOptions = {}): Promise<SetResult> {
    return this.write<SetResult>('coordination', 'Set', { path, data: toBytes(data), version: opts.version ?? -1 }, opts);
  }

  async delete(path: string, opts: VersionOptions = {}): Promise<void> {
    await this.write('coordination', 'Delete', { path, version: opts.version ?? -1 }, opts);
  }

  async exists(path: string, opts: ReadOptions = {}): Promise<ExistsResult & { watch?: Watch }> {
    const r = await this.unary<ExistsResult>('coordination', 'Exists', this.readReq(path, opts), 'read', opts);
    this.seen(opts, r.header);
    const out: ExistsResult = r.stat ? r : { header: r.header, exists: false };
    return opts.watch ? { ...out, watch: this.watch(path, 'DATA', { startZxid: r.header.zxid }) } : out;
  }

  async getChildren(path: string, opts: ReadOptions = {}): Promise<ChildrenResult & { watch?: Watch }> {
    const r = await this.unary<ChildrenResult>('coordination', 'GetChildren', this.readReq(path, opts), 'read', opts);
    this.seen(opts, r.header);
    return opts.watch ? { ...r, watch: this.watch(path, 'CHILDREN', { startZxid: r.header.zxid }) } : r;
  }

  /** Atomic multi-op. A failed op is an answer (`succeeded: false`, per-op results), not a rejection. */
  async multi(ops: MultiOp[], opts: CallOptions = {}): Promise<MultiResult> {
    const wire = ops.map((o): Msg => {
      switch (o.op) {
        case 'create':
          return { create: { path: o.path, data: toBytes(o.data), mode: o.mode ?? 'PERSISTENT', sessionId: o.sessionId ?? 0 } };
        case 'set':
          return { set: { path: o.path, data: toBytes(o.data), version: o.version ?? -1 } };
        case 'delete':
          return { delete: { path: o.path, version: o.version ?? -1 } };
        case 'check':
          return { check: { path: o.path, version: o.version ?? -1 } };
      }
    });
    const r = await this.write<Msg>('coordination', 'Multi', { ops: wire }, opts);
    const results = ((r.results as Msg[]) ?? []).map((x): MultiOpResult => {
      switch (x.result) {
        case 'create':
          return { kind: 'create', path: x.create.path, stat: x.create.stat };
        case 'set':
          return { kind: 'set', stat: x.set.stat };
        case 'error':
          return { kind: 'error', code: x.error.code, message: x.error.message };
        case 'rolledBack':
          return { kind: 'rolledBack' };
        case 'notRun':
          return { kind: 'notRun' };
        default:
          return { kind: 'ok' };
      }
    });
    return { header: r.header, succeeded: r.succeeded, results, failedOp: r.failedOp };
  }

  // ---- sessions and watches -------------------------------------------------------------------------------

  /** Opens a session that keeps itself alive (see `Session`). */
  async session(opts: SessionOptions = {}): Promise<Session> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const r = await this.write<Msg>('coordination', 'CreateSession', { timeoutMs, clientId: opts.name ?? this.clientId }, opts);
    const s = new Session(this, r.sessionId as number, r.timeoutMs as number, r.header as ResponseHeader);
    this.sessions.add(s);
    s.once('closed', () => this.sessions.delete(s));
    s.once('expired', () => this.sessions.delete(s));
    s.start();
    return s;
  }

  /** @internal CloseSession with exactly-once retries. */
  async closeSession(id: number, opts: CallOptions = {}): Promise<void> {
    await this.write('coordination', 'CloseSession', { sessionId: id }, opts);
  }

  /**
   * Watches `path`: an async iterable of events that survives member failures (it resumes from the last zxid
   * it delivered, on another member if needed) and throws `WatchCompactedError` when the history is gone.
   */
  watch(path: string, kind: WatchKind = 'PERSISTENT', opts: WatchOptions = {}): Watch {
    const w = new Watch(this, path, kind, opts);
    this.watches.add(w);
    w.onClose(() => this.watches.delete(w));
    w.start();
    return w;
  }

  // ---- cluster --------------------------------------------------------------------------------------------

  /** Status of the member the client talks to (with failover), or of one endpoint (no failover). */
  async status(opts: CallOptions & { endpoint?: string } = {}): Promise<StatusResult> {
    if (opts.endpoint) {
      const r = await this.callOnce(opts.endpoint, 'cluster', 'Status', {}, opts.deadlineMs ?? this.attemptTimeoutMs);
      this.observe(r.header as ResponseHeader);
      return r as StatusResult;
    }
    return this.unary<StatusResult>('cluster', 'Status', {}, 'read', opts);
  }

  async members(opts: CallOptions & { serializable?: boolean } = {}): Promise<Member[]> {
    const r = await this.unary<MembersResult>('cluster', 'Members', { serializable: opts.serializable ?? false }, 'read', opts);
    return r.members;
  }

  /** Adds a learner (on the leader: a follower's UNAVAILABLE hint is followed). Returns the new membership. */
  async addMember(m: { id: number; peerUrls: string[]; clientUrls?: string[]; name?: string }, opts: CallOptions = {}): Promise<{ member: Member; members: Member[] }> {
    const r = await this.unary<Msg>('cluster', 'AddMember', { id: m.id, peerUrls: m.peerUrls, clientUrls: m.clientUrls ?? [], name: m.name ?? '' }, 'admin', opts);
    return { member: r.member as Member, members: r.members as Member[] };
  }

  async promoteMember(id: number, opts: CallOptions = {}): Promise<Member[]> {
    return (await this.unary<Msg>('cluster', 'PromoteMember', { id }, 'admin', opts)).members as Member[];
  }

  async removeMember(id: number, opts: CallOptions = {}): Promise<Member[]> {
    return (await this.unary<Msg>('cluster', 'RemoveMember', { id }, 'admin', opts)).members as Member[];
  }

  /** Hands leadership to `targetId` (0: the most up-to-date other voter). Returns the leader after it. */
  async transferLeadership(targetId = 0, opts: CallOptions = {}): Promise<number> {
    return (await this.unary<Msg>('cluster', 'TransferLeadership', { targetId }, 'admin', opts)).leader as number;
  }

  /** Downloads the serving member's snapshot (checked against its SHA-256). */
  async snapshot(opts: CallOptions & { fresh?: boolean } = {}): Promise<SnapshotResult> {
    const ep = this.currentEndpoint;
    const stub = this.channel(ep).cluster as unknown as Record<string, (req: Msg, o: grpc.CallOptions) => grpc.ClientReadableStream<Msg>>;
    const call = stub.Snapshot.call(stub, { fresh: opts.fresh ?? false }, { deadline: Date.now() + (opts.deadlineMs ?? 60_000) });
    const parts: Buffer[] = [];
    let first: Msg | undefined;
    let sha: Buffer = Buffer.alloc(0);
    try {
      for await (const c of call as AsyncIterable<Msg>) {
        first ??= c;
        parts.push(c.data as Buffer);
        if ((c.sha256 as Buffer).length > 0) sha = c.sha256 as Buffer;
      }
    } catch (err) {
      throw toSynodError(err, ep);
    }
    const data = Buffer.concat(parts);
    if (!createHash('sha256').update(data).digest().equals(sha)) throw new SynodError(grpc.status.DATA_LOSS, `snapshot from ${ep}: SHA-256 mismatch`);
    return { header: first?.header as ResponseHeader | undefined, index: first?.index ?? 0, term: first?.term ?? 0, data, sha256: sha };
  }

  // ---- lifecycle ------------------------------------------------------------------------------------------

  /** Stops sessions' keep-alives and watches, then closes every channel. Sessions are NOT closed on the server. */
  close(): void {
    if (this.closed) return;
    for (const w of [...this.watches]) w.close();
    for (const s of [...this.sessions]) s.abandon();
    this.closed = true;
    for (const ch of this.channels.values()) ch.coordination.close();
    this.channels.clear();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of [...this.sessions]) await s.close().catch(() => undefined);
    this.close();
  }
}
