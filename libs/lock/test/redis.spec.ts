/**
 * The Redis QueueStore against a real redis-server process (started here, killed by pid in afterAll):
 * Redis-specific behaviour (INCR orders, lazy pruning with notification, expiry-timed watch, compare-and-delete
 * and compare-and-extend, one shared subscriber connection, UNAVAILABLE on a dead or paused server), then the
 * shared QueueStore conformance suite.
 */
import { Redis } from 'ioredis';
import { LockError } from '@app/lock';
import { RedisQueueStore } from '../src/backends/redis.js';
import { RedisServers } from '../../testing/src/servers/redis.js';
import { runQueueStoreConformance } from './conformance.js';
import { sleep, within } from './util.js';


let servers: RedisServers | undefined;
let url = '';
let raw: Redis | undefined;
const PREFIX = `synod:test:${process.pid}:`;

beforeAll(async () => {
  servers = await RedisServers.start(1);
  url = servers.urls[0];
  raw = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: 5000 });
  await raw.connect();
}, 30_000);

afterAll(async () => {
  raw?.disconnect();
  await servers?.stop();
});

const opened: RedisQueueStore[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

async function store(opts: Partial<ConstructorParameters<typeof RedisQueueStore>[0]> = {}): Promise<RedisQueueStore> {
  const s = new RedisQueueStore({ url, prefix: PREFIX, ...opts });
  opened.push(s);
  await s.start();
  return s;
}

let n = 0;
const uname = (what: string): string => `redis/${what}/${Date.now().toString(36)}-${++n}`;


/** The `sub=` counts of the server's clients that are subscribed to at least one channel. */
async function subscribedClients(): Promise<number[]> {
  const list = (await raw!.client('LIST')) as string;
  return list
    .split('\n')
    .map((line) => /\bsub=(\d+)/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .filter((c) => c > 0);
}

describe('redis QueueStore', () => {
  it('orders come from INCR on the per-lock sequence key; the queue is a ZSET scored by order; entries carry a lease', async () => {
    const s = await store();
    const name = uname('incr');
    const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000, ownerId: 'o1' });
    const b = await s.enqueue(name, { mode: 'SHARED', limit: 1, ttlMs: 5_000 });
    expect(a.order).toBe(1);
    expect(b.order).toBe(2);
    expect(a.key).toMatch(/^1\.[0-9a-f]{16}$/);
    expect(await raw!.get(`${PREFIX}{${name}}:seq`)).toBe('2');
    expect(await raw!.zrange(`${PREFIX}{${name}}:q`, 0, -1, 'WITHSCORES')).toEqual([a.key, '1', b.key, '2']);
    const pttl = await raw!.pttl(`${PREFIX}{${name}}:e:2`);
    expect(pttl).toBeGreaterThan(4000);
    expect(pttl).toBeLessThanOrEqual(5000);
    expect(JSON.parse((await raw!.get(`${PREFIX}{${name}}:e:1`))!)).toMatchObject({ m: 'EXCLUSIVE', l: 1, o: 'o1', h: 1 });
    // the sequence survives an empty queue (fencing tokens keep growing)
    await s.remove(name, a.key);
    await s.remove(name, b.key);
    expect((await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 })).order).toBe(3);
  });

  it('an expired entry is pruned from the ZSET lazily, and pruning publishes to its watchers', async () => {
    const s1 = await store();
    // s2 re-checks only a minute after the known expiry: only the prune notification can wake it in time.
    const s2 = await store({ expiryMarginMs: 60_000 });
    const name = uname('prune');
    const dying = await s1.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
    const kept = await s1.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 30_000 });
    const w = s2.watch(name, [dying.key], new AbortController().signal);
    await sleep(1300);
    expect(await raw!.exists(`${PREFIX}{${name}}:e:${dying.order}`)).toBe(0);
    expect(await raw!.zcard(`${PREFIX}{${name}}:q`)).toBe(2); // not pruned yet: nobody listed the queue
    expect(await within(w, 100)).toBe('pending');
    expect((await s1.entries(name)).map((e) => e.key)).toEqual([kept.key]);
    expect(await raw!.zrange(`${PREFIX}{${name}}:q`, 0, -1)).toEqual([kept.key]);
    expect(await within(w, 2000)).toBeUndefined();
  }, 20_000);

  it('a watcher of an entry that simply expires wakes within TTL + margin (timer at the known expiry, no polling)', async () => {
    const s = await store();
    const name = uname('expiry');
    const e = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
    const t0 = Date.now();
    await s.watch(name, [e.key], new AbortController().signal);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(1000 + 400);
    // a renewed entry moves the timer: the watcher wakes at the new expiry, not the old one
    const r = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
    const t1 = Date.now();
    const w = s.watch(name, [r.key], new AbortController().signal);
    await sleep(600);
    expect(await s.renew(name, r.key, 1500)).toBe(true);
    await w;
    const took2 = Date.now() - t1;
    expect(took2).toBeGreaterThanOrEqual(2000);
    expect(took2).toBeLessThan(2100 + 400);
  }, 20_000);

  it('renew is compare-and-extend: it extends the PTTL of the right entry only', async () => {
    const s = await store();
    const name = uname('renew');
    const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 2000 });
    const key = `${PREFIX}{${name}}:e:${a.order}`;
    expect(await s.renew(name, a.key, 20_000)).toBe(true);
    expect(await raw!.pttl(key)).toBeGreaterThan(19_000);
    const forged = `${a.order}.${'0'.repeat(16)}`;
    expect(await s.renew(name, forged, 60_000)).toBe(false);
    expect(await raw!.pttl(key)).toBeLessThanOrEqual(20_000);
    expect(await s.renew(name, 'not-a-lease', 60_000)).toBe(false);
    await s.remove(name, a.key);
    expect(await s.renew(name, a.key, 20_000)).toBe(false);
    expect(await raw!.exists(key)).toBe(0); // renew never re-creates
  });

  it('remove is compare-and-delete: a lease id whose order was re-issued to another entry (e.g. after a failover) deletes nothing', async () => {
    const s = await store();
    const name = uname('cad');
    const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
    const key = `${PREFIX}{${name}}:e:${a.order}`;
    // same order, different nonce: a stale lease id
    expect(await s.remove(name, `${a.order}.${'f'.repeat(16)}`)).toBe(false);
    expect(await raw!.exists(key)).toBe(1);
    expect(await s.addHolds(name, `${a.order}.${'f'.repeat(16)}`, 1)).toBeUndefined();
    // the key now holds another entry's value (as if the sequence had been reset and the order re-issued)
    const other = JSON.stringify({ m: 'EXCLUSIVE', l: 1, h: 1, n: 'abcdefabcdefabcd' });
    await raw!.set(key, other, 'PX', 10_000);
    expect(await s.remove(name, a.key)).toBe(false);
    expect(await raw!.get(key)).toBe(other);
    expect(await s.get(name, a.key)).toBeUndefined();
  });

  it('all watches share one subscriber connection with ref-counted channels, released on wake and abort', async () => {
    const s = await store();
    const name = uname('sub');
    const es = await Promise.all(Array.from({ length: 5 }, () => s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 30_000 })));
    const acs = es.map(() => new AbortController());
    // 5 watches on distinct entries + 3 more on the first one (same channel)
    const ws = es.map((e, i) => s.watch(name, [e.key], acs[i].signal));
    const extra = [0, 1, 2].map(() => s.watch(name, [es[0].key], new AbortController().signal));
    await sleep(300);
    expect(await subscribedClients()).toEqual([5]);
    expect(s.subscribedChannels).toBe(5);
    await s.remove(name, es[0].key); // wakes 4 watches, one channel
    await Promise.all([ws[0], ...extra]);
    await sleep(200);
    expect(await subscribedClients()).toEqual([4]);
    for (const ac of acs) ac.abort();
    await Promise.all(ws);
    await sleep(200);
    expect(await subscribedClients()).toEqual([]);
    expect(s.subscribedChannels).toBe(0);
  });

  it('names() lists by prefix from the index and drops names whose queue emptied', async () => {
    const s = await store();
    const base = uname('names');
    await s.enqueue(`${base}/b`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
    await s.enqueue(`${base}/a`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
    await s.enqueue(`${base}/c`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
    await s.enqueue(`${base}x`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
    expect(await s.names(`${base}/`, 10)).toEqual([`${base}/a`, `${base}/b`, `${base}/c`]);
    await sleep(1200);
    expect(await s.names(`${base}/`, 10)).toEqual([`${base}/a`, `${base}/b`]);
    expect(await raw!.zscore(`${PREFIX}names`, `${base}/c`)).toBeNull();
  }, 10_000);

  it('a dead server gives UNAVAILABLE at start; a paused server gives UNAVAILABLE within the command timeout, then recovers', async () => {
    const dead = new RedisQueueStore({ host: '127.0.0.1', port: 1, prefix: PREFIX, connectTimeoutMs: 500 });
    opened.push(dead);
    const err = await dead.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LockError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
    expect((err as Error).message).toMatch(/redis at 127\.0\.0\.1:1 is unavailable.*redis-server is running/);

    const s = await store({ commandTimeoutMs: 500 });
    const name = uname('paused');
    servers!.pause(0);
    try {
      const t0 = Date.now();
      await expect(s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      servers!.resume(0);
    }
    // the timed-out enqueue may still run once the server resumes; the store works again either way
    const e = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
    expect((await s.entries(name)).map((x) => x.key)).toContain(e.key);
  }, 20_000);
});

runQueueStoreConformance('redis', async () => {
  const s = new RedisQueueStore({ url, prefix: PREFIX });
  return { store: s, cleanup: () => s.close() };
});
