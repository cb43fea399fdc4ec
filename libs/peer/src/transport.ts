/**
 * GrpcPeerTransport: the driver's Transport (libs/raft-node) over gRPC, for members in separate processes.
 *
 * Outgoing (one PeerLink per peer):
 * - one long-lived bidirectional `Stream` per peer, opened on demand and kept open; the first write is a
 *   Hello naming both ends, the peer answers with its own Hello before the link counts as open;
 * - `send()` (called once per Ready) appends each peer's messages to that peer's queue and flushes at once:
 *   everything one Ready produced for a peer becomes ONE stream write (a MessageBatch), cut only when it
 *   would exceed `maxBatchBytes`. While the stream is connecting or HTTP/2 flow control pushes back
 *   (`write()` returned false, waiting for 'drain'), messages accumulate and leave together in the next write;
 * - the queue is bounded (`maxQueuedMessages`, `maxQueuedBytes`): over the bound the oldest messages are
 *   dropped and the core hears `reportUnreachable` — Raft tolerates loss, it retries from its own state;
 * - when a stream breaks (or cannot be opened) its queue is dropped, the core hears `reportUnreachable`, and
 *   the link backs off (capped exponential with jitter, `backoff`) before the next send opens a new stream;
 *   messages sent meanwhile are dropped and reported the same way;
 * - `Snap` messages go on their own client-streaming `SendSnapshot` call in chunks (`snapshotChunkBytes`),
 *   honouring flow control, and end with `reportSnapshot(id, ok)` (plus `reportUnreachable` on failure).
 *
 * Incoming: the `Raft` service is registered on the caller's `grpc.Server` (`server` option) or on one the
 * transport creates (`listen()`). Batches are decoded and handed to the node message by message; a stream is
 * refused (FAILED_PRECONDITION) when its Hello names another member or cluster, and (UNAVAILABLE) while the
 * node is not started.
 *
 * Calls back into the node (receive, reportUnreachable, reportSnapshot) never happen synchronously inside
 * `send()`: failures detected there are reported on the next turn of the event loop.
 *
 * Forwarding: `forwardWrite`/`forwardReadIndex` let a follower hand client requests to the leader, coalesced
 * into one `ForwardWrites`/`ForwardReadIndex` call per event-loop turn; the leader's side is the
 * `ForwardHandler` given with `setForwardHandler`.
 *
 * Security: pass `credentials` (e.g. grpc.credentials.createSsl(ca, key, cert) for mutual TLS) for the
 * outgoing side and serve with matching server credentials (`listen(address, serverCredentials)` or your own
 * server's binding, with checkClientCertificate for mTLS).
 */
import * as grpc from '@grpc/grpc-js';
import { Message, MessageType, NodeId } from '@app/raft';
import type { Transport, TransportHandler } from '@app/raft-node';
import { loadPeerProto } from '@app/proto';
import { WireMessage, bytes, messageFromWire, messageSize, messageToWire } from './codec.js';

export interface PeerLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

/** The leader's side of forwarded client requests (see ForwardWrites / ForwardReadIndex in peer.proto). */
export interface ForwardHandler {
  /** Apply these encoded requests (in order); one result per request. */
  writes(from: NodeId, requests: Uint8Array[]): Promise<ForwardResult[]>;
  /** A read index valid for reads that started before the call. */
  readIndex(from: NodeId): Promise<{ index: number; term: number }>;
}

export type ForwardResult =
  | { ok: Uint8Array; index: number }
  | { error: { code: grpc.status; message: string }; index: number };

export interface BackoffOptions {
  /** First delay after a broken stream (default 50 ms). */
  initialMs: number;
  /** Cap of the exponential back-off (default 1000 ms). */
  maxMs: number;
}

