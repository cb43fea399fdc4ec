/**
 * A session that keeps itself alive over the `KeepAlive` stream.
 *
 * - Pings every timeout/3 on one stream (to the client's current endpoint). When the stream fails, or two
 *   pings in a row go unanswered, it reopens the stream on the next endpoint and pings at once.
 * - `renewedAt` is the send time of the last ping the server answered; the session counts as alive until
 *   `renewedAt + timeoutMs`. If that passes without a renewal, or the server answers `expired`, the session
 *   emits `expired` (a `SessionExpiredError`) once and stops; open a new session then.
 * - `close()` stops pinging and closes the session on the server (its ephemeral nodes go in one zxid);
 *   `await using s = await client.session(...)` does it at the end of the scope.
 *
 * Events: `expired` (SessionExpiredError), `closed`, `renewed` (ttlMs), `reconnect` (endpoint).
 */
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { SynodClient, CallOptions } from './client.js';
import { SessionExpiredError } from './errors.js';
import type { ResponseHeader } from './types.js';

export interface SessionOptions extends CallOptions {
  /** Requested timeout (default 10 s); the server clamps it, `Session.timeoutMs` is what it granted. */
  timeoutMs?: number;
  /** Free-form identity shown by the server (default the client id). */
  name?: string;
}

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export type SessionState = 'open' | 'expired' | 'closed';

export class Session extends EventEmitter implements AsyncDisposable {
  private stream: grpc.ClientDuplexStream<Msg, Msg> | undefined;
  private endpoint: string;
  private timer: ReturnType<typeof setInterval> | undefined;
  private pending: number[] = [];
  private maxZxid: number;
  state: SessionState = 'open';
  /** Send time of the last ping the server answered (ms since the epoch). */
  renewedAt: number;
  /** The server's remaining TTL in its last answer. */
  ttlMs: number;

  constructor(
    private readonly client: SynodClient,
    readonly id: number,
    readonly timeoutMs: number,
    header: ResponseHeader,
  ) {
    super();
    this.endpoint = client.currentEndpoint;
    this.maxZxid = header.zxid;
    this.renewedAt = Date.now();
    this.ttlMs = timeoutMs;
  }

  /** The highest zxid seen by calls made with this session. */
  get lastZxid(): number {
    return this.maxZxid;
  }

  /** @internal */
  observe(h: ResponseHeader): void {
    if (h.zxid > this.maxZxid) this.maxZxid = h.zxid;
  }

  get pingIntervalMs(): number {
    return Math.max(10, Math.floor(this.timeoutMs / 3));
  }

  /** @internal */
  start(): void {
    this.open(this.client.currentEndpoint);
    this.timer = setInterval(() => this.tick(), this.pingIntervalMs);
    this.timer.unref?.();
    this.ping();
  }

  private open(ep: string): void {
    this.endpoint = ep;
    this.pending = [];
    let call: grpc.ClientDuplexStream<Msg, Msg>;
    try {
      const stub = this.client.stub(ep) as unknown as Record<string, () => grpc.ClientDuplexStream<Msg, Msg>>;
      call = stub.KeepAlive.call(stub);
    } catch {
      return; // the client is closed
    }
    this.stream = call;
    call.on('data', (r: Msg) => {
      if (call !== this.stream || this.state !== 'open' || r.sessionId !== this.id) return;
      const sent = this.pending.shift() ?? Date.now();
      if (r.header) this.client.observe(r.header as ResponseHeader);
      if (r.expired) {
        this.expire(`the server (member ${(r.header as ResponseHeader | undefined)?.memberId ?? '?'}) reports it expired`);
        return;
      }
      this.renewedAt = Math.max(this.renewedAt, sent);
      this.ttlMs = r.ttlMs as number;
      this.emit('renewed', this.ttlMs);
    });
    const broken = (): void => {
      if (call !== this.stream || this.state !== 'open') return;
      this.stream = undefined;
      // Reconnect to the next member soon (not in the same turn: a dead member fails fast).
      setTimeout(() => this.reconnect(), 20).unref?.();
    };
    call.on('error', broken);
    call.on('end', broken);
  }

  private reconnect(): void {
    if (this.state !== 'open' || this.stream) return;
    const ep = this.client.nextEndpoint(this.endpoint);
    this.emit('reconnect', ep);
    this.open(ep);
    this.ping();
  }

  private ping(): void {
    if (this.state !== 'open' || !this.stream) return;
    this.pending.push(Date.now());
    this.stream.write({ sessionId: this.id });
  }

  private tick(): void {
    if (this.state !== 'open') return;
    if (Date.now() > this.renewedAt + this.timeoutMs) {
      this.expire(`not renewed within its ${this.timeoutMs} ms timeout (no member answered the keep-alives)`);
      return;
    }
    if (this.stream && this.pending.length >= 2) {
      // Two pings unanswered: this member cannot reach a leader; try the next one.
      const old = this.stream;
      this.stream = undefined;
      old.cancel();
      this.reconnect();
      return;
    }
    if (!this.stream) this.reconnect();
    else this.ping();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      s.end();
      s.cancel();
    }
  }

  private expire(reason: string): void {
    if (this.state !== 'open') return;
    this.state = 'expired';
    this.stop();
    this.emit('expired', new SessionExpiredError(this.id, reason));
  }

  /** Stops keeping the session alive without closing it on the server (it expires after its timeout). */
  abandon(): void {
    if (this.state !== 'open') return;
    this.state = 'closed';
    this.stop();
    this.emit('closed');
  }

  /** Closes the session on the server (its ephemeral nodes are deleted) and stops the keep-alives. */
  async close(opts: CallOptions = {}): Promise<void> {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.stop();
    try {
      if (wasOpen && !this.client.isClosed) await this.client.closeSession(this.id, opts);
    } finally {
      this.emit('closed');
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Resolves when the session expires; never resolves if it is closed first. */
  expired(): Promise<SessionExpiredError> {
    return new Promise((r) => this.once('expired', r));
  }

  /** The endpoint the keep-alive stream is on. */
  get currentEndpoint(): string {
    return this.endpoint;
  }
}
