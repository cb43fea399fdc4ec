/**
 * A watch as an async iterable of events that survives member failures.
 *
 * It opens a `Watch` stream on the client's current endpoint and adds one watch. Events are delivered in zxid
 * order; the watch remembers the zxid up to which it has delivered everything (the `start_zxid` it was given,
 * else the zxid the server registered it at, then the zxid of each delivered batch). When the stream breaks
 * (member killed, stopping, RESOURCE_EXHAUSTED for a slow reader) it reopens on the next endpoint and adds the
 * watch again with `start_zxid` = that zxid: the server replays what came after it, so nothing is missed and
 * nothing is delivered twice (events at or below the mark are dropped, should a server resend them).
 *
 * One-shot kinds (DATA, CHILDREN) end after their event. When the server reports the history as compacted the
 * iteration throws `WatchCompactedError` (re-read the state, then watch from the zxid you read). Non-retryable
 * statuses (INVALID_ARGUMENT, FAILED_PRECONDITION, ...) are thrown as `SynodError`. `close()` (or `break` out
 * of `for await`, or `await using`) removes the watch and ends the stream.
 */
import * as grpc from '@grpc/grpc-js';
import type { SynodClient } from './client.js';
import { NON_RETRYABLE, SynodError, WatchCompactedError, toSynodError } from './errors.js';
import type { ResponseHeader, WatchEvent, WatchKind } from './types.js';

export interface WatchOptions {
  /** Replay every matching event after this zxid first (resume). Absent: only changes after registration. */
  startZxid?: number;
  /** The session the watch belongs to (it ends when the session does). */
  sessionId?: number;
  /** Give up reconnecting after this long without a working stream (default: never). */
  reconnectTimeoutMs?: number;
}

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const WATCH_ID = 1;

export class Watch implements AsyncIterable<WatchEvent>, AsyncDisposable {
  private stream: grpc.ClientDuplexStream<Msg, Msg> | undefined;
  private endpoint: string;
  private readonly queue: WatchEvent[] = [];
  private waiter: (() => void) | undefined;
  private failure: SynodError | undefined;
  private finished = false;
  private closed = false;
  private mark: number | undefined;
  private brokenSince: number | undefined;
  private backoff = 20;
  private readonly closeHooks: (() => void)[] = [];
  private addedResolve: (() => void) | undefined;
  /** Resolves once the server has registered the watch the first time. */
  readonly ready: Promise<void>;
  /** How many times the stream was reopened. */
  reconnects = 0;

  constructor(
    private readonly client: SynodClient,
    readonly path: string,
    readonly kind: WatchKind,
    private readonly opts: WatchOptions,
  ) {
    this.mark = opts.startZxid;
    this.endpoint = client.currentEndpoint;
    this.ready = new Promise((r) => (this.addedResolve = r));
  }

  /** The zxid up to which every event has been delivered (or the start point). */
  get lastZxid(): number | undefined {
    return this.mark;
  }

  /** The endpoint the stream is on now. */
  get currentEndpoint(): string {
    return this.endpoint;
  }

  /** @internal */
  onClose(f: () => void): void {
    this.closeHooks.push(f);
  }

  /** @internal */
  start(): void {
    this.open(this.endpoint);
  }

  private open(ep: string): void {
    if (this.closed || this.finished) return;
    this.endpoint = ep;
    let call: grpc.ClientDuplexStream<Msg, Msg>;
    try {
      const stub = this.client.stub(ep) as unknown as Record<string, () => grpc.ClientDuplexStream<Msg, Msg>>;
      call = stub.Watch.call(stub);
    } catch (err) {
      this.fail(toSynodError(err, ep));
      return;
    }
    this.stream = call;
    call.on('data', (r: Msg) => {
      if (call === this.stream) this.onResponse(r, ep);
    });
    call.on('error', (e: grpc.ServiceError) => {
      if (call === this.stream) this.onBroken(toSynodError(e, ep));
    });
    call.on('end', () => {
      if (call === this.stream) this.onBroken(new SynodError(grpc.status.UNAVAILABLE, `watch stream on ${ep} ended`, undefined, ep));
    });
    const add: Msg = { path: this.path, kind: this.kind, watchId: WATCH_ID, sessionId: this.opts.sessionId ?? 0 };
    if (this.mark !== undefined) add.startZxid = this.mark;
    call.write({ add });
  }

  private onResponse(r: Msg, ep: string): void {
    if (r.header) this.client.observe(r.header as ResponseHeader);
    switch (r.response) {
      case 'added':
        this.mark ??= r.added.zxid as number;
        this.brokenSince = undefined;
        this.backoff = 20;
        this.client.prefer(ep);
        this.addedResolve?.();
        break;
      case 'events': {
        let top = this.mark ?? 0;
        for (const e of r.events.events as Msg[]) {
          if (this.mark !== undefined && e.zxid <= this.mark) continue; // already delivered before a reconnect
          const ev: WatchEvent = { type: e.type, path: e.path, zxid: e.zxid };
          if (e.stat) ev.stat = e.stat;
          this.queue.push(ev);
          if (e.zxid > top) top = e.zxid;
        }
        this.mark = top;
        this.wake();
        break;
      }
      case 'removed':
        if (r.removed.reason === 'session expired') this.fail(new SynodError(grpc.status.FAILED_PRECONDITION, `watch on ${this.path}: its session expired`, undefined, ep));
        else this.finish();
        break;
      case 'compacted':
        this.fail(new WatchCompactedError(this.path, this.mark ?? 0, r.compacted.compactZxid as number, ep));
        break;
    }
  }

  private onBroken(e: SynodError): void {
    this.stream = undefined;
    if (this.closed || this.finished) return;
    if (NON_RETRYABLE.has(e.code)) {
      this.fail(e);
      return;
    }
    const now = Date.now();
    this.brokenSince ??= now;
    if (this.opts.reconnectTimeoutMs !== undefined && now - this.brokenSince > this.opts.reconnectTimeoutMs) {
      this.fail(e);
      return;
    }
    const next = this.client.nextEndpoint(this.endpoint);
    const delay = this.backoff;
    this.backoff = Math.min(1000, this.backoff * 2);
    setTimeout(() => {
      if (this.closed || this.finished || this.stream) return;
      this.reconnects++;
      this.open(next);
    }, delay).unref?.();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private endStream(): void {
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      s.end();
      s.cancel();
    }
  }

  private finish(): void {
    this.finished = true;
    this.endStream();
    this.wake();
    this.runCloseHooks();
  }

  private fail(e: SynodError): void {
    if (this.failure || this.closed) return;
    this.failure = e;
    this.finish();
  }

  private runCloseHooks(): void {
    for (const f of this.closeHooks.splice(0)) f();
  }

  /** Removes the watch and ends the stream; a pending `next()` returns done. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.finish();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** The next event; `undefined` when the watch ended (one-shot fired, closed). Throws the watch's failure. */
  async next(): Promise<WatchEvent | undefined> {
    for (;;) {
      const e = this.queue.shift();
      if (e) return e;
      if (this.failure) throw this.failure;
      if (this.finished || this.closed) return undefined;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return {
      next: async () => {
        const e = await this.next();
        return e ? { value: e, done: false } : { value: undefined, done: true };
      },
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
