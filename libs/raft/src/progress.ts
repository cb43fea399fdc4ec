/**
 * Per-follower replication progress and flow control (etcd-io/raft tracker/progress.go, inflights.go).
 *
 *  - Probe: the leader does not know where the follower's log matches; it sends one append per heartbeat
 *    interval and waits for the answer (msgAppFlowPaused).
 *  - Replicate: the follower is known to match; the leader streams appends optimistically, at most
 *    `maxInflight` unacknowledged messages at once (Inflights).
 *  - Snapshot: the follower needs a snapshot; nothing else is sent until it is reported done or failed.
 */
import { invariant } from './errors.js';

export enum ProgressState {
  Probe = 'Probe',
  Replicate = 'Replicate',
  Snapshot = 'Snapshot',
}

/** A bounded FIFO of the last index of each append in flight. */
export class Inflights {
  private buf: number[] = [];
  private head = 0;
  constructor(readonly size: number) {}

  get count(): number {
    return this.buf.length - this.head;
  }

  add(index: number): void {
    invariant(!this.full(), 'cannot add into a full inflights');
    const n = this.buf.length;
    invariant(n === this.head || this.buf[n - 1] < index, `inflights must grow: ${this.buf[n - 1]} then ${index}`);
    this.buf.push(index);
  }

  /** Free every inflight message whose last index is ≤ to (acknowledged). */
  freeLE(to: number): void {
    while (this.head < this.buf.length && this.buf[this.head] <= to) this.head++;
    if (this.head > 64 && this.head * 2 > this.buf.length) {
      this.buf = this.buf.slice(this.head);
      this.head = 0;
    }
  }

  /** Free the oldest inflight message (a heartbeat response proved the follower alive while the window is full). */
  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.buf[this.head]);
  }

  full(): boolean {
    return this.count >= this.size;
  }

  reset(): void {
    this.buf = [];
    this.head = 0;
  }
}

export class Progress {
  match = 0;
  next = 1;
  state = ProgressState.Probe;
  /** In Snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** In Probe state: an append was sent and is not answered yet. */
  msgAppFlowPaused = false;
  inflights: Inflights;

  constructor(
    maxInflight: number,
    public isLearner: boolean,
    next: number,
  ) {
    this.inflights = new Inflights(maxInflight);
    this.next = next;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** Record that entries up to `lastIndex` were sent in one append (count > 0 entries). */
  sentEntries(count: number, lastIndex: number): void {
    if (this.state === ProgressState.Replicate) {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === ProgressState.Probe) {
      // One probe at a time: wait for its answer (or a heartbeat response) before sending another.
      this.msgAppFlowPaused = true;
    } else {
      invariant(false, `sending append in unhandled state ${this.state}`);
    }
  }

  /** A successful append response for index n. Returns false if it was stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejected append at index `rejected`; `matchHint` is where the follower's log may match.
   * Returns false if the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.msgAppFlowPaused;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }
}
