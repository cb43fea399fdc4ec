import { StateType } from '@app/raft';
import { TestCluster, putVia, waitFor } from './helpers.js';

describe('RaftNode: restarts on the same data dir', () => {
  let c: TestCluster;

  beforeEach(async () => {
    c = new TestCluster([1, 2, 3]);
    await c.init();
  });

  afterEach(async () => {
    await c.destroy();
  });

  it('a restarted follower recovers its log and state from its own WAL, then catches up', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const fid = [1, 2, 3].find((id) => id !== leader.node.id)!;
    for (let i = 0; i < 30; i++) await putVia(leader, `k${i}`, `v${i}`);
    await c.waitForValue('k29', 'v29');
    const before = c.m(fid).node.status();
    const kvBefore = new Map(c.m(fid).kv.data);
    await c.stop(fid);
    for (let i = 30; i < 60; i++) await putVia(leader, `k${i}`, `v${i}`); // acknowledged by the other two

    // Cut off from the cluster, the restarted node can only rebuild from its disk.
    c.hub.isolate(fid, [1, 2, 3]);
    const m = await c.start(fid);
    expect(m.node.status().lastIndex).toBe(before.lastIndex);
    expect(m.node.status().term).toBe(before.term);
    await waitFor(`node ${fid} to re-apply its committed log`, () => m.kv.data.size === kvBefore.size, 3000, () => c.describe());
    expect(m.kv.data).toEqual(kvBefore);
    expect(m.node.status().applied).toBeGreaterThanOrEqual(before.commit);

    c.hub.heal();
    await c.waitForValue('k59', 'v59', [fid]);
    await c.waitForConvergence([1, 2, 3]);
    expect(m.kv.data).toEqual(leader.kv.data);
    expect(m.kv.data.size).toBe(60);
  });

  it('losing the leader loses no acknowledged write; the old leader rejoins as a follower', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const lid = leader.node.id;
    const term = leader.node.status().term;
    const acked: string[] = [];
    for (let i = 0; i < 40; i++) {
      await leader.node.propose(new TextEncoder().encode(JSON.stringify({ op: 'put', key: `k${i}`, value: `v${i}` })));
      acked.push(`k${i}`);
    }
    await c.stop(lid);
    const nl = await c.waitForLeader();
    expect(nl.node.id).not.toBe(lid);
    expect(nl.node.status().term).toBeGreaterThan(term);
    for (const m of c.running()) for (const k of acked) expect(m.kv.data.has(k)).toBe(true);
    await putVia(nl, 'after', '1');

    const old = await c.start(lid);
    await c.waitForValue('after', '1', [lid]);
    await c.waitForConvergence([1, 2, 3]);
    expect(old.node.status().role).toBe(StateType.Follower);
    for (const k of acked) expect(old.kv.data.has(k)).toBe(true);
  });

  it('the whole cluster stopped and restarted keeps every acknowledged write and its term', async () => {
    await c.startAll();
    let leader = await c.waitForLeader();
    const writes = await Promise.all(Array.from({ length: 50 }, (_, i) => putVia(leader, `k${i}`, `v${i}`)));
    const lastAcked = Math.max(...writes.map((w) => w.index));
    const terms = [1, 2, 3].map((id) => c.m(id).node.status().term);
    await c.stopAll();

    await c.startAll();
    leader = await c.waitForLeader();
    for (const id of [1, 2, 3]) expect(c.m(id).node.status().term).toBeGreaterThanOrEqual(terms[id - 1]);
    await c.waitForConvergence([1, 2, 3]);
    for (const m of c.running()) {
      expect(m.kv.data.size).toBe(50);
      expect(m.kv.lastIndex).toBe(lastAcked);
      for (let i = 0; i < 50; i++) expect(m.kv.data.get(`k${i}`)).toBe(`v${i}`);
    }
    const r = await putVia(leader, 'new', 'x');
    expect(r.index).toBeGreaterThan(lastAcked);
    await c.waitForValue('new', 'x');

    // And once more, stopping them one after another while writes continue.
    await c.stopAll();
    await c.startAll();
    leader = await c.waitForLeader();
    await c.waitForConvergence([1, 2, 3]);
    for (const m of c.running()) expect(m.kv.data.get('new')).toBe('x');
  });
});
