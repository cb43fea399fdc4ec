/**
 * The observer hook: what a RaftNode reports (a recording observer on a real 3-node cluster), heartbeat
 * round-trip matching, and an observer that throws never hurting the node.
 */
import { NodeId } from '@app/raft';
import { ElectionKind, ProposalFailureReason, RaftNodeObserver, RoundTripProbe, SnapshotKind } from '@app/raft-node';
import { TestCluster, putVia, waitFor } from './helpers.js';

/** Records every callback. */
class Recorder implements RaftNodeObserver {
  leaders: { leader: NodeId; term: number; isSelf: boolean }[] = [];
  elections: ElectionKind[] = [];
  hardStates: { term: number; commit: number }[] = [];
  committed = 0;
  applied = 0;
  appliedIndex = 0;
  completed: number[] = [];
  failed: ProposalFailureReason[] = [];
  pending = -1;
  fsyncs: number[] = [];
  roundTrips = new Map<NodeId, number[]>();
  snapshots: { kind: SnapshotKind; seconds: number }[] = [];

  onLeaderChange(leader: NodeId, term: number, isSelf: boolean): void {
    this.leaders.push({ leader, term, isSelf });
  }
  onElectionStarted(kind: ElectionKind): void {
    this.elections.push(kind);
  }
  onHardState(term: number, commit: number): void {
    this.hardStates.push({ term, commit });
  }
  onProposalsCommitted(n: number): void {
    this.committed += n;
  }
  onProposalsApplied(n: number): void {
    this.applied += n;
  }
  onApplied(index: number): void {
    this.appliedIndex = index;
  }
  onProposalCompleted(seconds: number): void {
    this.completed.push(seconds);
  }
  onProposalFailed(reason: ProposalFailureReason): void {
    this.failed.push(reason);
  }
  onProposalsPending(n: number): void {
    this.pending = n;
  }
  onFsync(seconds: number): void {
    this.fsyncs.push(seconds);
  }
  onRoundTrip(peer: NodeId, seconds: number): void {
    const a = this.roundTrips.get(peer) ?? [];
    a.push(seconds);
    this.roundTrips.set(peer, a);
  }
  onSnapshot(kind: SnapshotKind, seconds: number): void {
    this.snapshots.push({ kind, seconds });
  }
}

describe('RaftNode observer', () => {
  let c: TestCluster;

  afterEach(async () => {
    await c?.destroy();
  });

  it('reports leadership, elections, indexes, proposals, fsyncs, round trips and snapshots', async () => {
    c = new TestCluster([1, 2, 3], { snapshotEvery: 5 });
    await c.init();
    const rec = new Map<NodeId, Recorder>();
    for (const id of [1, 2, 3]) {
      const r = new Recorder();
      rec.set(id, r);
      await c.start(id, { observer: r });
    }
    const leader = await c.waitForLeader();
    const lid = leader.node.id;
    for (let i = 0; i < 8; i++) await putVia(leader, `k${i}`, `v${i}`);
    await c.waitForConvergence([1, 2, 3]);
    const peers = [1, 2, 3].filter((p) => p !== lid);
    const lr = rec.get(lid)!;
    await waitFor('round trips to both peers', () => peers.every((p) => (lr.roundTrips.get(p)?.length ?? 0) > 0), 5000, () => c.describe());

    for (const id of [1, 2, 3]) {
      const r = rec.get(id)!;
      const st = c.m(id).node.status();
      // At start: no leader known (term 1 after bootstrap); then the elected one.
      expect(r.leaders[0]).toEqual({ leader: 0, term: expect.any(Number), isSelf: false });
      expect(r.leaders.at(-1)).toEqual({ leader: lid, term: st.term, isSelf: id === lid });
      expect(r.hardStates.at(-1)).toEqual({ term: st.term, commit: st.commit });
      expect(r.appliedIndex).toBe(st.applied);
      expect(r.committed).toBe(8);
      expect(r.applied).toBe(8);
      expect(r.fsyncs.length).toBeGreaterThan(0);
      for (const s of r.fsyncs) expect(s).toBeGreaterThanOrEqual(0);
      expect(r.snapshots.filter((s) => s.kind === 'take').length).toBeGreaterThanOrEqual(1);
      expect(r.completed.length).toBe(id === lid ? 8 : 0);
      expect(r.failed).toEqual([]);
    }
    // The winner went through a pre-vote round and a real election.
    expect(lr.elections).toContain('pre_vote');
    expect(lr.elections).toContain('vote');
    expect(lr.elections.indexOf('pre_vote')).toBeLessThan(lr.elections.lastIndexOf('vote'));
    expect(lr.pending).toBe(0);
    for (const p of peers) for (const s of lr.roundTrips.get(p)!) expect(s).toBeGreaterThanOrEqual(0);
    expect(lr.roundTrips.has(lid)).toBe(false);

    // A leadership transfer is an election without a pre-vote round (TimeoutNow).
    const to = peers[0];
    const before = [...rec.get(to)!.elections];
    await leader.node.transferLeadership(to);
    await c.waitForLeader();
    expect(rec.get(to)!.elections.slice(before.length)).toEqual(['vote']);

    // Stopping reports "no leader" last.
    await c.stop(to);
    expect(rec.get(to)!.leaders.at(-1)).toEqual({ leader: 0, term: expect.any(Number), isSelf: false });
  });

  it('keeps running when the observer throws', async () => {
    c = new TestCluster([1, 2, 3]);
    await c.init();
    const angry: RaftNodeObserver = {
      onLeaderChange: () => {
        throw new Error('observer bug');
      },
      onFsync: () => {
        throw new Error('observer bug');
      },
      onProposalCompleted: () => {
        throw new Error('observer bug');
      },
    };
    await Promise.all([1, 2, 3].map((id) => c.start(id, { observer: angry })));
    const leader = await c.waitForLeader();
    const r = await putVia(leader, 'a', '1');
    expect(r.index).toBeGreaterThan(0);
    await c.waitForValue('a', '1');
    for (const m of c.running()) expect(m.node.status().phase).toBe('running');
    expect(c.log.lines.some((l) => l.includes('observer onFsync threw: observer bug'))).toBe(true);
  });
});

describe('RoundTripProbe', () => {
  it('times one heartbeat at a time and matches it to its own response, in order', () => {
    const p = new RoundTripProbe(1000);
    p.sent(2, 0); // timed
    p.sent(2, 10); // not timed: one is outstanding
    expect(p.received(2, 4)).toBeCloseTo(0.004);
    p.sent(2, 20); // timed, one earlier unanswered: the second response is its own
    expect(p.received(2, 15)).toBeUndefined(); // answers the heartbeat of t=10
    expect(p.received(2, 27)).toBeCloseTo(0.007);
    expect(p.received(2, 30)).toBeUndefined(); // nothing outstanding
    // Peers are independent.
    p.sent(3, 100);
    expect(p.received(2, 101)).toBeUndefined();
    expect(p.received(3, 102)).toBeCloseTo(0.002);
  });

  it('starts over after a loss: an unreachable report, or a timed heartbeat unanswered for too long', () => {
    const p = new RoundTripProbe(100);
    p.sent(2, 0);
    p.reset(2); // the transport lost it
    expect(p.received(2, 5)).toBeUndefined();
    p.sent(2, 10);
    expect(p.received(2, 12)).toBeCloseTo(0.002);

    p.sent(2, 20); // lost silently
    p.sent(2, 200); // overdue: start over, time this one
    expect(p.received(2, 203)).toBeCloseTo(0.003);
  });
});
