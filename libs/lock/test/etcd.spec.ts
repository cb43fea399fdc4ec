/**
 * The etcd lock store against a real single-member etcd 3.4 (started here, stopped by pid in afterAll):
 * etcd-specific behaviour (layout, create revisions as orders, one lease per entry, lease expiry, renew,
 * revoke on remove, names, UNAVAILABLE), then the shared QueueStore conformance suite.
 */
import { Etcd3 } from 'etcd3';
import { EtcdQueueStore, leaseSeconds } from '../src/backends/etcd.js';
import { EtcdServer } from '../../testing/src/servers/etcd.js';
import { runQueueStoreConformance } from './conformance.js';
import { sleep, within } from './util.js';

let server: EtcdServer | undefined;
let raw: Etcd3 | undefined;
const PREFIX = `synod-test/${process.pid}/locks`;

beforeAll(async () => {
  server = await EtcdServer.start();
  raw = new Etcd3({ hosts: [server.endpoint], defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }) });
}, 60_000);

afterAll(async () => {
  raw?.close();
  await server?.stop();
});


function etcd(): Etcd3 {
  if (raw === undefined) throw new Error('etcd did not start (see beforeAll)');
  return raw;
}

async function open(prefix = PREFIX): Promise<{ store: EtcdQueueStore; cleanup: () => Promise<void> }> {
  if (server === undefined) throw new Error('etcd did not start (see beforeAll)');
  const store = new EtcdQueueStore({ endpoints: [server.endpoint], prefix });
  return { store, cleanup: () => store.close() };
}


let n = 0;
const unique = (what: string): string => `etcd/${what}/${Date.now().toString(36)}-${++n}`;

