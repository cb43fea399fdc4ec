import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TestCluster, putVia, waitFor } from './helpers.js';

describe('RaftNode: snapshots', () => {
  let c: TestCluster;

  beforeEach(async () => {
    c = new TestCluster([1, 2, 3], { snapshotEvery: 20, snapshotCatchUpEntries: 5 });
    await c.init();
  });

  afterEach(async () => {
    await c.destroy();
  });

  it('takes snapshots every snapshotEvery entries and restarts from snapshot + log tail', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    for (let i = 0; i < 50; i++) await putVia(leader, `k${i}`, `v${i}`);
    await c.waitForConvergence([1, 2, 3]);
    for (const m of c.running()) {
      const s = m.node.status();
      expect(s.snapshotIndex).toBeGreaterThanOrEqual(20);
      expect(s.applied - s.snapshotIndex).toBeLessThan(20);
    }
    const snaps = await readdir(join(c.dataDir(leader.node.id), 'snap'));
    expect(snaps.length).toBeGreaterThanOrEqual(1);

    const fid = [1, 2, 3].find((id) => id !== leader.node.id)!;
    const kvBefore = new Map(c.m(fid).kv.data);
    const snapBefore = c.m(fid).node.status().snapshotIndex;
    await c.stop(fid);
    c.hub.isolate(fid, [1, 2, 3]);
    const m = await c.start(fid);
    expect(m.kv.restores).toBe(1); // restored from its own snapshot before anything else
    expect(m.node.status().snapshotIndex).toBe(snapBefore);
    await waitFor('the restarted node to re-apply its log tail', () => m.kv.data.size === kvBefore.size, 3000, () => c.describe());
    expect(m.kv.data).toEqual(kvBefore);
  });

  it('a node that lagged behind the compacted log is caught up by a snapshot, and restarts from it', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const lagger = [1, 2, 3].find((id) => id !== leader.node.id)!;
    await putVia(leader, 'first', '1');
    await c.waitForValue('first', '1');
    const lagLast = c.m(lagger).node.status().lastIndex;
    await c.stop(lagger);
    for (let i = 0; i < 100; i++) await putVia(leader, `k${i}`, `v${i}`);
    // The leader's log no longer holds what the lagger needs next.
    await waitFor('the leader to compact past the lagger', () => leader.node.status().snapshotIndex - 5 > lagLast + 1, 3000, () => c.describe());

    const m = await c.start(lagger);
    await c.waitForValue('k99', 'v99', [lagger]);
    await c.waitForConvergence([1, 2, 3]);
    expect(m.kv.restores).toBe(1); // an installed snapshot, not a replay
    expect(m.kv.applies).toBeLessThan(101);
    expect(m.kv.data).toEqual(leader.kv.data);
    expect(c.log.lines.some((l) => l.includes(`[node ${lagger}] installed snapshot`))).toBe(true);

    // Restarted after installing it: recovers from the installed snapshot and what followed.
    const kvBefore = new Map(m.kv.data);
    await c.stop(lagger);
    c.hub.isolate(lagger, [1, 2, 3]);
    const again = await c.start(lagger);
    expect(again.kv.restores).toBe(1);
    await waitFor('the node to re-apply its log after the installed snapshot', () => again.kv.data.size === kvBefore.size, 3000, () => c.describe());
    expect(again.kv.data).toEqual(kvBefore);
    c.hub.heal();
    await putVia(leader, 'last', '1');
    await c.waitForValue('last', '1');
  });
});
