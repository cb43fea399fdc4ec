/**
 * Typed client of Synod's transaction coordinator (`synod.txn.v1.Coordinator`, docs/txn.md). It knows several
 * coordinator replicas and follows the leader: an UNAVAILABLE answer carrying the `synod-txn-leader` trailer is
 * retried there at once; other UNAVAILABLE answers are retried on the next endpoint with back-off, within the
 * call's deadline. Every coordinator call is idempotent (Begin with a caller-chosen id, RegisterBranch per
 * branch id, Commit/Abort per transaction), so retries are safe.
 */
import * as grpc from '@grpc/grpc-js';
import { loadTxnProto } from '@app/proto';
import { SynodError, toSynodError } from './errors.js';
import type { TlsOptions } from './client.js';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export type TxnState = 'ACTIVE' | 'PREPARING' | 'COMMITTED' | 'ABORTED' | 'NEEDS_ATTENTION';

export interface TxnBranch {
  branchId: string;
  participant: string;
  payload: Buffer;
  vote: string;
  outcome: string;
  attempts: number;
  lastError: string;
}

export interface TxnInfo {
  globalId: string;
  state: TxnState;
  decision: TxnState | 'TXN_STATE_UNSPECIFIED';
  branches: TxnBranch[];
  completed: boolean;
  createdAtMs: number;
  deadlineMs: number;
  decidedAtMs: number;
  reason: string;
  epoch: number;
  resolvedBy: string;
}

export interface TxnClientOptions {
  endpoints: string[];
  /** Mutual TLS to the coordinators (their CA; this client's certificate and key). */
  tls?: TlsOptions;
  /** Overall deadline of one call, retries included (default 10 s; Commit waits up to 60 s). */
  deadlineMs?: number;
}

export const TXN_LEADER_KEY = 'synod-txn-leader';

export class TxnClient implements AsyncDisposable {
  private readonly clients = new Map<string, grpc.Client>();
  private cur = 0;
  private readonly deadlineMs: number;

  constructor(private readonly opts: TxnClientOptions) {
    if (opts.endpoints.length === 0) throw new Error('TxnClient: give at least one coordinator endpoint (host:port)');
    this.deadlineMs = opts.deadlineMs ?? 10_000;
  }

  private client(ep: string): grpc.Client {
    let c = this.clients.get(ep);
    if (!c) {
      const t = this.opts.tls;
      const creds = t ? grpc.credentials.createSsl(Buffer.from(t.ca), t.key ? Buffer.from(t.key) : null, t.cert ? Buffer.from(t.cert) : null) : grpc.credentials.createInsecure();
      c = new (loadTxnProto().Coordinator)(ep, creds);
      this.clients.set(ep, c);
    }
    return c;
  }

  private once(ep: string, method: string, req: Msg, deadline: number): Promise<Msg> {
    const c = this.client(ep) as unknown as Record<string, (r: Msg, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => void>;
    return new Promise((res, rej) => c[method].call(c, req, { deadline }, (e, r) => (e ? rej(e) : res(r))));
  }

  private async call(method: string, req: Msg, deadlineMs = this.deadlineMs): Promise<Msg> {
    const end = Date.now() + deadlineMs;
    let ep = this.opts.endpoints[this.cur % this.opts.endpoints.length];
    let backoff = 25;
    let last: unknown;
    for (let attempt = 0; Date.now() < end; attempt++) {
      try {
        const r = await this.once(ep, method, req, Math.min(end, Date.now() + Math.max(2000, deadlineMs)));
        this.cur = Math.max(0, this.opts.endpoints.indexOf(ep));
        return r;
      } catch (err) {
        const e = err as grpc.ServiceError;
        last = err;
        if (e.code !== grpc.status.UNAVAILABLE) throw toSynodError(err, ep);
        const hint = e.metadata?.get(TXN_LEADER_KEY)?.[0];
        if (typeof hint === 'string' && hint !== ep && attempt < 3 * this.opts.endpoints.length + 3) {
          ep = hint;
          continue;
        }
        this.cur++;
        ep = this.opts.endpoints[this.cur % this.opts.endpoints.length];
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 500);
      }
    }
    throw last instanceof Error ? toSynodError(last, ep) : new SynodError(grpc.status.DEADLINE_EXCEEDED, `${method}: no coordinator answered within ${deadlineMs} ms`);
  }

  async begin(opts: { timeoutMs?: number; globalId?: string } = {}): Promise<{ globalId: string; deadlineMs: number }> {
    const r = await this.call('Begin', { timeoutMs: opts.timeoutMs ?? 30_000, globalId: opts.globalId ?? '' });
    return { globalId: r.globalId, deadlineMs: Number(r.deadlineMs) };
  }

  async registerBranch(globalId: string, branchId: string, participant: string, payload: Uint8Array | string = Buffer.alloc(0)): Promise<number> {
    const r = await this.call('RegisterBranch', { globalId, branchId, participant, payload: typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload) });
    return r.branches as number;
  }

  /** Resolves once the decision is durable (`state` COMMITTED or ABORTED); with `wait`, once phase two is done too. */
  async commit(globalId: string, opts: { wait?: boolean; deadlineMs?: number } = {}): Promise<{ state: TxnState; reason: string; completed: boolean }> {
    const r = await this.call('Commit', { globalId, waitForCompletion: opts.wait ?? false }, opts.deadlineMs ?? 60_000);
    return { state: r.state, reason: r.reason, completed: r.completed };
  }

  async abort(globalId: string, reason = ''): Promise<TxnState> {
    return (await this.call('Abort', { globalId, reason })).state as TxnState;
  }

  async status(globalId: string): Promise<TxnInfo> {
    return normalize(await this.call('Status', { globalId }));
  }

  async list(states: TxnState[] = [], limit = 1000): Promise<TxnInfo[]> {
    return ((await this.call('List', { states, limit })).transactions as Msg[]).map(normalize);
  }

  async resolve(globalId: string, decision: 'COMMITTED' | 'ABORTED', reason: string, operator = ''): Promise<TxnInfo> {
    return normalize(await this.call('Resolve', { globalId, decision, reason, operator }));
  }

  async publish(m: { messageId: string; topic: string; key?: string; payload: Uint8Array | string; headers?: Record<string, string> }): Promise<{ duplicate: boolean; sequence: number }> {
    const r = await this.call('Publish', { ...m, key: m.key ?? '', payload: Buffer.from(m.payload), headers: m.headers ?? {} });
    return { duplicate: r.duplicate, sequence: Number(r.sequence) };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

function normalize(t: Msg): TxnInfo {
  return {
    ...t,
    createdAtMs: Number(t.createdAtMs),
    deadlineMs: Number(t.deadlineMs),
    decidedAtMs: Number(t.decidedAtMs),
    epoch: Number(t.epoch),
    branches: ((t.branches as Msg[]) ?? []).map((b) => ({ ...b, payload: Buffer.from(b.payload ?? []) }) as TxnBranch),
  } as TxnInfo;
}
