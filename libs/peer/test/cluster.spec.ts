import { StateType } from '@app/raft';
import { GrpcCluster, kv, putVia } from './cluster-helpers.js';

describe('a 3-node RaftNode cluster wired with GrpcPeerTransport (real gRPC on 127.0.0.1)', () => {
  let c: GrpcCluster;

  afterEach(async () => {
    await c.destroy();
  });

  it('elects a leader and replicates proposals made on the leader and on followers', async () => {
    c = new GrpcCluster([1, 2, 3]);
    await c.init();
    await c.startAll();
    const leader = await c.waitForLeader();
    expect(leader.node.status().confState.voters.sort()).toEqual([1, 2, 3]);
    const followers = c.running().filter((m) => m.id !== leader.id);
    for (const f of followers) expect(f.node.status().role).toBe(StateType.Follower);

    const r1 = await leader.node.propose(kv('a', '1'));
    const r2 = await followers[0].node.propose(kv('a', '2'));
    expect(r2.index).toBe(r1.index + 1);
    expect(r2.result).toBe('1');
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => c.m(1 + (i % 3)).node.propose(kv(`k${i}`, `v${i}`))));
    expect(new Set(many.map((r) => r.index)).size).toBe(200);
    await c.waitForValue('k199', 'v199');
    await c.waitForValue('a', '2');
    for (const m of c.running()) expect(m.kv.data.size).toBe(201);
    // Every message went over gRPC in batches: fewer stream writes than messages.
    const sent = c.running().reduce((s, m) => s + m.transport.stats.messagesSent, 0);
    const batches = c.running().reduce((s, m) => s + m.transport.stats.batchesSent, 0);
    expect(sent).toBeGreaterThan(batches);
  });

  it('forwards writes and read indexes from a follower to the leader over the peer service', async () => {
    c = new GrpcCluster([1, 2, 3]);
    await c.init();
    await c.startAll();
    const leader = await c.waitForLeader();
    const follower = c.running().find((m) => m.id !== leader.id)!;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => follower.transport.forwardWrite(leader.id, kv('f', String(i)))));
    const indexes = results.map((r) => r.index);
    expect(new Set(indexes).size).toBe(20);
    for (const r of results) expect('ok' in r).toBe(true);
    const { index } = await follower.transport.forwardReadIndex(leader.id);
    expect(index).toBeGreaterThanOrEqual(Math.max(...indexes));
    await c.waitForValue('f', '19');
  });

  it('survives the leader stopping, and the old leader catches up by snapshot after restarting on its port', async () => {
    c = new GrpcCluster([1, 2, 3], { snapshotEvery: 20, snapshotCatchUpEntries: 5 });
    await c.init();
    await c.startAll();
    const first = await c.waitForLeader();
    await putVia(first, 'x', '0');
    await c.stop(first.id);
    const second = await c.waitForLeader();
    expect(second.id).not.toBe(first.id);
    for (let i = 1; i <= 60; i++) await putVia(second, 'x', String(i));
    // The log below the survivors' snapshots is gone: the restarted member needs a snapshot, sent in chunks.
    const back = await c.restart(first.id);
    await c.waitForValue('x', '60', [1, 2, 3]);
    expect(back.node.status().snapshotIndex).toBeGreaterThan(0);
    expect(second.transport.stats.snapshotsSent).toBeGreaterThanOrEqual(1);
    expect(back.transport.stats.snapshotsReceived).toBeGreaterThanOrEqual(1);
  });
});
