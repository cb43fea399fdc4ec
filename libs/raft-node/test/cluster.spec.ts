import { StateType } from '@app/raft';
import { NodeStoppedError, ProposalDroppedError, RaftNode, RequestTimeoutError } from '@app/raft-node';
import { KvStateMachine, TestCluster, put, waitFor } from './helpers.js';

describe('RaftNode: a 3-node cluster in one process', () => {
  let c: TestCluster;

  beforeEach(async () => {
    c = new TestCluster([1, 2, 3]);
    await c.init();
  });

  afterEach(async () => {
    await c.destroy();
  });

  it('elects one leader that every node agrees on', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const st = leader.node.status();
    expect(st.role).toBe(StateType.Leader);
    expect(st.term).toBeGreaterThanOrEqual(2);
    expect(st.confState.voters.sort()).toEqual([1, 2, 3]);
    const others = [1, 2, 3].filter((id) => id !== leader.node.id);
    for (const id of others) expect(c.m(id).node.status().role).toBe(StateType.Follower);
  });

  it('reports replication progress on the leader only, and names the most caught-up voter as transfer target', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const { index } = await leader.node.propose(put('p', '1'));
    const cut = [1, 2, 3].filter((id) => id !== leader.node.id);
    // Cut one follower off, write more: the other one is now the most caught up.
    c.hub.isolate(cut[0], [1, 2, 3]);
    for (let i = 0; i < 5; i++) await leader.node.propose(put('p', String(i)));
    const st = leader.node.status();
    expect(st.progress.map((p) => p.id).sort()).toEqual([1, 2, 3]);
    const self = st.progress.find((p) => p.id === leader.node.id)!;
    expect(self.match).toBe(st.lastIndex);
    expect(st.progress.find((p) => p.id === cut[1])!.match).toBeGreaterThan(index);
    expect(st.progress.find((p) => p.id === cut[0])!.match).toBeLessThanOrEqual(index);
    expect(leader.node.mostCaughtUpVoter()).toBe(cut[1]);
    expect(c.m(cut[1]).node.status().progress).toEqual([]);
    expect(c.m(cut[1]).node.mostCaughtUpVoter()).toBeUndefined();
  });

  it('applies proposals made on the leader and on a follower on every node, returning index and result', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const follower = c.m([1, 2, 3].find((id) => id !== leader.node.id)!);

    const r1 = await leader.node.propose(put('a', '1'));
    expect(r1.result).toBeUndefined();
    expect(r1.index).toBeGreaterThan(3); // after the 3 bootstrap conf changes and the leader's no-op
    // Forwarded by the follower's core to the leader; resolved on the follower when applied there.
    const r2 = await follower.node.propose(put('a', '2'));
    expect(r2.result).toBe('1');
    expect(r2.index).toBe(r1.index + 1);
    await c.waitForValue('a', '2');
    for (const m of c.running()) {
      expect(m.kv.lastIndex).toBe(r2.index);
      expect(m.kv.applies).toBe(2);
    }
  });

  it('resolves many concurrent proposals with distinct indexes, coalescing them into few fdatasyncs', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const before = leader.fileOps.datasyncs;
    const n = 300;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => leader.node.propose(put(`k${i}`, `v${i}`))));
    const syncs = leader.fileOps.datasyncs - before;
    const indexes = results.map((r) => r.index);
    expect(new Set(indexes).size).toBe(n);
    expect(Math.max(...indexes) - Math.min(...indexes)).toBe(n - 1);
    // All proposals were in the core before the first Ready was taken: one batch, not one fdatasync each.
    expect(syncs).toBeLessThan(10);
    await c.waitForValue(`k${n - 1}`, `v${n - 1}`);
    for (const m of c.running()) expect(m.kv.data.size).toBe(n);
  });

  it('readIndex resolves only once the writes acknowledged before it are visible locally', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const follower = c.m([1, 2, 3].find((id) => id !== leader.node.id)!);
    for (let i = 0; i < 20; i++) {
      const { index } = await leader.node.propose(put('x', String(i)));
      // The follower may not have applied this write yet; after its read barrier it must see it.
      const ri = await follower.node.readIndex();
      expect(ri).toBeGreaterThanOrEqual(index);
      expect(follower.node.status().applied).toBeGreaterThanOrEqual(ri);
      expect(follower.kv.data.get('x')).toBe(String(i));
      const rl = await leader.node.readIndex();
      expect(rl).toBeGreaterThanOrEqual(index);
      expect(leader.kv.data.get('x')).toBe(String(i));
    }
  });

  it('transfers leadership to a chosen follower, and keeps serving', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    await leader.node.propose(put('before', '1'));
    const target = [1, 2, 3].find((id) => id !== leader.node.id)!;
    await leader.node.transferLeadership(target);
    const newLeader = await c.waitForLeader();
    expect(newLeader.node.id).toBe(target);
    expect(newLeader.node.status().term).toBeGreaterThan(leader.node.status().term - 1);
    await newLeader.node.propose(put('after', '2'));
    await c.waitForValue('after', '2');
    await c.waitForValue('before', '1');
    // The old leader (now a follower) asks for leadership back: the request is forwarded to the new leader.
    await leader.node.transferLeadership(leader.node.id);
    expect((await c.waitForLeader()).node.id).toBe(leader.node.id);
    // A follower may ask for a transfer to a third node: the request is forwarded with its transferee.
    const third = [1, 2, 3].find((id) => id !== leader.node.id && id !== target)!;
    await c.m(target).node.transferLeadership(third);
    expect((await c.waitForLeader()).node.id).toBe(third);
  });

  it('rejects a proposal with ProposalDroppedError when no leader is known', async () => {
    await c.start(1); // alone: it can never win an election
    await expect(c.m(1).node.propose(put('a', '1'))).rejects.toBeInstanceOf(ProposalDroppedError);
    await expect(c.m(1).node.readIndex()).rejects.toBeInstanceOf(ProposalDroppedError);
  });

  it('rejects a proposal with RequestTimeoutError when the leader is cut off from its followers', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const id = leader.node.id;
    c.hub.isolate(id, [1, 2, 3]);
    // The old leader accepts the proposal (it cannot know yet that it lost its quorum) but can never commit it.
    const p = leader.node.propose(put('lost', '1'));
    const outcome = await p.then(
      () => 'applied',
      (e: unknown) => e,
    );
    if (outcome instanceof ProposalDroppedError) {
      // It had already stepped down (CheckQuorum) when the proposal arrived: also a correct refusal.
      expect(leader.node.status().role).not.toBe(StateType.Leader);
    } else {
      expect(outcome).toBeInstanceOf(RequestTimeoutError);
    }
    // The rest elect a new leader; healed, the old one follows it and drops the uncommitted entry.
    await waitFor('a new leader among the others', () => [1, 2, 3].some((o) => o !== id && c.m(o).node.status().role === StateType.Leader), 5000, () => c.describe());
    c.hub.heal();
    const nl = await c.waitForLeader();
    await nl.node.propose(put('ok', '1'));
    await c.waitForValue('ok', '1');
    for (const m of c.running()) expect(m.kv.data.has('lost')).toBe(false);
  }, 20000);

  it('rejects pending and new requests with NodeStoppedError when stopped', async () => {
    await c.startAll();
    const leader = await c.waitForLeader();
    const follower = c.m([1, 2, 3].find((id) => id !== leader.node.id)!);
    c.hub.isolate(follower.node.id, [1, 2, 3]);
    const p = expect(follower.node.propose(put('a', '1'))).rejects.toBeInstanceOf(NodeStoppedError); // forwarded into the void
    await follower.node.stop();
    await p;
    await expect(follower.node.propose(put('b', '1'))).rejects.toBeInstanceOf(NodeStoppedError);
    expect(follower.node.status().phase).toBe('stopped');
  });

  it('stop() while start() is still opening the WAL leaves the node stopped and its data dir reusable', async () => {
    const node = new RaftNode({ id: 1, peers: [1, 2, 3], dataDir: c.dataDir(1), transport: c.hub.transport(1), stateMachine: new KvStateMachine(), tickMs: 10 });
    const started = node.start();
    const stopped = node.stop();
    await started;
    await stopped;
    await node.stop(); // idempotent
    expect(node.status().phase).toBe('stopped');
    await expect(node.start()).rejects.toThrow(/starts once/);
    // The WAL was closed: a new node opens the same dir and joins the others.
    await c.startAll();
    const leader = await c.waitForLeader();
    await leader.node.propose(put('a', '1'));
    await c.waitForValue('a', '1');
  });
});