export interface GrpcPeerTransportOptions {
  selfId: NodeId;
  /** Peer id → 'host:port' of its peer endpoint. An entry for selfId is ignored. */
  peers: Map<NodeId, string>;
  /** Register the Raft service on this server (the caller binds it). Without it, call `listen()`. */
  server?: grpc.Server;
  /** Channel credentials for outgoing streams (default: insecure). */
  credentials?: grpc.ChannelCredentials;
  /** Members of different clusters refuse each other (default ''). */
  clusterId?: string;
  /** Per-peer queue bound in messages (default 4096). */
  maxQueuedMessages?: number;
  /** Per-peer queue bound in (approximate) bytes (default 64 MiB). */
  maxQueuedBytes?: number;
  /** A stream write carries at most this many (approximate) bytes (default 2 MiB; gRPC's receive limit is 4 MiB by default). */
  maxBatchBytes?: number;
  /** Snapshot chunk size (default 1 MiB). */
  snapshotChunkBytes?: number;
  backoff?: Partial<BackoffOptions>;
  /** A peer that does not answer the Hello within this time counts as unreachable (default 3000 ms). */
  helloTimeoutMs?: number;
  /** Deadline of a snapshot send (default 60 s) and of forwarded calls (default 5 s). */
  snapshotTimeoutMs?: number;
  forwardTimeoutMs?: number;
  /** Extra channel options (merged over the transport's defaults). */
  channelOptions?: grpc.ChannelOptions;
  logger?: PeerLogger;
}

export interface PeerTransportStats {
  /** Stream writes (MessageBatch) sent, and the messages in them. */
  batchesSent: number;
  messagesSent: number;
  batchesReceived: number;
  messagesReceived: number;
  /** Messages dropped: queue overflow, broken stream, unknown peer, stopped. */
  messagesDropped: number;
  /** Streams opened (Hello answered) and broken. */
  streamsOpened: number;
  streamsBroken: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  snapshotsReceived: number;
}

type RaftClient = grpc.Client & {
  Stream(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<StreamRequest, StreamResponse>;
  SendSnapshot(options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: SnapshotAck) => void): grpc.ClientWritableStream<SnapshotChunk>;
  ForwardWrites(req: ForwardWritesRequest, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: ForwardWritesResponse) => void): grpc.ClientUnaryCall;
  ForwardReadIndex(
    req: { from: number },
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { index: number; term: number }) => void,
  ): grpc.ClientUnaryCall;
};

interface Hello {
  from: number;
  to: number;
  clusterId: string;
}
interface StreamRequest {
  hello?: Hello | null;
  batch?: { messages: WireMessage[] } | null;
  request?: 'hello' | 'batch';
}
interface StreamResponse {
  hello?: Hello | null;
}
interface SnapshotChunk {
  message?: WireMessage | null;
  totalBytes?: number;
  data?: Uint8Array;
  last?: boolean;
  hello?: Hello | null;
}
interface SnapshotAck {
  receivedBytes: number;
}
interface WireForwardResult {
  ok?: Uint8Array | null;
  error?: { code: number; message: string } | null;
  index: number;
  outcome?: 'ok' | 'error';
}
interface ForwardWritesRequest {
  from: number;
  requests: Uint8Array[];
}
interface ForwardWritesResponse {
  results: WireForwardResult[];
}

/** An error with a gRPC status code (what grpc-js turns into the call's status). */
export class PeerError extends Error {
  override readonly name = 'PeerError';
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

function statusError(code: grpc.status, details: string): Partial<grpc.StatusObject> {
  return { code, details, metadata: new grpc.Metadata() };
}

const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // grpc-js's own reconnect back-off defaults to 1 s growing to 120 s: far too slow for Raft peers.
  'grpc.initial_reconnect_backoff_ms': 50,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  // Each peer gets its own connection, independent of other clients in the process.
  'grpc.use_local_subchannel_pool': 1,
};

/** Server options for a server that carries peer traffic (used by listen(); use them for your own server too). */
export const PEER_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
};

type LinkState = 'idle' | 'connecting' | 'open' | 'backoff';

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: unknown): void;
}

/** The outgoing side towards one peer. */
class PeerLink {
  state: LinkState = 'idle';
  client: RaftClient | undefined;
  call: grpc.ClientDuplexStream<StreamRequest, StreamResponse> | undefined;
  queue: Message[] = [];
  queuedBytes = 0;
  waitingDrain = false;
  failures = 0;
  backoffTimer: ReturnType<typeof setTimeout> | undefined;
  helloTimer: ReturnType<typeof setTimeout> | undefined;
  snapshotCalls = new Set<grpc.ClientWritableStream<SnapshotChunk>>();
  /** Pending forwarded writes, sent together on the next turn. */
  pendingWrites: { request: Uint8Array; waiter: Waiter<ForwardResult> }[] = [];
  writesScheduled = false;
  pendingReads: Waiter<{ index: number; term: number }>[] = [];
  readsScheduled = false;

