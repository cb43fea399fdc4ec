/**
 * A small leader-following client of the coordinator (`synod.txn.v1.Coordinator`) for the outbox relay and the
 * inbox consumer: unary calls over a list of coordinator replicas. An UNAVAILABLE answer carrying the
 * `synod-txn-leader` trailer is retried at that address at once; any other UNAVAILABLE (or DEADLINE_EXCEEDED
 * of one attempt) moves to the next endpoint after a short back-off. Everything is bounded by the call's
 * deadline. Publish and Subscribe are idempotent, so retries are safe.
 */
import * as grpc from '@grpc/grpc-js';
import { loadTxnProto } from '@app/proto';

export type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const LEADER_TRAILER = 'synod-txn-leader';

export interface CoordinatorConnectionOptions {
  /** host:port of the coordinator replicas (any order; the leader is found). */
  endpoints: string[];
  /** Overall deadline of one call, retries included (default 10000 ms). */
  deadlineMs?: number;
  /** Deadline of one attempt (default 5000 ms). */
  attemptMs?: number;
}

/** A coordinator error with its gRPC status. */
export class CoordinatorCallError extends Error {
  override readonly name = 'CoordinatorCallError';
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly endpoint: string,
  ) {
    super(`${grpc.status[code] ?? code} from coordinator ${endpoint}: ${details}`);
  }
}

export class CoordinatorConnection {
  private readonly clients = new Map<string, grpc.Client>();
  private cur = 0;
  private closed = false;

  constructor(private readonly opts: CoordinatorConnectionOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new Error('give at least one coordinator endpoint (host:port)');
  }

  private client(ep: string): grpc.Client {
    let c = this.clients.get(ep);
    if (!c) {
      c = new (loadTxnProto().Coordinator)(ep, grpc.credentials.createInsecure());
      this.clients.set(ep, c);
    }
    return c;
  }

  private once(ep: string, method: string, req: Msg, deadline: number): Promise<Msg> {
    const c = this.client(ep) as unknown as Record<string, (r: Msg, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => void>;
    return new Promise((res, rej) => c[method].call(c, req, { deadline }, (e, r) => (e ? rej(e) : res(r))));
  }

  /** One call, following the leader; throws CoordinatorCallError (the last error) when the deadline passes. */
  async call(method: 'Publish' | 'Subscribe', req: Msg, deadlineMs = this.opts.deadlineMs ?? 10_000): Promise<Msg> {
    if (this.closed) throw new CoordinatorCallError(grpc.status.CANCELLED, 'the connection is closed', '-');
    const eps = this.opts.endpoints;
    const end = Date.now() + deadlineMs;
    let ep = eps[this.cur % eps.length];
    let backoff = 25;
    let hops = 0;
    let last: CoordinatorCallError | undefined;
    while (Date.now() < end && !this.closed) {
      try {
        const r = await this.once(ep, method, req, Math.min(end, Date.now() + (this.opts.attemptMs ?? 5000)));
        const i = eps.indexOf(ep);
        if (i >= 0) this.cur = i;
        return r;
      } catch (err) {
        const e = err as grpc.ServiceError;
        last = new CoordinatorCallError(e.code, e.details || e.message, ep);
        if (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.DEADLINE_EXCEEDED) throw last;
        const hint = e.metadata?.get(LEADER_TRAILER)?.[0];
        if (typeof hint === 'string' && hint && hint !== ep && hops < 2 * eps.length + 2) {
          hops++;
          ep = hint;
          continue;
        }
        this.cur++;
        ep = eps[this.cur % eps.length];
        await new Promise((r) => setTimeout(r, Math.min(backoff, Math.max(0, end - Date.now()))));
        backoff = Math.min(backoff * 2, 500);
      }
    }
    throw last ?? new CoordinatorCallError(grpc.status.DEADLINE_EXCEEDED, `${method}: no coordinator answered within ${deadlineMs} ms`, ep);
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
