/** SessionTracker with explicit times, and a leader change through checkpointed remaining TTLs. */
import { CreateMode, SessionTracker } from '@app/tree';
import { Driver } from './helpers.js';

describe('SessionTracker', () => {
  it('touch extends the deadline by the timeout; expired lists passed deadlines in id order', () => {
    const t = new SessionTracker();
    t.add(7, 1000, 0);
    t.add(3, 500, 0);
    expect(t.deadline(7)).toBe(1000);
    expect(t.expired(499)).toEqual([]);
    expect(t.expired(500)).toEqual([3]);
    expect(t.touch(7, 900)).toBe(true);
    expect(t.deadline(7)).toBe(1900);
    expect(t.expired(1899)).toEqual([3]);
    expect(t.expired(5000)).toEqual([3, 7]);
  });

  it('a session past its deadline cannot be touched back to life; unknown ids are refused', () => {
    const t = new SessionTracker();
    t.add(1, 1000, 0);
    expect(t.touch(1, 1000)).toBe(false);
    expect(t.expired(1000)).toEqual([1]);
    expect(t.touch(2, 0)).toBe(false);
    t.remove(1);
    expect(t.expired(10_000)).toEqual([]);
    expect(t.size).toBe(0);
  });

  it('checkpoint reports remaining TTLs, never negative', () => {
    const t = new SessionTracker();
    t.add(2, 1000, 0);
    t.add(1, 5000, 0);
    expect(t.checkpoint(400)).toEqual([[1, 4600], [2, 600]]);
    expect(t.checkpoint(1500)).toEqual([[1, 3500], [2, 0]]);
  });

  it('resetFromState: checkpointed remaining TTL, else the full timeout, plus extendMs', () => {
    const t = new SessionTracker();
    t.add(99, 1000, 0); // forgotten on reset
    t.resetFromState([
      { id: 1, timeoutMs: 10_000, remainingMs: 2500 },
      { id: 2, timeoutMs: 4000, remainingMs: null },
    ], 50_000, 300);
    expect(t.has(99)).toBe(false);
    expect(t.deadline(1)).toBe(52_800);
    expect(t.deadline(2)).toBe(54_300);
  });

  it('sync starts tracking new sessions and drops ended ones, keeping deadlines', () => {
    const t = new SessionTracker();
    t.add(1, 1000, 0);
    t.touch(1, 500);
    t.sync([{ id: 1, timeoutMs: 1000, remainingMs: null }, { id: 2, timeoutMs: 3000, remainingMs: null }], 600);
    expect(t.deadline(1)).toBe(1500);
    expect(t.deadline(2)).toBe(3600);
    t.sync([{ id: 2, timeoutMs: 3000, remainingMs: null }], 700);
    expect(t.has(1)).toBe(false);
  });
});

describe('leader change through checkpoints (tree + trackers)', () => {
  const T = 10_000;

  function setup() {
    const d = new Driver();
    const leaderA = new SessionTracker();
    d.now = 0;
    const live = d.ok({ op: 'createSession', timeoutMs: T }).sessionId;
    const dead = d.ok({ op: 'createSession', timeoutMs: T }).sessionId;
    const fresh = d.ok({ op: 'createSession', timeoutMs: T }).sessionId;
    leaderA.sync(d.tree.sessions(), 0);
    d.ok({ op: 'create', path: '/dead-eph', data: new Uint8Array(0), mode: CreateMode.EPHEMERAL, sessionId: dead });
    // both clients keep alive at t=3000; `dead` then stops
    leaderA.touch(live, 3000);
    leaderA.touch(dead, 3000);
    // leader A checkpoints at t=4000 (only the first two: `fresh` shows the never-checkpointed case)
    d.now = 4000;
    d.ok({ op: 'checkpointSessions', remaining: leaderA.checkpoint(4000).filter(([id]) => id !== fresh) });
    return { d, leaderA, live, dead, fresh };
  }

  it('no live session expires because of the change; a dead one lives at most about one extra timeout', () => {
    const { d, live, dead, fresh } = setup();
    expect(d.tree.session(live)?.remainingMs).toBe(9000);
    expect(d.tree.session(fresh)?.remainingMs).toBeNull();
    // A dies at t=5000 (the live client touched it at 4500: that is lost); B becomes leader at t=7000
    const leaderB = new SessionTracker();
    leaderB.resetFromState(d.tree.sessions(), 7000);
    // real deadlines under A: live 4500+T=14500 (lost touch), dead 13000. B: 7000+9000 = 16000 for both
    expect(leaderB.deadline(live)).toBe(16_000);
    expect(leaderB.deadline(dead)).toBe(16_000);
    expect(leaderB.deadline(fresh)).toBe(17_000); // never checkpointed: a full timeout from now
    // the live client reaches B within its keep-alive period and lives on
    expect(leaderB.touch(live, 8000)).toBe(true);
    expect(leaderB.expired(15_999)).toEqual([]);
    expect(leaderB.expired(16_000)).toEqual([dead]);
    expect(16_000 - 13_000).toBeLessThanOrEqual(T); // the dead one lived less than one extra timeout
    d.now = 16_000;
    const r = d.ok({ op: 'expireSessions', ids: leaderB.expired(16_000) });
    expect(r.deleted).toEqual(['/dead-eph']);
    leaderB.sync(d.tree.sessions(), 16_000);
    expect(leaderB.has(dead)).toBe(false);
    expect(leaderB.has(live)).toBe(true);
    expect(leaderB.touch(dead, 16_001)).toBe(false);
  });
});
