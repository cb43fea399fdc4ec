/**
 * The simulated network: a priority queue of messages in flight keyed by delivery tick, with per-seed drop,
 * duplication and delay (random delays reorder messages), and partitions as a set of blocked directed links.
 */
import { Message, NodeId } from '@app/raft';
import { Rng } from './prng.js';

export interface NetworkProfile {
  /** Probability a message is silently lost. */
  dropRate: number;
  /** Probability a message is delivered twice (the copy gets its own delay). */
  dupRate: number;
  /** Delivery delay in ticks, uniform in [minDelay, maxDelay]; minDelay ≥ 1. */
  minDelay: number;
  maxDelay: number;
}

export const RELIABLE_NETWORK: NetworkProfile = { dropRate: 0, dupRate: 0, minDelay: 1, maxDelay: 1 };

export interface InFlight {
  at: number;
  seq: number;
  msg: Message;
}

export type SendOutcome = 'queued' | 'blocked' | 'dropped';

const linkKey = (from: NodeId, to: NodeId): number => from * 1024 + to;

export class SimNetwork {
  profile: NetworkProfile;
  private heap: InFlight[] = [];
  private seq = 0;
  private blocked = new Set<number>();
  stats = { sent: 0, dropped: 0, duplicated: 0, blocked: 0 };

  constructor(
    private readonly rng: Rng,
    profile: NetworkProfile = RELIABLE_NETWORK,
  ) {
    this.profile = { ...profile };
  }

  /** Block the directed link from → to (one-way partitions are single blocked links). */
  block(from: NodeId, to: NodeId): void {
    this.blocked.add(linkKey(from, to));
  }

  unblock(from: NodeId, to: NodeId): void {
    this.blocked.delete(linkKey(from, to));
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.blocked.size > 0 && this.blocked.has(linkKey(from, to));
  }

  /** Cut every link between the two groups, in both directions. */
  split(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a) {
      for (const y of b) {
        this.block(x, y);
        this.block(y, x);
      }
    }
  }

  healAll(): void {
    this.blocked.clear();
  }

  hasPartitions(): boolean {
    return this.blocked.size > 0;
  }

  blockedLinks(): string[] {
    return [...this.blocked].sort((x, y) => x - y).map((k) => `${Math.floor(k / 1024)}>${k % 1024}`);
  }

  send(msg: Message, now: number): SendOutcome {
    this.stats.sent++;
    if (this.isBlocked(msg.from, msg.to)) {
      this.stats.blocked++;
      return 'blocked';
    }
    const p = this.profile;
    if (this.rng.chance(p.dropRate)) {
      this.stats.dropped++;
      return 'dropped';
    }
    this.push(msg, now + this.delay());
    if (this.rng.chance(p.dupRate)) {
      this.stats.duplicated++;
      this.push({ ...msg, entries: msg.entries.slice() }, now + this.delay());
    }
    return 'queued';
  }

  private delay(): number {
    const p = this.profile;
    return p.maxDelay > p.minDelay ? this.rng.range(p.minDelay, p.maxDelay) : p.minDelay;
  }

  /** The next message due at or before `now`, in (tick, send order). */
  popDue(now: number): InFlight | undefined {
    const h = this.heap;
    if (h.length === 0 || h[0].at > now) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  inFlight(): number {
    return this.heap.length;
  }

  /** Drop everything in flight (used when a scenario wants a clean slate). */
  clear(): void {
    this.heap = [];
  }

  private push(msg: Message, at: number): void {
    const item = { at, seq: this.seq++, msg };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l], h[m])) m = l;
      if (r < h.length && less(h[r], h[m])) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}

function less(a: InFlight, b: InFlight): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
