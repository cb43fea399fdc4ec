/**
 * How a RaftNode talks to its peers. The node hands every Ready's messages to `Transport.send` (after they
 * are durable) and receives through the handler it registers with `Transport.start`: incoming messages, and
 * delivery failures the core must hear about (unreachable peers, snapshot sends that failed or finished).
 *
 * `InMemoryHub` connects several RaftNodes in one process (tests, benchmarks): delivery is asynchronous
 * (a setImmediate flush, never a synchronous call back into a node), FIFO per link, and links can be cut.
 */
import { Entry, Message, MessageType, NodeId } from '@app/raft';

/** What a transport calls on the node that started it. */
export interface TransportHandler {
  /** A message for this node. */
  receive(m: Message): void;
  /** A message to `id` could not be delivered (the core probes that peer again later). */
  reportUnreachable(id: NodeId): void;
  /** A snapshot sent to `id` was delivered (`ok`) or could not be (`!ok`). */
  reportSnapshot(id: NodeId, ok: boolean): void;
}

export interface Transport {
  /** Send messages to their `to` peers. Must not call back into the node synchronously. */
  send(messages: Message[]): void;
  /** Begin delivering to `handler` (called by RaftNode.start). */
  start(handler: TransportHandler): void;
  /** Stop delivering (called by RaftNode.stop); messages to this node are then undeliverable. */
  stop(): void;
}

export interface HubStats {
  delivered: number;
  /** Messages that could not be delivered (peer not started, or the link is cut). */
  undeliverable: number;
}

/** An in-process network connecting the transports it hands out. */
export class InMemoryHub {
  private readonly handlers = new Map<NodeId, TransportHandler>();
  private readonly cut = new Set<string>();
  private queue: { sender: NodeId; m: Message }[] = [];
  private scheduled = false;
  readonly stats: HubStats = { delivered: 0, undeliverable: 0 };

  /** The transport of node `id` (give it to that node's RaftNode). */
  transport(id: NodeId): InMemoryTransport {
    return new InMemoryTransport(this, id);
  }

  /** Cut the link in both directions. */
  disconnect(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  /** Cut every link of `id`. */
  isolate(id: NodeId, peers: Iterable<NodeId>): void {
    for (const p of peers) if (p !== id) this.disconnect(id, p);
  }

  /** Restore every link. */
  heal(): void {
    this.cut.clear();
  }

  attach(id: NodeId, handler: TransportHandler): void {
    if (this.handlers.has(id)) throw new Error(`InMemoryHub: node ${id} is already attached`);
    this.handlers.set(id, handler);
  }

  detach(id: NodeId, handler: TransportHandler): void {
    if (this.handlers.get(id) === handler) this.handlers.delete(id);
  }

  route(from: NodeId, messages: Message[]): void {
    for (const m of messages) {
      // A shallow copy, as a wire would make: the receiver's core may rewrite fields of the message it steps
      // (e.g. forwarding a proposal). Entry payloads are immutable by convention and are shared.
      // `from` is kept as the core set it: a forwarded TransferLeader names its transferee there.
      this.queue.push({ sender: from, m: { ...m, entries: m.entries.map((e: Entry) => ({ ...e })) } });
    }
    if (!this.scheduled && this.queue.length > 0) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const { sender: senderId, m } of batch) {
      const target = this.handlers.get(m.to);
      const ok = target !== undefined && !this.cut.has(`${senderId}>${m.to}`);
      const sender = this.handlers.get(senderId);
      if (!ok) {
        this.stats.undeliverable++;
        if (sender) {
          sender.reportUnreachable(m.to);
          if (m.type === MessageType.Snap) sender.reportSnapshot(m.to, false);
        }
        continue;
      }
      this.stats.delivered++;
      target.receive(m);
      if (m.type === MessageType.Snap) sender?.reportSnapshot(m.to, true);
    }
  }
}

/** One node's endpoint on an InMemoryHub. */
export class InMemoryTransport implements Transport {
  private handler: TransportHandler | undefined;

  constructor(
    private readonly hub: InMemoryHub,
    readonly id: NodeId,
  ) {}

  send(messages: Message[]): void {
    this.hub.route(this.id, messages);
  }

  start(handler: TransportHandler): void {
    this.hub.attach(this.id, handler);
    this.handler = handler;
  }

  stop(): void {
    if (this.handler) this.hub.detach(this.id, this.handler);
    this.handler = undefined;
  }
}
