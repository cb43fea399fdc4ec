/**
 * Session deadlines, kept by the leader's service (not replicated, but pure: time is always an argument).
 *
 * The leader touches sessions on keep-alives, proposes `expireSessions` for the ids `expired(now)` returns, and
 * periodically proposes `checkpointSessions` with `checkpoint(now)`. A new leader calls `resetFromState` with the
 * replicated sessions: each one's deadline becomes now + its last checkpointed remaining TTL (+ `extendMs`, as
 * etcd extends leases by an election timeout on promotion), or now + its full timeout when it was never
 * checkpointed. So a live session never expires because of a leader change (its clock restarts no earlier than
 * it would have ended), and a dead one lives at most (checkpoint interval + failover time + extendMs) longer.
 */
import type { SessionInfo } from './types.js';

interface Tracked {
  timeoutMs: number;
  deadline: number;
}

export class SessionTracker {
  private readonly tracked = new Map<number, Tracked>();

  /** Start tracking a session (on the leader, when its createSession is applied). */
  add(id: number, timeoutMs: number, nowMs: number): void {
    this.tracked.set(id, { timeoutMs, deadline: nowMs + timeoutMs });
  }

  /** Stop tracking (closed or expired through the log). */
  remove(id: number): boolean {
    return this.tracked.delete(id);
  }

  has(id: number): boolean {
    return this.tracked.has(id);
  }

  deadline(id: number): number | undefined {
    return this.tracked.get(id)?.deadline;
  }

  get size(): number {
    return this.tracked.size;
  }

  /**
   * A keep-alive: the deadline becomes now + timeout. Returns false (the client must see SESSION_EXPIRED) when
   * the session is unknown or its deadline has already passed: a dead session is never brought back.
   */
  touch(id: number, nowMs: number): boolean {
    const t = this.tracked.get(id);
    if (!t || t.deadline <= nowMs) return false;
    t.deadline = nowMs + t.timeoutMs;
    return true;
  }

  /** Sessions whose deadline has passed, in id order (returned again until `remove`d). */
  expired(nowMs: number): number[] {
    const out: number[] = [];
    for (const [id, t] of this.tracked) if (t.deadline <= nowMs) out.push(id);
    return out.sort((a, b) => a - b);
  }

  /** Each session's remaining TTL, in id order: the body of a `checkpointSessions` command. */
  checkpoint(nowMs: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const [id, t] of this.tracked) out.push([id, Math.max(0, t.deadline - nowMs)]);
    return out.sort((a, b) => a[0] - b[0]);
  }

  /**
   * On becoming leader: forget everything and track exactly the replicated sessions, each with deadline
   * now + (checkpointed remaining TTL, or the full timeout when none) + extendMs.
   */
  resetFromState(sessions: readonly SessionInfo[], nowMs: number, extendMs = 0): void {
    this.tracked.clear();
    for (const s of sessions) {
      this.tracked.set(s.id, { timeoutMs: s.timeoutMs, deadline: nowMs + (s.remainingMs ?? s.timeoutMs) + extendMs });
    }
  }

  /**
   * Follow the replicated sessions while leader: start tracking new ones (full timeout from now), drop ended
   * ones. Existing deadlines are kept.
   */
  sync(sessions: readonly SessionInfo[], nowMs: number): void {
    const live = new Set<number>();
    for (const s of sessions) {
      live.add(s.id);
      if (!this.tracked.has(s.id)) this.add(s.id, s.timeoutMs, nowMs);
    }
    for (const id of [...this.tracked.keys()]) if (!live.has(id)) this.tracked.delete(id);
  }
}
