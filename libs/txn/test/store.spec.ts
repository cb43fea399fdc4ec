/** The coordinator's store on a real 3-member consensus cluster: CAS, listing, guarded writes, leader election. */
import { ConsensusTxnStore, NotLeaderError } from '@app/txn';
import { ProcessCluster } from '../../../apps/consensus/test/harness.js';

const cluster = new ProcessCluster([1, 2, 3]);
let endpoints: string[] = [];
const stores: ConsensusTxnStore[] = [];
const open = async (root = '/txn-test'): Promise<ConsensusTxnStore> => {
  const s = new ConsensusTxnStore({ endpoints, root, sessionTimeoutMs: 1000 });
  stores.push(s);
  await s.start();
  return s;
};

beforeAll(async () => {
  await cluster.start();
  endpoints = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`);
}, 60_000);

afterAll(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  await cluster.stopAll();
});

test('create is exclusive, update is compare-and-set, list returns children in key order, delete by version', async () => {
  const s = await open('/txn-kv');
  expect(await s.create('tx/b', Buffer.from('1'))).toBe(true);
  expect(await s.create('tx/b', Buffer.from('2'))).toBe(false);
  expect(await s.create('tx/a', Buffer.from('x'))).toBe(true);
  const b = (await s.get('tx/b'))!;
  expect(b.value.toString()).toBe('1');
  expect(await s.update('tx/b', Buffer.from('3'), b.version)).toBe(true);
  expect(await s.update('tx/b', Buffer.from('4'), b.version)).toBe(false);
  expect(await s.update('tx/nope', Buffer.from('4'), 0)).toBe(false);
  expect((await s.list('tx')).map((v) => [v.key, v.value.toString()])).toEqual([
    ['tx/a', 'x'],
    ['tx/b', '3'],
  ]);
  expect(await s.delete('tx/a', 7)).toBe(false);
  expect(await s.delete('tx/a')).toBe(true);
  expect(await s.get('tx/a')).toBeUndefined();
  expect(await s.list('none')).toEqual([]);
});

test('leader election: FIFO, a larger epoch for the next leader, and a deposed leader cannot write', async () => {
  const s1 = await open();
  const s2 = await open();
  const l1 = await s1.campaign('c1', new AbortController().signal);
  expect(await s2.leader()).toBe('c1');
  let l2Resolved = false;
  const p2 = s2.campaign('c2', new AbortController().signal).then((l) => ((l2Resolved = true), l));
  await new Promise((r) => setTimeout(r, 300));
  expect(l2Resolved).toBe(false);
  expect(await s1.create('guarded/one', Buffer.from('by c1'), l1)).toBe(true);
  // c1's process "dies": its session ends, c2 takes over with a larger epoch
  await s1.close();
  const l2 = await p2;
  expect(l2.epoch).toBeGreaterThan(l1.epoch);
  expect(l1.signal.aborted).toBe(true);
  await expect(s1.create('guarded/two', Buffer.from('late c1'), l1)).rejects.toBeInstanceOf(NotLeaderError);
  expect(await s2.create('guarded/two', Buffer.from('by c2'), l2)).toBe(true);
  expect((await s2.get('guarded/two'))!.value.toString()).toBe('by c2');
  await l2.resign();
  expect(l2.signal.aborted).toBe(true);
  await expect(s2.update('guarded/two', Buffer.from('x'), 0, l2)).rejects.toBeInstanceOf(NotLeaderError);
});
