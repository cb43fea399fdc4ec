/**
 * The coordinator's store, the same tests on both implementations: ConsensusTxnStore on a real 3-member consensus
 * cluster and EtcdTxnStore on a real etcd — CAS, listing, guarded writes, leader election. Plus etcd only: direct
 * children only in list, and a leader whose lease expires (its keep-alives blackholed by a TCP proxy).
 */
import { Etcd3 } from 'etcd3';
import { ConsensusTxnStore, EtcdTxnStore, NotLeaderError, StoreUnavailableError } from '@app/txn';
import type { Leadership, TxnStore } from '@app/txn';
import { TcpProxy } from '@app/testing';
import { ProcessCluster, waitFor } from '../../../apps/consensus/test/harness.js';
import { EtcdServer } from '../../testing/src/servers/etcd.js';

/** `open(ns)`: a started store on the namespace `ns` (its own root / prefix), closed by the caller's afterAll. */
function storeTests(open: (ns: string) => Promise<TxnStore>): void {
  test('create is exclusive, update is compare-and-set, list returns children in key order, delete by version', async () => {
    const s = await open('kv');
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

  test('createVersioned / updateVersioned return the version after the write, usable for the next compare-and-set', async () => {
    const s = await open('kvv');
    const v0 = await s.createVersioned('tx/v', Buffer.from('a'));
    expect(v0).toBeDefined();
    expect((await s.get('tx/v'))!.version).toBe(v0);
    expect(await s.createVersioned('tx/v', Buffer.from('again'))).toBeUndefined();
    const v1 = await s.updateVersioned('tx/v', Buffer.from('b'), v0!);
    expect(v1).toBeDefined();
    expect(v1).not.toBe(v0);
    expect((await s.get('tx/v'))!.version).toBe(v1);
    expect(await s.updateVersioned('tx/v', Buffer.from('stale'), v0!)).toBeUndefined();
    const v2 = await s.updateVersioned('tx/v', Buffer.from('c'), v1!);
    expect((await s.get('tx/v'))!).toMatchObject({ version: v2, value: Buffer.from('c') });
  });

  test('leader election: FIFO, a larger epoch for the next leader, and a deposed leader cannot write', async () => {
    const s1 = await open('test');
    const s2 = await open('test');
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
}

describe('ConsensusTxnStore (3-member consensus cluster)', () => {
  const cluster = new ProcessCluster([1, 2, 3]);
  let endpoints: string[] = [];
  const stores: ConsensusTxnStore[] = [];

  beforeAll(async () => {
    await cluster.start();
    endpoints = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`);
  }, 60_000);

  afterAll(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    await cluster.stopAll();
  });

  storeTests(async (ns) => {
    const s = new ConsensusTxnStore({ endpoints, root: `/txn-${ns}`, sessionTimeoutMs: 1000 });
    stores.push(s);
    await s.start();
    return s;
  });
});

describe('EtcdTxnStore (real etcd)', () => {
  let etcd: EtcdServer;
  const stores: EtcdTxnStore[] = [];
  const proxies: TcpProxy[] = [];
  const open = async (ns: string, endpoint = etcd.endpoint): Promise<EtcdTxnStore> => {
    const s = new EtcdTxnStore({ endpoints: [endpoint], prefix: `synod/txn-${ns}/`, sessionTimeoutMs: 1000 });
    stores.push(s);
    await s.start();
    return s;
  };

  beforeAll(async () => {
    etcd = await EtcdServer.start();
  }, 60_000);

  afterAll(async () => {
    for (const p of proxies) p.setMode('pass');
    for (const s of stores) await s.close().catch(() => undefined);
    for (const p of proxies) await p.close();
    await etcd?.stop();
  });

  storeTests(open);

  test('list returns direct children only; the version is the key mod revision', async () => {
    const s = await open('list');
    expect(await s.create('q/z', Buffer.from('z'))).toBe(true);
    expect(await s.create('q/x/y', Buffer.from('deep'))).toBe(true);
    expect(await s.create('qq', Buffer.from('sibling'))).toBe(true);
    expect((await s.list('q')).map((v) => v.key)).toEqual(['q/z']);
    expect((await s.list('q/x')).map((v) => v.key)).toEqual(['q/x/y']);
    const z = (await s.get('q/z'))!;
    expect(await s.update('q/z', Buffer.from('z2'), z.version)).toBe(true);
    expect((await s.get('q/z'))!.version).toBeGreaterThan(z.version);
    expect(await s.delete('q/z', z.version)).toBe(false);
  });

  test('etcd unreachable: StoreUnavailableError, not a hang', async () => {
    const proxy = await TcpProxy.start(etcd.endpoint);
    proxies.push(proxy);
    const s = new EtcdTxnStore({ endpoints: [proxy.address], prefix: 'synod/txn-down/', callTimeoutMs: 1000 });
    stores.push(s);
    await s.start();
    proxy.setMode('reset');
    await expect(s.get('tx/a')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.create('tx/a', Buffer.from('x'))).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.campaign('c', new AbortController().signal)).rejects.toBeInstanceOf(StoreUnavailableError);
    proxy.setMode('blackhole');
    await expect(s.list('tx')).rejects.toBeInstanceOf(StoreUnavailableError);
  }, 30_000);

  test('a leader whose lease expires (keep-alives blackholed) loses its leadership; the next leader has a larger epoch; the old guarded write fails', async () => {
    const proxy = await TcpProxy.start(etcd.endpoint);
    proxies.push(proxy);
    const s1 = await open('lease', proxy.address);
    const s2 = await open('lease');
    const l1 = await s1.campaign('c1', new AbortController().signal);
    expect(await s1.create('guarded/one', Buffer.from('by c1'), l1)).toBe(true);
    let l2: Leadership | undefined;
    const p2 = s2.campaign('c2', new AbortController().signal).then((l) => (l2 = l));
    await new Promise((r) => setTimeout(r, 300));
    expect(l2).toBeUndefined();
    // c1's process is partitioned from etcd: nothing it sends arrives, it is not closed, its lease is not revoked
    proxy.setMode('blackhole');
    await waitFor('c2 leads once the lease of c1 expired', () => l2, 20_000);
    await p2;
    expect(l2!.epoch).toBeGreaterThan(l1.epoch);
    expect(await s2.leader()).toBe('c2');
    // c1 notices by itself: no keep-alive answered for a whole TTL
    await waitFor('the leadership of c1 ended', () => l1.signal.aborted, 10_000);
    proxy.setMode('pass');
    await expect(s1.create('guarded/two', Buffer.from('late c1'), l1)).rejects.toBeInstanceOf(NotLeaderError);
    await expect(s1.update('guarded/one', Buffer.from('late c1'), (await s1.get('guarded/one'))!.version, l1)).rejects.toBeInstanceOf(NotLeaderError);
    expect(await s2.get('guarded/two')).toBeUndefined();
    expect((await s2.get('guarded/one'))!.value.toString()).toBe('by c1');
    expect(await s2.create('guarded/two', Buffer.from('by c2'), l2!)).toBe(true);

    // an operator deletes c2's election key: the next guarded write is refused by etcd (or c2 already saw the delete)
    const raw = new Etcd3({ hosts: [etcd.endpoint] });
    try {
      const keys = await raw.getAll().prefix('synod/txn-lease/election/').keys();
      expect(keys).toHaveLength(1);
      await raw.delete().key(keys[0]);
    } finally {
      raw.close();
    }
    await expect(s2.update('guarded/two', Buffer.from('x'), (await s2.get('guarded/two'))!.version, l2!)).rejects.toBeInstanceOf(NotLeaderError);
    await waitFor('the leadership of c2 ended', () => l2!.signal.aborted, 10_000);
    expect((await s2.get('guarded/two'))!.value.toString()).toBe('by c2');
    expect(await s2.leader()).toBeUndefined();
  }, 60_000);
});
