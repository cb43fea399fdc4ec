/**
 * The consensus lock backend against a real 3-member Synod consensus cluster (real processes on loopback):
 * backend-specific behaviour, then the shared QueueStore conformance suite.
 */
import { SynodClient } from '@app/client';
import { ConsensusQueueStore } from '../src/backends/consensus.js';
import { ProcessCluster } from '../../../apps/consensus/test/harness.js';
import { runQueueStoreConformance } from './conformance.js';

const cluster = new ProcessCluster([1, 2, 3]);
let endpoints: string[] = [];

beforeAll(async () => {
  await cluster.start();
  endpoints = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`);
}, 60_000);

afterAll(async () => {
  await cluster.stopAll();
});

const open = async (root = '/locks') => {
  const store = new ConsensusQueueStore({ endpoints, root, sessionTimeoutMs: 3000 });
  return { store, cleanup: () => store.close() };
};

describe('consensus backend', () => {
  it('stores entries as ephemeral sequential nodes; the order is the creation zxid', async () => {
    const { store, cleanup } = await open();
    const client = new SynodClient({ endpoints });
    try {
      await store.start();
      const a = await store.enqueue('orders/42', { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000, ownerId: 'o' });
      const b = await store.enqueue('orders/42', { mode: 'SHARED', limit: 1, ttlMs: 10_000 });
      expect(a.key).toMatch(/^x-1-\d{10}$/);
      expect(b.key).toMatch(/^s-1-\d{10}$/);
      const node = await client.get(`/locks/orders%2F42/${a.key}`);
      expect(node.stat.czxid).toBe(a.order);
      expect(node.stat.ephemeralOwner).toBeGreaterThan(0);
      expect(JSON.parse(node.data.toString('utf8'))).toMatchObject({ ownerId: 'o', holdCount: 1 });
      expect(await store.names('orders/', 10)).toEqual(['orders/42']);
    } finally {
      client.close();
      await cleanup();
    }
  });

  it("a store that goes away (its session closes) takes its entries with it and wakes another store's watcher", async () => {
    const s1 = await open();
    const s2 = await open();
    try {
      await s1.store.start();
      await s2.store.start();
      const name = `gone-${Date.now()}`;
      const a = await s1.store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 60_000 });
      const w = s2.store.watch(name, [a.key], new AbortController().signal);
      await s1.cleanup();
      await w;
      expect(await s2.store.entries(name)).toEqual([]);
    } finally {
      await s2.cleanup();
    }
  });
});

runQueueStoreConformance('consensus', () => open());
