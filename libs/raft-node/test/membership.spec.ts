import { ProposalDroppedError } from '@app/raft-node';
import { TestCluster, putVia, waitFor } from './helpers.js';

describe('RaftNode: membership changes', () => {
  let c: TestCluster;

  beforeEach(async () => {
    c = new TestCluster([1, 2, 3], { snapshotEvery: 25, snapshotCatchUpEntries: 5 });
    await c.init();
  });

  afterEach(async () => {
    await c.destroy();
  });

  it('adds a learner, promotes it to voter, removes another member', async () => {
    await c.startAll();
    let leader = await c.waitForLeader();
    for (let i = 0; i < 40; i++) await putVia(leader, `k${i}`, `v${i}`);

    // A new, empty node joins: it is not bootstrapped and waits for the leader.
    const n4 = await c.start(4, { peers: [] });
    const added = await leader.node.addLearner(4);
    expect(added.confState.learners).toEqual([4]);
    await c.waitForValue('k39', 'v39', [4]);
    expect(n4.node.status().confState.learners).toEqual([4]);
    // The leader's log was compacted: the learner got a snapshot taken after its own addition (one taken
    // before it would not name it, and a node refuses a snapshot whose membership does not include it).
    expect(n4.kv.restores).toBeGreaterThanOrEqual(1);

    const promoted = await leader.node.promote(4);
    expect(promoted.confState.voters.sort()).toEqual([1, 2, 3, 4]);
    expect(promoted.confState.learners).toEqual([]);
    await waitFor('node 4 to apply its promotion', () => n4.node.status().confState.voters.includes(4), 3000, () => c.describe());

    // Remove a follower (not the leader), then stop it.
    const victim = [1, 2, 3].find((id) => id !== leader.node.id)!;
    const removed = await leader.node.remove(victim);
    expect(removed.confState.voters.sort()).toEqual([1, 2, 3, 4].filter((id) => id !== victim));
    await c.stop(victim);

    leader = await c.waitForLeader();
    await putVia(leader, 'after', '1');
    await c.waitForValue('after', '1');
    const remaining = [1, 2, 3, 4].filter((id) => id !== victim);
    await c.waitForConvergence(remaining);
    for (const id of remaining) expect(c.m(id).kv.data.size).toBe(41);
  });

  it('refuses a second conf change while one is pending', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    await c.start(4, { peers: [] });
    const first = leader.node.addLearner(4);
    await expect(leader.node.addLearner(5)).rejects.toBeInstanceOf(ProposalDroppedError);
    await first;
  });
});