  constructor(
    readonly id: NodeId,
    readonly address: string,
  ) {}
}

export class GrpcPeerTransport implements Transport {
  readonly selfId: NodeId;
  readonly stats: PeerTransportStats = {
    batchesSent: 0,
    messagesSent: 0,
    batchesReceived: 0,
    messagesReceived: 0,
    messagesDropped: 0,
    streamsOpened: 0,
    streamsBroken: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsReceived: 0,
  };

  private readonly Raft = loadPeerProto().Raft;
  private readonly links = new Map<NodeId, PeerLink>();
  private peers: Map<NodeId, string>;
  private handler: TransportHandler | undefined;
  private forwardHandler: ForwardHandler | undefined;
  private ownServer: grpc.Server | undefined;
  private closed = false;
  /** Incoming calls and how to end each with a status (when the transport stops). */
  private readonly incoming = new Map<object, (code: grpc.status, details: string) => void>();
  private readonly o: Required<
    Pick<
      GrpcPeerTransportOptions,
      'clusterId' | 'maxQueuedMessages' | 'maxQueuedBytes' | 'maxBatchBytes' | 'snapshotChunkBytes' | 'helloTimeoutMs' | 'snapshotTimeoutMs' | 'forwardTimeoutMs'
    >
  > & { backoff: BackoffOptions };
  private readonly credentials: grpc.ChannelCredentials;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly logger: PeerLogger;
  /** Peers to report unreachable on the next turn (deduplicated). */
  private unreachable = new Set<NodeId>();
  private reportScheduled = false;

  constructor(options: GrpcPeerTransportOptions) {
    this.selfId = options.selfId;
    this.peers = new Map(options.peers);
    this.peers.delete(this.selfId);
    this.o = {
      clusterId: options.clusterId ?? '',
      maxQueuedMessages: options.maxQueuedMessages ?? 4096,
      maxQueuedBytes: options.maxQueuedBytes ?? 64 * 1024 * 1024,
      maxBatchBytes: options.maxBatchBytes ?? 2 * 1024 * 1024,
      snapshotChunkBytes: options.snapshotChunkBytes ?? 1024 * 1024,
      helloTimeoutMs: options.helloTimeoutMs ?? 3000,
      snapshotTimeoutMs: options.snapshotTimeoutMs ?? 60_000,
      forwardTimeoutMs: options.forwardTimeoutMs ?? 5000,
      backoff: { initialMs: options.backoff?.initialMs ?? 50, maxMs: options.backoff?.maxMs ?? 1000 },
    };
    this.credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.channelOptions = { ...DEFAULT_CHANNEL_OPTIONS, ...options.channelOptions };
    this.logger = options.logger ?? { info: () => {}, warn: () => {} };
    if (options.server) this.addToServer(options.server);
  }

  // ---- lifecycle ----------------------------------------------------------------------------------------------

  /** Registers the Raft service on `server` (done by the constructor when `server` is given). */
  addToServer(server: grpc.Server): void {
    server.addService(this.Raft.service, {
      Stream: (call: grpc.ServerDuplexStream<StreamRequest, StreamResponse>) => this.serveStream(call),
      SendSnapshot: (call: grpc.ServerReadableStream<SnapshotChunk, SnapshotAck>, cb: grpc.sendUnaryData<SnapshotAck>) =>
        this.serveSnapshot(call, cb),
      ForwardWrites: (call: grpc.ServerUnaryCall<ForwardWritesRequest, ForwardWritesResponse>, cb: grpc.sendUnaryData<ForwardWritesResponse>) =>
        this.serveForwardWrites(call, cb),
      ForwardReadIndex: (
        call: grpc.ServerUnaryCall<{ from: number }, { index: number; term: number }>,
        cb: grpc.sendUnaryData<{ index: number; term: number }>,
      ) => this.serveForwardReadIndex(call, cb),
    });
  }

