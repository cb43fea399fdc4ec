/**
 * Snapshots and history limits with real processes: members snapshot every 20 entries keeping 5 below, so a
 * member added later must install the leader's snapshot (tree + member table); a restarted member recovers
 * from its snapshot and WAL; a watch resuming from a zxid older than the kept history gets `compacted`.
 */
import * as grpc from '@grpc/grpc-js';
import { FAST, Msg, ProcessCluster, WatchClient, bytes, rpc, rpcError, waitFor } from './harness.js';

const cluster = new ProcessCluster([1, 2, 3], [...FAST, '--snapshot-count', '20', '--snapshot-catchup-entries', '5', '--watch-history', '10']);

beforeAll(async () => {
  await cluster.start();
}, 40_000);

afterAll(async () => {
  await cluster.stopAll();
});

test('a member added after the log was compacted installs a snapshot with the tree and the member table', async () => {
  const leader = await cluster.waitLeader();
  const C = (id: number) => cluster.coordination(id);
  await rpc(C(leader), 'Create', { path: '/snap' });
  for (let i = 0; i < 60; i++) await rpc(C(leader), 'Create', { path: `/snap/k${i}`, data: bytes(String(i)) });
  const st = await cluster.status(leader);
  expect(st.snapshotIndex).toBeGreaterThan(20);

  const m4 = await cluster.prepare(4);
  await rpc(cluster.cluster(leader), 'AddMember', { id: 4, name: 'joiner', peerUrls: [`127.0.0.1:${m4.peerPort}`], clientUrls: [`127.0.0.1:${m4.clientPort}`] });
  cluster.spawn(4, 'existing', [1, 2, 3, 4]);
  await cluster.waitServing(4);
  await waitFor('member 4 caught up', async () => (await cluster.status(4)).appliedIndex >= st.appliedIndex);
  expect(cluster.logOf(4)).toMatch(/installed snapshot/);
  const kids = await rpc(C(4), 'GetChildren', { path: '/snap', consistency: 'SEQUENTIAL' });
  expect(kids.children).toHaveLength(60);
  // The member table arrived with the snapshot: member 4's own entry carries the name given to AddMember.
  const s4 = await cluster.status(4);
  expect(s4.members.find((m: Msg) => m.id === 4).name).toBe('joiner');
  expect(s4.members.map((m: Msg) => [m.id, m.peerUrls[0]])).toEqual(
    [1, 2, 3, 4].map((id) => [id, `127.0.0.1:${cluster.members.get(id)!.peerPort}`]),
  );
  await rpc(cluster.cluster(leader), 'PromoteMember', { id: 4 });
  // The new voter reaches the others with the addresses it learned: a linearizable read through it works.
  expect((await rpc(C(4), 'Get', { path: '/snap/k59' })).data.toString()).toBe('59');
  await rpc(cluster.cluster(leader), 'RemoveMember', { id: 4 });
  await cluster.kill(4, 'SIGTERM');
});

test('a restarted member recovers from its snapshot and WAL', async () => {
  const leader = await cluster.waitLeader();
  const follower = [1, 2, 3].find((id) => id !== leader)!;
  await cluster.kill(follower, 'SIGKILL');
  for (let i = 0; i < 30; i++) await rpc(cluster.coordination(leader), 'Set', { path: '/snap/k0', data: bytes(`x${i}`), version: -1 });
  cluster.spawn(follower);
  await cluster.waitServing(follower);
  const target = (await cluster.status(leader)).commitIndex as number;
  await waitFor('caught up', async () => (await cluster.status(follower)).appliedIndex >= target);
  const g = await rpc(cluster.coordination(follower), 'Get', { path: '/snap/k0' });
  expect(g.data.toString()).toBe('x29');
  expect(g.stat.version).toBe(30);
});

test('resuming a watch from a zxid older than the kept history answers compacted', async () => {
  const leader = await cluster.waitLeader();
  const first = await rpc(cluster.coordination(leader), 'Set', { path: '/snap/k1', data: bytes('a'), version: -1 });
  for (let i = 0; i < 12; i++) await rpc(cluster.coordination(leader), 'Set', { path: '/snap/k1', data: bytes(`b${i}`), version: -1 });
  const w = new WatchClient(cluster.coordination(leader));
  w.add({ path: '/snap/k1', kind: 'PERSISTENT', watchId: 5, startZxid: first.stat.mzxid });
  await w.waitFor('compacted', (x) => x.responses.some((r) => r.compacted));
  const c = w.responses.find((r) => r.compacted)!.compacted;
  expect(c.watchId).toBe(5);
  expect(c.compactZxid).toBeGreaterThan(first.stat.mzxid);
  // From the zxid it names, the watch works again.
  w.add({ path: '/snap/k1', kind: 'PERSISTENT', watchId: 6, startZxid: c.compactZxid });
  await w.waitFor('added', (x) => x.responses.some((r) => r.added?.watchId === 6));
  w.close();
  await rpcError(rpc(cluster.cluster(leader), 'PromoteMember', { id: 9 }), grpc.status.NOT_FOUND);
});