describe('etcd backend', () => {
  it('leaseSeconds rounds ms up to whole seconds, at least 1', () => {
    expect([0, 1, 999, 1000, 1001, 2500, 10_000].map(leaseSeconds)).toEqual([1, 1, 1, 1, 2, 3, 10]);
  });

  it('stores an entry as <prefix>/<encoded name>/<key> on its own lease; the order is the create revision', async () => {
    const { store, cleanup } = await open();
    try {
      await store.start();
      const name = `${unique('layout')}/orders:42`;
      const a = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1500, ownerId: 'o', requestId: 'r' });
      const b = await store.enqueue(name, { mode: 'SHARED', limit: 1, ttlMs: 1500 });
      expect(a.key).toMatch(/^[0-9a-f]{24}$/);
      const key = `${PREFIX}/${encodeURIComponent(name)}/${a.key}`;
      const kv = (await etcd().kv.range({ key: Buffer.from(key) })).kvs[0];
      expect(kv).toBeDefined();
      expect(Number(kv.create_revision)).toBe(a.order);
      expect(JSON.parse(kv.value.toString('utf8'))).toMatchObject({ mode: 'EXCLUSIVE', limit: 1, ownerId: 'o', requestId: 'r', holdCount: 1 });
      // one lease per entry, with the TTL rounded up to whole seconds
      const kvb = (await etcd().kv.range({ key: Buffer.from(`${PREFIX}/${encodeURIComponent(name)}/${b.key}`) })).kvs[0];
      expect(kv.lease).not.toBe('0');
      expect(kvb.lease).not.toBe(kv.lease);
      const ttl = await etcd().leaseClient.leaseTimeToLive({ ID: kv.lease, keys: true });
      expect(Number(ttl.grantedTTL)).toBe(2);
      expect(ttl.keys.map((k) => k.toString('utf8'))).toEqual([key]);
      // the order is etcd's store-wide revision: a write elsewhere in etcd advances it
      await etcd().put(`${PREFIX}-unrelated`).value('x');
      const c = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1500 });
      expect(c.order).toBeGreaterThan(b.order + 1);
      // notify and addHolds keep the order (the create revision)
      await store.notify(name, a.key);
      expect(await store.addHolds(name, a.key, 2)).toBe(3);
      expect(await store.get(name, a.key)).toMatchObject({ order: a.order, holdCount: 3, ownerId: 'o' });
    } finally {
      await cleanup();
    }
  });

  it('a name with "/" is one segment: lock "a" never sees the entries of lock "a/b"', async () => {
    const { store, cleanup } = await open();
    try {
      const base = unique('segments');
      const a = await store.enqueue(`${base}/a`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      const ab = await store.enqueue(`${base}/a/b`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      await store.enqueue(`${base}/a-c`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      await store.enqueue(`${base}x`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      expect((await store.entries(`${base}/a`)).map((e) => e.key)).toEqual([a.key]);
      expect((await store.entries(`${base}/a/b`)).map((e) => e.key)).toEqual([ab.key]);
      expect(await store.get(`${base}/a`, ab.key)).toBeUndefined();
      expect(await store.names(`${base}/`, 100)).toEqual([`${base}/a`, `${base}/a-c`, `${base}/a/b`]);
      expect(await store.names(`${base}/a`, 2)).toEqual([`${base}/a`, `${base}/a-c`]);
      expect(await store.names(base, 100)).toEqual([`${base}/a`, `${base}/a-c`, `${base}/a/b`, `${base}x`]);
    } finally {
      await cleanup();
    }
  });

  it('lease expiry: etcd deletes the entry and wakes its watcher; renew keeps an entry past its TTL', async () => {
    const { store, cleanup } = await open();
    try {
      const name = unique('expiry');
      const t0 = Date.now();
      const dying = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
      const kept = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
      const w = store.watch(name, [dying.key], new AbortController().signal);
      expect(await within(w, 500)).toBe('pending');
      let renewals = 0;
      while (Date.now() - t0 < 3000) {
        expect(await store.renew(name, kept.key, 1000)).toBe(true);
        renewals++;
        await sleep(200);
      }
      expect(await within(w, 100)).toBeUndefined(); // long since woken
      expect(renewals).toBeGreaterThan(5);
      expect((await store.entries(name)).map((e) => e.key)).toEqual([kept.key]);
      expect(await store.renew(name, dying.key, 1000)).toBe(false);
      // stop renewing: the kept entry goes too, within its TTL plus etcd's 500 ms expiry check
      const stopped = Date.now();
      const w2 = store.watch(name, [kept.key], new AbortController().signal);
      expect(await within(w2, 5000)).toBeUndefined();
      expect(Date.now() - stopped).toBeLessThan(3000);
      expect(await store.entries(name)).toEqual([]);
    } finally {
      await cleanup();
    }
  }, 30_000);

  it('the watch starts right after the read: a delete between the read and the watch is not missed; hold-count puts do not wake', async () => {
    const { store, cleanup } = await open();
    try {
      const name = unique('watch');
      const a = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      const w = store.watch(name, [a.key], new AbortController().signal);
      // no await between starting the watch and these writes
      const holds = store.addHolds(name, a.key, 1);
      expect(await holds).toBe(2);
      expect(await within(w, 300)).toBe('pending');
      await store.addHolds(name, a.key, -1);
      expect(await within(w, 300)).toBe('pending');
      const removed = store.remove(name, a.key);
      expect(await within(w, 5000)).toBeUndefined();
      expect(await removed).toBe(true);
      // racing remove: started in the same tick as the watch
      const b = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      const w2 = store.watch(name, [b.key], new AbortController().signal);
      void store.remove(name, b.key);
      expect(await within(w2, 5000)).toBeUndefined();
    } finally {
      await cleanup();
    }
  });

  it('remove deletes the key and revokes its lease; renew with another TTL moves the entry to a new lease', async () => {
    const { store, cleanup } = await open();
    try {
      const name = unique('revoke');
      const a = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
      const key = Buffer.from(`${PREFIX}/${encodeURIComponent(name)}/${a.key}`);
      const lease1 = (await etcd().kv.range({ key })).kvs[0].lease;
      expect(await store.renew(name, a.key, 30_000)).toBe(true);
      const kv2 = (await etcd().kv.range({ key })).kvs[0];
      expect(kv2.lease).not.toBe(lease1);
      expect(Number(kv2.create_revision)).toBe(a.order);
      expect(Number((await etcd().leaseClient.leaseTimeToLive({ ID: kv2.lease })).grantedTTL)).toBe(30);
      expect(Number((await etcd().leaseClient.leaseTimeToLive({ ID: lease1 })).TTL)).toBe(-1); // old lease revoked
      expect(await store.remove(name, a.key)).toBe(true);
      expect((await etcd().kv.range({ key })).kvs).toEqual([]);
      expect(Number((await etcd().leaseClient.leaseTimeToLive({ ID: kv2.lease })).TTL)).toBe(-1);
      expect(await store.remove(name, a.key)).toBe(false);
      expect(await store.renew(name, a.key, 30_000)).toBe(false);
      expect(await store.addHolds(name, a.key, 1)).toBeUndefined();
      await store.notify(name, a.key); // a no-op on a missing entry
      expect(await store.get(name, a.key)).toBeUndefined();
    } finally {
      await cleanup();
    }
  });

  it('an unreachable etcd is LockError UNAVAILABLE naming the endpoint, within the call deadline', async () => {
    // a port nothing listens on: start one etcd-less listener-free port by asking the OS, then closing it
    const { createServer } = await import('node:net');
    const port = await new Promise<number>((res) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    const store = new EtcdQueueStore({ endpoints: [`127.0.0.1:${port}`], callTimeoutMs: 2000 });
    try {
      const t0 = Date.now();
      await expect(store.start()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining(`127.0.0.1:${port}`) });
      await expect(store.enqueue('x', { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      await expect(store.watch('x', ['k'], new AbortController().signal)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      await store.close();
    }
  }, 30_000);

  it('an etcd that stops answering (SIGSTOP) is UNAVAILABLE within the call deadline; after SIGCONT the store works again', async () => {
    if (server === undefined) throw new Error('etcd did not start (see beforeAll)');
    const store = new EtcdQueueStore({ endpoints: [server.endpoint], prefix: PREFIX, callTimeoutMs: 1000 });
    try {
      await store.start();
      const name = unique('pause');
      const a = await store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 30_000 });
      server.pause();
      try {
        const t0 = Date.now();
        await expect(store.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 30_000 })).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining(server.endpoint) });
        await expect(store.renew(name, a.key, 30_000)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
        expect(Date.now() - t0).toBeLessThan(5000); // two operations, each bounded by its 1 s deadline
      } finally {
        server.resume();
      }
      // The etcd3 client skips an endpoint for up to 5 s after 3 failures in a row: poll, bounded.
      const end = Date.now() + 20_000;
      let entries: Awaited<ReturnType<EtcdQueueStore['entries']>> | undefined;
      while (entries === undefined) {
        try {
          entries = await store.entries(name);
        } catch (err) {
          if (Date.now() > end) throw err;
          await sleep(200);
        }
      }
      expect(entries.map((e) => e.key)).toEqual([a.key]);
      expect(await store.renew(name, a.key, 30_000)).toBe(true);
      expect(await store.remove(name, a.key)).toBe(true);
    } finally {
      await store.close();
    }
  }, 40_000);
});

runQueueStoreConformance('etcd', () => open());
