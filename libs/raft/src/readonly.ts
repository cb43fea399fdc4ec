/**
 * ReadIndex bookkeeping (Raft thesis §6.4; etcd-io/raft read_only.go). A read request records the leader's
 * commit index; it is released once a quorum acknowledges a heartbeat carrying the request's context, which
 * proves the leader was still the leader when the read index was taken.
 */
import { bytesKey } from './codec.js';
import { ReadOnlyOption } from './config.js';
import { Message, NodeId } from './types.js';

export interface ReadIndexStatus {
  req: Message;
  index: number;
  acks: Set<NodeId>;
}

export class ReadOnly {
  private pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  constructor(readonly option: ReadOnlyOption) {}

  /** Track a read request `m` taken at commit index `index`. */
  addRequest(index: number, m: Message): void {
    const key = bytesKey(m.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, req: m, acks: new Set() });
    this.queue.push(key);
  }

  /** Record a heartbeat acknowledgment carrying `context`; returns the acks so far. */
  recvAck(id: NodeId, context: Uint8Array | undefined): Set<NodeId> | undefined {
    const rs = this.pending.get(bytesKey(context));
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Release every request queued up to and including the one with `m.context`. */
  advance(m: Message): ReadIndexStatus[] {
    const key = bytesKey(m.context);
    const i = this.queue.indexOf(key);
    if (i < 0) return [];
    const released = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of released) {
      const rs = this.pending.get(k);
      if (rs) out.push(rs);
      this.pending.delete(k);
    }
    return out;
  }

  lastPendingRequestCtx(): Uint8Array | undefined {
    if (this.queue.length === 0) return undefined;
    return this.pending.get(this.queue[this.queue.length - 1])?.req.context;
  }

  get size(): number {
    return this.queue.length;
  }
}
