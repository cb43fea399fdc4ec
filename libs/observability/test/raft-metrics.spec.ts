/**
 * A 3-node RaftNode cluster in one process (real WAL files, in-memory network), each node with its own
 * Registry, RaftMetrics as its observer, and an ObservabilityServer on 127.0.0.1:0 — scraped over HTTP.
 */
import { NodeId } from '@app/raft';
import { ProposalDroppedError } from '@app/raft-node';
import { ObservabilityServer, RaftMetrics, createRegistry } from '@app/observability';
import { Member, NodeOverrides, TestCluster, put, putVia } from '../../raft-node/test/helpers.js';
import { Sample, get, scrape, sum, value } from './scrape.js';

interface Observed {
  member: Member;
  metrics: RaftMetrics;
  server: ObservabilityServer;
}

/** Polls an async condition every 10 ms. */
async function eventually(what: string, pred: () => Promise<boolean>, timeoutMs: number, diag: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${diag()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('RaftMetrics on a 3-node cluster, scraped over HTTP', () => {
  let c: TestCluster;
  const obs = new Map<NodeId, Observed>();

  async function cluster(defaults: NodeOverrides): Promise<void> {
    c = new TestCluster([1, 2, 3], defaults);
    await c.init();
  }

  afterEach(async () => {
    await Promise.all([...obs.values()].map((o) => o.server.close()));
    obs.clear();
    await c?.destroy();
  });

  async function startObserved(id: NodeId): Promise<Observed> {
    const registry = createRegistry();
    const metrics = new RaftMetrics(registry);
    const member = await c.start(id, { observer: metrics });
    const server = await ObservabilityServer.listen({ registry, host: '127.0.0.1', port: 0, raftNode: member.node });
    const o = { member, metrics, server };
    obs.set(id, o);
    return o;
  }

  const url = (id: NodeId): string => obs.get(id)!.server.url;

  it('reports leadership, proposals, fsyncs, commit latency, round trips and snapshots; /readyz follows the leader', async () => {
    // A snapshot every 10 applied entries (the log is kept: followers catch up from it, never from a snapshot).
    await cluster({ snapshotEvery: 10 });
    // Node 1 alone cannot elect anyone: not ready, and a proposal is dropped (no leader known).
    const o1 = await startObserved(1);
    const before = await get(`${url(1)}/readyz`);
    expect(before.status).toBe(503);
    expect(before.body).toMatch(/knows no leader/);
    expect((await get(`${url(1)}/livez`)).status).toBe(200);
    await expect(o1.member.node.propose(put('x', '0'))).rejects.toBeInstanceOf(ProposalDroppedError);
    let s1 = await scrape(url(1));
    expect(value(s1, 'synod_raft_has_leader')).toBe(0);
    expect(value(s1, 'synod_raft_is_leader')).toBe(0);
    expect(value(s1, 'synod_raft_proposals_failed_total', { reason: 'dropped' })).toBe(1);
    expect(value(s1, 'synod_raft_proposals_failed_total', { reason: 'timeout' })).toBe(0);

    await startObserved(2);
    await startObserved(3);
    const leader = await c.waitForLeader();
    const lid = leader.node.id;

    // N proposals through one follower (forwarded to the leader; resolved when applied on the follower).
    const proposer = c.m([1, 2, 3].find((id) => id !== lid)!);
    const pid = proposer.node.id;
    const n = 25;
    for (let i = 0; i < n; i++) await putVia(proposer, `k${i}`, `v${i}`);
    await c.waitForConvergence([1, 2, 3]);

    // The leader times heartbeats to both peers.
    const peers = [1, 2, 3].filter((p) => p !== lid).map(String);
    await eventually(
      'round trips to both peers on the leader',
      async () => {
        const s = await scrape(url(lid));
        return peers.every((peer) => sum(s, 'synod_raft_peer_round_trip_time_seconds_count', { peer }) > 0);
      },
      5000,
      () => c.describe(),
    );

    const scraped = new Map<NodeId, Sample[]>();
    for (const id of [1, 2, 3]) scraped.set(id, await scrape(url(id)));

    let leaders = 0;
    for (const id of [1, 2, 3]) {
      const s = scraped.get(id)!;
      const st = c.m(id).node.status();
      expect(value(s, 'synod_raft_has_leader')).toBe(1);
      leaders += value(s, 'synod_raft_is_leader');
      expect(value(s, 'synod_raft_is_leader')).toBe(id === lid ? 1 : 0);
      expect(value(s, 'synod_raft_term')).toBe(st.term);
      expect(value(s, 'synod_raft_commit_index')).toBe(st.commit);
      expect(value(s, 'synod_raft_applied_index')).toBe(st.applied);
      expect(value(s, 'synod_raft_leader_changes_seen_total')).toBeGreaterThanOrEqual(1);
      // Exactly n unless a retried proposal had timed out and still committed.
      expect(value(s, 'synod_raft_proposals_applied_total')).toBeGreaterThanOrEqual(n);
      expect(value(s, 'synod_raft_proposals_committed_total')).toBe(value(s, 'synod_raft_proposals_applied_total'));
      expect(value(s, 'synod_raft_proposals_pending')).toBe(0);
      expect(value(s, 'synod_raft_wal_fsync_duration_seconds_count')).toBeGreaterThan(0);
      // snapshotEvery 10: every node snapshotted its own state machine at least twice.
      expect(value(s, 'synod_raft_snapshot_duration_seconds_count', { kind: 'take' })).toBeGreaterThanOrEqual(2);
      expect(value(s, 'synod_raft_proposal_commit_duration_seconds_count')).toBe(id === pid ? n : 0);
      expect(value(s, 'synod_raft_proposal_commit_duration_seconds_bucket', { le: '+Inf' })).toBe(id === pid ? n : 0);
      expect(value(s, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
      expect((await get(`${url(id)}/readyz`)).status).toBe(200);
    }
    expect(leaders).toBe(1);

    // Commit latency: the sum of N positive durations, each under the 3 s proposal timeout.
    const sp = scraped.get(pid)!;
    const latencySum = value(sp, 'synod_raft_proposal_commit_duration_seconds_sum');
    expect(latencySum).toBeGreaterThan(0);
    expect(latencySum).toBeLessThan(3 * n);

    // Someone campaigned: with PreVote on (the default) a pre-vote round, then a real election, won by the leader.
    const sl = scraped.get(lid)!;
    expect(value(sl, 'synod_raft_elections_started_total', { kind: 'vote' })).toBeGreaterThanOrEqual(1);
    expect(value(sl, 'synod_raft_elections_started_total', { kind: 'pre_vote' })).toBeGreaterThanOrEqual(1);
    for (const p of [1, 2, 3].filter((x) => x !== lid)) {
      expect(value(sl, 'synod_raft_peer_round_trip_time_seconds_count', { peer: String(p) })).toBeGreaterThan(0);
      expect(value(sl, 'synod_raft_peer_round_trip_time_seconds_sum', { peer: String(p) })).toBeLessThan(10);
    }

    // A stopped member says so: no leader, not ready.
    await c.stop(pid);
    const gone = await get(`${url(pid)}/readyz`);
    expect(gone.status).toBe(503);
    expect(gone.body).toMatch(/is stopped/);
    s1 = await scrape(url(pid));
    expect(value(s1, 'synod_raft_has_leader')).toBe(0);
    expect(value(s1, 'synod_raft_is_leader')).toBe(0);
  });

  it('counts proposals that time out or are abandoned by a stop, and serves HEAD, 404 and 405', async () => {
    // The leader cut off from both followers after the election cannot commit: its proposals time out. No
    // CheckQuorum, so it stays leader meanwhile and accepts the next proposal.
    await cluster({ proposalTimeoutMs: 1000, raft: { checkQuorum: false } });
    for (const id of [1, 2, 3]) await startObserved(id);
    const leader = await c.waitForLeader();
    const lid = leader.node.id;
    for (const id of [1, 2, 3]) if (id !== lid) c.hub.isolate(id, [1, 2, 3]);

    const timedOut = leader.node.propose(put('a', '1'));
    await expect(timedOut).rejects.toMatchObject({ name: 'RequestTimeoutError' });
    const abandoned = leader.node.propose(put('b', '2'));
    const pending = value(await scrape(url(lid)), 'synod_raft_proposals_pending');
    expect(pending).toBe(1);
    await c.stop(lid);
    await expect(abandoned).rejects.toMatchObject({ name: 'NodeStoppedError' });

    const s = await scrape(url(lid));
    expect(value(s, 'synod_raft_proposals_failed_total', { reason: 'timeout' })).toBe(1);
    expect(value(s, 'synod_raft_proposals_failed_total', { reason: 'stopped' })).toBe(1);
    expect(value(s, 'synod_raft_proposals_pending')).toBe(0);
    expect(value(s, 'synod_raft_proposal_commit_duration_seconds_count')).toBe(0);

    const base = url(lid);
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await head.text()).toBe('');
    expect((await get(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    // A stopped (not failed) node's process is still live.
    expect((await get(`${base}/livez`)).status).toBe(200);
  });
});