  /** Creates, binds and starts a server of its own for the peer endpoint; returns the bound port. */
  async listen(address: string, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    if (this.ownServer) throw new Error('GrpcPeerTransport: already listening');
    const server = new grpc.Server(PEER_SERVER_OPTIONS);
    this.addToServer(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.ownServer = server;
    return port;
  }

  start(handler: TransportHandler): void {
    if (this.closed) throw new Error('GrpcPeerTransport: closed');
    this.handler = handler;
  }

  /** Stops delivering: incoming streams are ended, outgoing streams closed, queues dropped. Restartable. */
  stop(): void {
    this.handler = undefined;
    for (const end of [...this.incoming.values()]) end(grpc.status.UNAVAILABLE, `member ${this.selfId} stopped`);
    this.incoming.clear();
    for (const link of this.links.values()) this.closeLink(link, new PeerError(grpc.status.UNAVAILABLE, `member ${this.selfId} stopped`));
    this.links.clear();
  }

  /** stop(), then shuts the transport's own server down (if it made one) and releases every channel. */
  async close(): Promise<void> {
    this.stop();
    this.closed = true;
    const server = this.ownServer;
    this.ownServer = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Replaces the peer map (membership changed): links to removed or moved peers are closed. */
  updatePeers(peers: Map<NodeId, string>): void {
    const next = new Map(peers);
    next.delete(this.selfId);
    for (const [id, link] of this.links) {
      if (next.get(id) !== link.address) {
        this.closeLink(link, new PeerError(grpc.status.UNAVAILABLE, `peer ${id} removed or moved`));
        this.links.delete(id);
      }
    }
    this.peers = next;
  }

  setPeer(id: NodeId, address: string): void {
    const next = new Map(this.peers);
    next.set(id, address);
    this.updatePeers(next);
  }

  removePeer(id: NodeId): void {
    const next = new Map(this.peers);
    next.delete(id);
    this.updatePeers(next);
  }

  peerMap(): Map<NodeId, string> {
    return new Map(this.peers);
  }

  setForwardHandler(h: ForwardHandler | undefined): void {
    this.forwardHandler = h;
  }

  /** The state of the outgoing stream to `id` (for status pages and tests). */
  linkState(id: NodeId): LinkState | 'none' {
    return this.links.get(id)?.state ?? 'none';
  }

  // ---- sending ------------------------------------------------------------------------------------------------

  send(messages: Message[]): void {
    if (messages.length === 0) return;
    // Group by peer, preserving order; snapshots take their own path.
    const byPeer = new Map<NodeId, Message[]>();
    for (const m of messages) {
      if (m.type === MessageType.Snap) {
        this.sendSnapshot(m);
        continue;
      }
      let list = byPeer.get(m.to);
      if (!list) byPeer.set(m.to, (list = []));
      list.push(m);
    }
    for (const [to, list] of byPeer) {
      const link = this.link(to);
      if (!link || !this.handler) {
        this.drop(to, list.length);
        continue;
      }
      if (link.state === 'backoff') {
        this.drop(to, list.length);
        continue;
      }
      for (const m of list) {
        link.queue.push(m);
        link.queuedBytes += messageSize(m);
      }
      this.enforceBound(link);
      if (link.state === 'idle') this.connect(link);
      else if (link.state === 'open') this.flush(link);
    }
  }

  private link(id: NodeId): PeerLink | undefined {
    let link = this.links.get(id);
    if (link) return link;
    const address = this.peers.get(id);
    if (address === undefined || this.closed) return undefined;
    link = new PeerLink(id, address);
    this.links.set(id, link);
    return link;
  }

  private client(link: PeerLink): RaftClient {
    link.client ??= new this.Raft(link.address, this.credentials, this.channelOptions) as unknown as RaftClient;
    return link.client;
  }

  private enforceBound(link: PeerLink): void {
    let dropped = 0;
    while (link.queue.length > 0 && (link.queue.length > this.o.maxQueuedMessages || link.queuedBytes > this.o.maxQueuedBytes)) {
      const m = link.queue.shift()!;
      link.queuedBytes -= messageSize(m);
      dropped++;
    }
    if (dropped > 0) this.drop(link.id, dropped);
  }

  /** Counts dropped messages and tells the core (on the next turn) that the peer is unreachable. */
  private drop(id: NodeId, count: number): void {
    this.stats.messagesDropped += count;
    this.reportUnreachableLater(id);
  }

  private reportUnreachableLater(id: NodeId): void {
    this.unreachable.add(id);
    if (this.reportScheduled) return;
    this.reportScheduled = true;
    setImmediate(() => {
      this.reportScheduled = false;
      const ids = [...this.unreachable];
      this.unreachable.clear();
      const h = this.handler;
      if (h) for (const id of ids) h.reportUnreachable(id);
    });
  }

  private connect(link: PeerLink): void {
    link.state = 'connecting';
    let call: grpc.ClientDuplexStream<StreamRequest, StreamResponse>;
    try {
      call = this.client(link).Stream();
    } catch (err) {
      this.broken(link, undefined, err);
      return;
    }
    link.call = call;
    link.waitingDrain = false;
    call.on('data', (res: StreamResponse) => {
      if (link.call !== call || link.state !== 'connecting') return;
      if (!res.hello || res.hello.from !== link.id) {
        this.broken(link, call, new PeerError(grpc.status.FAILED_PRECONDITION, `peer at ${link.address} answered as member ${res.hello?.from}, expected ${link.id}`));
        return;
      }
      clearTimeout(link.helloTimer);
      link.state = 'open';
      link.failures = 0;
      this.stats.streamsOpened++;
      this.flush(link);
    });
    call.on('drain', () => {
      if (link.call !== call) return;
      link.waitingDrain = false;
      this.flush(link);
    });
    call.on('error', (err) => this.broken(link, call, err));
    call.on('status', (s: grpc.StatusObject) => this.broken(link, call, new PeerError(s.code, s.details || 'stream ended')));
    call.on('end', () => this.broken(link, call, new PeerError(grpc.status.UNAVAILABLE, 'stream ended by peer')));
    link.helloTimer = setTimeout(
      () => this.broken(link, call, new PeerError(grpc.status.DEADLINE_EXCEEDED, `no hello from ${link.address} within ${this.o.helloTimeoutMs} ms`)),
      this.o.helloTimeoutMs,
    );
    call.write({ hello: { from: this.selfId, to: link.id, clusterId: this.o.clusterId } });
  }

  /** Writes the queue as few MessageBatch writes as the size cap allows (one, normally). */
  private flush(link: PeerLink): void {
    const call = link.call;
    if (!call || link.state !== 'open') return;
    while (link.queue.length > 0 && !link.waitingDrain) {
      let bytes = 0;
      let n = 0;
      while (n < link.queue.length) {
        const s = messageSize(link.queue[n]);
        if (n > 0 && bytes + s > this.o.maxBatchBytes) break;
        bytes += s;
        n++;
      }
      const batch = link.queue.splice(0, n);
      link.queuedBytes -= bytes;
      if (link.queue.length === 0) link.queuedBytes = 0;
      let ok: boolean;
      try {
        ok = call.write({ batch: { messages: batch.map((m) => messageToWire(m)) } });
      } catch (err) {
        this.broken(link, call, err);
        return;
      }
      this.stats.batchesSent++;
      this.stats.messagesSent += batch.length;
      if (!ok) link.waitingDrain = true;
    }
  }

  /** The stream to `link` failed: drop its queue, report, back off. Idempotent per call. */
  private broken(link: PeerLink, call: grpc.ClientDuplexStream<StreamRequest, StreamResponse> | undefined, err: unknown): void {
    if (call !== undefined && link.call !== call) return;
    if (this.links.get(link.id) !== link) return;
    clearTimeout(link.helloTimer);
    link.call = undefined;
    call?.cancel(); // its late events are ignored: link.call is no longer this call
    const wasOpen = link.state === 'open';
    this.stats.streamsBroken++;
    const dropped = link.queue.length;
    link.queue = [];
    link.queuedBytes = 0;
    link.waitingDrain = false;
    this.stats.messagesDropped += dropped;
    this.reportUnreachableLater(link.id);
    link.failures++;
    const exp = Math.min(this.o.backoff.maxMs, this.o.backoff.initialMs * 2 ** Math.min(link.failures - 1, 16));
    const delay = Math.round(exp / 2 + (Math.random() * exp) / 2);
    const e = err instanceof Error ? err : new Error(String(err));
    const msg = `[peer ${this.selfId}] stream to ${link.id} (${link.address}) ${wasOpen ? 'broke' : 'failed'}: ${e.message}; retry in ${delay} ms`;
    if (link.failures === 1 || link.failures % 20 === 0) this.logger.warn(msg);
    link.state = 'backoff';
    link.backoffTimer = setTimeout(() => {
      link.backoffTimer = undefined;
      if (link.state === 'backoff') link.state = 'idle';
    }, delay);
  }

  private closeLink(link: PeerLink, reason: PeerError): void {
    clearTimeout(link.helloTimer);
    clearTimeout(link.backoffTimer);
    const call = link.call;
    link.call = undefined;
    call?.cancel();
    for (const s of link.snapshotCalls) s.cancel();
    link.snapshotCalls.clear();
    this.stats.messagesDropped += link.queue.length;
    link.queue = [];
    link.queuedBytes = 0;
    for (const { waiter } of link.pendingWrites) waiter.reject(reason);
    link.pendingWrites = [];
    for (const w of link.pendingReads) w.reject(reason);
    link.pendingReads = [];
    link.state = 'idle';
    link.client?.close();
    link.client = undefined;
  }

  // ---- snapshots ----------------------------------------------------------------------------------------------

  private sendSnapshot(m: Message): void {
    const link = this.link(m.to);
    const fail = (why: string): void => {
      this.stats.snapshotsFailed++;
      this.logger.warn(`[peer ${this.selfId}] snapshot ${m.snapshot?.metadata.index} to ${m.to} failed: ${why}`);
      const to = m.to;
      this.reportUnreachableLater(to);
      setImmediate(() => this.handler?.reportSnapshot(to, false));
    };
    if (!link || !this.handler || !m.snapshot) {
      this.stats.messagesDropped++;
      fail(link ? 'transport stopped' : 'unknown peer');
      return;
    }
    const data = m.snapshot.data;
    let done = false;
    const call = this.client(link).SendSnapshot({ deadline: Date.now() + this.o.snapshotTimeoutMs }, (err) => {
      link.snapshotCalls.delete(call);
      if (done) return;
      done = true;
      if (err) {
        fail(err.message);
        return;
      }
      this.stats.snapshotsSent++;
      const to = m.to;
      setImmediate(() => this.handler?.reportSnapshot(to, true));
    });
    link.snapshotCalls.add(call);
    call.on('error', () => {}); // reported through the callback
    const chunk = this.o.snapshotChunkBytes;
    let off = 0;
    const pump = (): void => {
      while (off < data.length || off === 0) {
        const end = Math.min(data.length, off + chunk);
        const first = off === 0;
        const piece: SnapshotChunk = { data: data.subarray(off, end), last: end >= data.length };
        if (first) {
          piece.message = messageToWire(m, false);
          piece.totalBytes = data.length;
          piece.hello = { from: this.selfId, to: m.to, clusterId: this.o.clusterId };
        }
        off = end;
        const ok = call.write(piece);
        if (end >= data.length) {
          call.end();
          return;
        }
        if (!ok) {
          call.once('drain', pump);
          return;
        }
      }
    };
    pump();
  }

  // ---- forwarding (client side) -------------------------------------------------------------------------------

  /**
   * Hands one encoded client request to member `to` (the leader). Requests made in the same event-loop turn
   * travel in one ForwardWrites call. Rejects with a PeerError (its `code` a gRPC status) when the call fails.
   */
  forwardWrite(to: NodeId, request: Uint8Array): Promise<ForwardResult> {
    const link = this.link(to);
    if (!link) return Promise.reject(new PeerError(grpc.status.UNAVAILABLE, `member ${to} is not a known peer of ${this.selfId}`));
    return new Promise((resolve, reject) => {
      link.pendingWrites.push({ request, waiter: { resolve, reject } });
      if (link.writesScheduled) return;
      link.writesScheduled = true;
      setImmediate(() => {
        link.writesScheduled = false;
        const batch = link.pendingWrites;
        link.pendingWrites = [];
        if (batch.length > 0) void this.forwardWrites(to, batch.map((b) => b.request)).then(
          (results) => batch.forEach((b, i) => b.waiter.resolve(results[i])),
          (err) => batch.forEach((b) => b.waiter.reject(err)),
        );
      });
    });
  }

  /** One ForwardWrites call with these requests (see forwardWrite for the coalescing variant). */
  forwardWrites(to: NodeId, requests: Uint8Array[]): Promise<ForwardResult[]> {
    const link = this.link(to);
    if (!link) return Promise.reject(new PeerError(grpc.status.UNAVAILABLE, `member ${to} is not a known peer of ${this.selfId}`));
    return new Promise((resolve, reject) => {
      this.client(link).ForwardWrites({ from: this.selfId, requests }, { deadline: Date.now() + this.o.forwardTimeoutMs }, (err, res) => {
        if (err || !res) return reject(new PeerError(err?.code ?? grpc.status.INTERNAL, err?.details || err?.message || 'no response'));
        if (res.results.length !== requests.length) {
          return reject(new PeerError(grpc.status.INTERNAL, `member ${to} answered ${res.results.length} results for ${requests.length} requests`));
        }
        resolve(res.results.map(forwardResultFromWire));
      });
    });
  }

  /**
   * Asks member `to` (the leader) for a read index. Calls made in the same event-loop turn share one
   * ForwardReadIndex call (its answer is valid for every read that started before it was sent).
   */
  forwardReadIndex(to: NodeId): Promise<{ index: number; term: number }> {
    const link = this.link(to);
    if (!link) return Promise.reject(new PeerError(grpc.status.UNAVAILABLE, `member ${to} is not a known peer of ${this.selfId}`));
    return new Promise((resolve, reject) => {
      link.pendingReads.push({ resolve, reject });
      if (link.readsScheduled) return;
      link.readsScheduled = true;
      setImmediate(() => {
        link.readsScheduled = false;
        const waiters = link.pendingReads;
        link.pendingReads = [];
        if (waiters.length === 0) return;
        this.client(link).ForwardReadIndex({ from: this.selfId }, { deadline: Date.now() + this.o.forwardTimeoutMs }, (err, res) => {
          if (err || !res) {
            const e = new PeerError(err?.code ?? grpc.status.INTERNAL, err?.details || err?.message || 'no response');
            for (const w of waiters) w.reject(e);
          } else for (const w of waiters) w.resolve({ index: res.index, term: res.term });
        });
      });
    });
  }

  // ---- serving ------------------------------------------------------------------------------------------------

  private checkHello(h: Hello | null | undefined): string | undefined {
    if (!h) return 'the first message of a peer stream must be a hello';
    if (h.to !== this.selfId) return `this is member ${this.selfId}, not ${h.to} (stale peer address?)`;
    if (h.clusterId !== this.o.clusterId) return `cluster id mismatch: this member is in '${this.o.clusterId}', the peer in '${h.clusterId}'`;
    return undefined;
  }

  private serveStream(call: grpc.ServerDuplexStream<StreamRequest, StreamResponse>): void {
    let ended = false;
    const end = (code: grpc.status, details: string): void => {
      this.incoming.delete(call);
      if (ended) return;
      ended = true;
      call.emit('error', statusError(code, details));
    };
    if (!this.handler) return end(grpc.status.UNAVAILABLE, `member ${this.selfId} is not running`);
    this.incoming.set(call, end);
    let from: NodeId | undefined;
    call.on('data', (req: StreamRequest) => {
      if (ended) return;
      if (from === undefined) {
        const bad = this.checkHello(req.hello);
        if (bad) {
          this.logger.warn(`[peer ${this.selfId}] refused a stream from ${req.hello?.from ?? 'unknown'}: ${bad}`);
          return end(grpc.status.FAILED_PRECONDITION, bad);
        }
        from = req.hello!.from;
        call.write({ hello: { from: this.selfId, to: from, clusterId: this.o.clusterId } });
        return;
      }
      const h = this.handler;
      const msgs = req.batch?.messages;
      if (!msgs) return;
      if (!h) return end(grpc.status.UNAVAILABLE, `member ${this.selfId} stopped`);
      this.stats.batchesReceived++;
      for (const w of msgs) {
        let m: Message;
        try {
          m = messageFromWire(w);
        } catch (err) {
          this.logger.warn(`[peer ${this.selfId}] dropped a message from ${from}: ${(err as Error).message}`);
          continue;
        }
        if (m.to !== this.selfId) continue;
        this.stats.messagesReceived++;
        h.receive(m);
      }
    });
    call.on('end', () => {
      this.incoming.delete(call);
      if (ended) return;
      ended = true;
      call.end();
    });
    call.on('error', () => {
      ended = true;
      this.incoming.delete(call);
    });
    call.on('cancelled', () => {
      ended = true;
      this.incoming.delete(call);
    });
  }

  private serveSnapshot(call: grpc.ServerReadableStream<SnapshotChunk, SnapshotAck>, cb: grpc.sendUnaryData<SnapshotAck>): void {
    let first: SnapshotChunk | undefined;
    let buf: Uint8Array | undefined;
    let received = 0;
    let finished = false;
    const fail = (code: grpc.status, details: string): void => {
      this.incoming.delete(call);
      if (finished) return;
      finished = true;
      cb(statusError(code, details));
    };
    if (!this.handler) return fail(grpc.status.UNAVAILABLE, `member ${this.selfId} is not running`);
    this.incoming.set(call, fail);
    call.on('data', (c: SnapshotChunk) => {
      if (finished) return;
      if (!first) {
        const bad = this.checkHello(c.hello);
        if (bad) return fail(grpc.status.FAILED_PRECONDITION, bad);
        if (!c.message || !c.message.snapshot) return fail(grpc.status.INVALID_ARGUMENT, 'the first snapshot chunk must carry the SNAP message');
        first = c;
        buf = new Uint8Array(c.totalBytes ?? 0);
      }
      const d = bytes(c.data);
      if (received + d.length > buf!.length) return fail(grpc.status.INVALID_ARGUMENT, `snapshot data exceeds the announced ${buf!.length} bytes`);
      buf!.set(d, received);
      received += d.length;
      if (c.last) {
        if (received !== buf!.length) return fail(grpc.status.INVALID_ARGUMENT, `snapshot ended after ${received} of ${buf!.length} bytes`);
        const h = this.handler;
        if (!h) return fail(grpc.status.UNAVAILABLE, `member ${this.selfId} stopped`);
        let m: Message;
        try {
          m = messageFromWire(first.message!, buf);
        } catch (err) {
          return fail(grpc.status.INVALID_ARGUMENT, (err as Error).message);
        }
        finished = true;
        this.incoming.delete(call);
        this.stats.snapshotsReceived++;
        h.receive(m);
        cb(null, { receivedBytes: received });
      }
    });
    call.on('end', () => fail(grpc.status.INVALID_ARGUMENT, `snapshot stream ended after ${received} bytes without its last chunk`));
    call.on('error', () => {
      finished = true;
      this.incoming.delete(call);
    });
    call.on('cancelled', () => {
      finished = true;
      this.incoming.delete(call);
    });
  }

  private serveForwardWrites(
    call: grpc.ServerUnaryCall<ForwardWritesRequest, ForwardWritesResponse>,
    cb: grpc.sendUnaryData<ForwardWritesResponse>,
  ): void {
    const fh = this.forwardHandler;
    if (!fh || !this.handler) return cb(statusError(grpc.status.UNAVAILABLE, `member ${this.selfId} does not take forwarded requests now`));
    const reqs = call.request.requests.map((r) => bytes(r));
    fh.writes(call.request.from, reqs).then(
      (results) => cb(null, { results: results.map(forwardResultToWire) }),
      (err: unknown) => cb(statusError(errorCode(err), (err as Error)?.message ?? String(err))),
    );
  }

  private serveForwardReadIndex(
    call: grpc.ServerUnaryCall<{ from: number }, { index: number; term: number }>,
    cb: grpc.sendUnaryData<{ index: number; term: number }>,
  ): void {
    const fh = this.forwardHandler;
    if (!fh || !this.handler) return cb(statusError(grpc.status.UNAVAILABLE, `member ${this.selfId} does not take forwarded requests now`));
    fh.readIndex(call.request.from).then(
      (r) => cb(null, r),
      (err: unknown) => cb(statusError(errorCode(err), (err as Error)?.message ?? String(err))),
    );
  }
}

function errorCode(err: unknown): grpc.status {
  const c = (err as { code?: unknown } | undefined)?.code;
  return typeof c === 'number' && c > 0 && c <= 16 ? c : grpc.status.UNKNOWN;
}

function forwardResultToWire(r: ForwardResult): WireForwardResult {
  return 'ok' in r ? { ok: r.ok, index: r.index } : { error: { code: r.error.code, message: r.error.message }, index: r.index };
}

function forwardResultFromWire(w: WireForwardResult): ForwardResult {
  if (w.outcome === 'error' && w.error) return { error: { code: w.error.code as grpc.status, message: w.error.message }, index: w.index };
  return { ok: bytes(w.ok), index: w.index };
}
