/**
 * The RedLock backend against 3 real, independent redis-server processes (started here, killed by pid in
 * afterAll): mutual exclusion under contention, majority voting with stopped instances (SIGSTOP/SIGCONT),
 * refusals (SHARED, limit > 1, N < 3, re-entrancy), release and renew on all instances, loss detection.
 */
import { Redis } from 'ioredis';
import { LockError, validateAcquire } from '@app/lock';
import type { AcquireResult, AcquireSpec, Grant } from '@app/lock';
import { RedlockBackend } from '../src/backends/redlock.js';
import type { RedlockBackendOptions } from '../src/backends/redlock.js';
import { RedisServers } from '../../testing/src/servers/redis.js';
import { sleep, waitUntil } from './util.js';


let servers: RedisServers | undefined;
let raws: Redis[] = [];
const PREFIX = `synod:redlock-test:${process.pid}:`;

beforeAll(async () => {
  servers = await RedisServers.start(3);
  raws = servers.urls.map((u) => new Redis(u, { lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: 5000 }));
  await Promise.all(raws.map((r) => r.connect()));
}, 30_000);

afterAll(async () => {
  for (const r of raws) r.disconnect();
  if (servers) for (let i = 0; i < servers.size; i++) servers.resume(i);
  await servers?.stop();
});

const opened: RedlockBackend[] = [];
afterEach(async () => {
  if (servers) for (let i = 0; i < servers.size; i++) servers.resume(i);
  for (const b of opened.splice(0)) await b.close();
});

async function backend(over: Partial<RedlockBackendOptions> = {}): Promise<RedlockBackend> {
  const b = new RedlockBackend({ instances: servers!.urls.map((url) => ({ url })), prefix: PREFIX, ...over });
  opened.push(b);
  await b.start();
  return b;
}

let n = 0;
const uname = (what: string): string => `redlock/${what}/${Date.now().toString(36)}-${++n}`;
const spec = (name: string, over: Partial<AcquireSpec> = {}): AcquireSpec => ({ name, mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000, waitMs: 0, ...over });
const ctx = (signal = new AbortController().signal) => ({ signal });

function granted(r: AcquireResult): Grant {
  if (!r.granted) throw new Error(`expected a grant, got ${JSON.stringify(r)}`);
  return r.granted;
}

const lockKey = (name: string): string => `${PREFIX}{${name}}`;

/** Which instances hold a value for the lock (raw reads). */
async function holders(name: string): Promise<boolean[]> {
  return Promise.all(raws.map(async (r) => (await r.get(lockKey(name))) !== null));
}


describe('redlock backend', () => {
  it('refuses fewer than 3 instances at construction', () => {
    expect(() => new RedlockBackend({ instances: [{ url: 'redis://127.0.0.1:1' }, { url: 'redis://127.0.0.1:2' }] })).toThrow(/at least 3 independent Redis servers/);
    expect(() => new RedlockBackend({ instances: [] })).toThrow(/configured with 0 Redis instance/);
  });

  it('refuses SHARED and limit > 1 with FAILED_PRECONDITION (and validation does too)', async () => {
    const b = await backend();
    expect(b.supportsSharedAndCounting).toBe(false);
    expect(b.kind).toBe('redlock');
    const name = uname('refuse');
    await expect(b.acquire(spec(name, { mode: 'SHARED' }), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/only EXCLUSIVE locks with limit 1/) });
    await expect(b.acquire(spec(name, { limit: 3 }), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(() => validateAcquire({ name, mode: 'SHARED' }, b.supportsSharedAndCounting, 'redlock')).toThrow(LockError);
    expect(await holders(name)).toEqual([false, false, false]);
  });

  it('mutual exclusion: 8 concurrent clients (each its own connections) x 5 increments with an await between read and write', async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => backend({ retryDelayMs: 30 })));
    const name = uname('mutex');
    let value = 0;
    let inside = 0;
    let maxInside = 0;
    let lastToken = 0;
    const worker = async (b: RedlockBackend): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        const g = granted(await b.acquire(spec(name, { waitMs: 30_000 }), ctx()));
        inside++;
        maxInside = Math.max(maxInside, inside);
        expect(g.token).toBeGreaterThan(lastToken);
        lastToken = g.token;
        const read = value;
        await sleep(3);
        value = read + 1;
        inside--;
        expect(await b.release(name, g.leaseId, g.token)).toBe(0);
      }
    };
    await Promise.all(clients.map(worker));
    expect(value).toBe(40);
    expect(maxInside).toBe(1);
    expect(await holders(name)).toEqual([false, false, false]);
  }, 60_000);

  it('grants on all instances, with a token from INCR written back to every counter; release deletes on all', async () => {
    const b = await backend();
    const name = uname('all');
    const g1 = granted(await b.acquire(spec(name), ctx()));
    expect(g1).toMatchObject({ name, mode: 'EXCLUSIVE', holdCount: 1 });
    expect(g1.leaseId).toMatch(/^\d+\.[0-9a-f]{32}$/);
    expect(await holders(name)).toEqual([true, true, true]);
    for (const r of raws) {
      expect(JSON.parse((await r.get(lockKey(name)))!)).toMatchObject({ t: String(g1.token) });
      expect(Number(await r.get(`${PREFIX}{${name}}:seq`))).toBe(g1.token);
    }
    expect((await b.acquire(spec(name), ctx())).timedOut).toBe(true);
    expect((await b.describe(name)).entries).toEqual([{ leaseId: g1.leaseId, mode: 'EXCLUSIVE', limit: 1, held: true, token: g1.token, ownerId: undefined, holdCount: 1 }]);
    expect(await b.list(name.slice(0, -3), 10)).toEqual([{ name, holders: 1, waiters: 0 }]);
    expect(await b.release(name, g1.leaseId, g1.token + 1)).toBe(-1); // fenced
    expect(await b.release(name, g1.leaseId, g1.token)).toBe(0);
    expect(await holders(name)).toEqual([false, false, false]);
    expect(await b.release(name, g1.leaseId, g1.token)).toBe(-1); // idempotent
    expect((await b.describe(name)).entries).toEqual([]);
    const g2 = granted(await b.acquire(spec(name), ctx()));
    expect(g2.token).toBeGreaterThan(g1.token);
    await b.release(name, g2.leaseId, g2.token);
  });

  it('tokens keep growing when the majority changes (counters of the granting majority are raised to the token)', async () => {
    const b = await backend();
    const name = uniqueSeq();
    // instance 0 has a much higher counter than the others
    await raws[0].set(`${PREFIX}{${name}}:seq`, '100');
    const tokens: number[] = [];
    for (const paused of [1, 0, 2, 0]) {
      servers!.pause(paused);
      try {
        const g = granted(await b.acquire(spec(name), ctx()));
        tokens.push(g.token);
        expect(await b.release(name, g.leaseId, g.token)).toBe(0);
      } finally {
        servers!.resume(paused);
      }
      await sleep(50);
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
  }, 20_000);

  it('one instance stopped (SIGSTOP): the majority still grants, renews and releases; after SIGCONT nothing is left behind', async () => {
    const b = await backend();
    const name = uname('one-down');
    servers!.pause(2);
    let g: Grant;
    try {
      const t0 = Date.now();
      g = granted(await b.acquire(spec(name, { ttlMs: 5000 }), ctx()));
      expect(Date.now() - t0).toBeLessThan(2000);
      expect((await Promise.all(raws.slice(0, 2).map(async (r) => (await r.get(lockKey(name))) !== null)))).toEqual([true, true]);
      expect(await b.renew(name, g.leaseId, 5000)).toBe(true);
      // a second client cannot take it: the majority is ours
      const other = await backend();
      expect((await other.acquire(spec(name), ctx())).timedOut).toBe(true);
      expect(await b.release(name, g.leaseId, g.token)).toBe(0);
    } finally {
      servers!.resume(2);
    }
    // the stopped instance ran the queued SET and then the queued release, in order
    await waitUntil('no instance holds the lock', async () => (await holders(name)).every((h) => !h), 5000);
  }, 20_000);

  it('two of three stopped: not granted (UNAVAILABLE, bounded), and the one live instance is released', async () => {
    const b = await backend();
    const name = uname('two-down');
    servers!.pause(1);
    servers!.pause(2);
    try {
      const t0 = Date.now();
      await expect(b.acquire(spec(name), ctx())).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/needs 2 of 3 Redis instances/) });
      await expect(b.acquire(spec(name, { waitMs: 500 }), ctx())).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(await raws[0].get(lockKey(name))).toBeNull(); // released on the instance that said yes
    } finally {
      servers!.resume(1);
      servers!.resume(2);
    }
    await waitUntil('no instance holds the lock', async () => (await holders(name)).every((h) => !h), 5000);
    const g = granted(await b.acquire(spec(name), ctx()));
    await b.release(name, g.leaseId, g.token);
  }, 20_000);

  it('a waiter retries (no queue) and gets the lock after the holder releases; a wait that runs out is timedOut', async () => {
    const a = await backend();
    const b = await backend({ retryDelayMs: 50 });
    const name = uname('wait');
    const g = granted(await a.acquire(spec(name), ctx()));
    const t0 = Date.now();
    expect((await b.acquire(spec(name, { waitMs: 300 }), ctx())).timedOut).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t0).toBeLessThan(1500);
    const waiting = b.acquire(spec(name, { waitMs: 10_000 }), ctx());
    await sleep(200);
    await a.release(name, g.leaseId, g.token);
    const g2 = granted(await waiting);
    expect(g2.token).toBeGreaterThan(g.token);
    // abort ends the wait
    const ac = new AbortController();
    const aborted = a.acquire(spec(name, { waitMs: 10_000 }), ctx(ac.signal));
    await sleep(100);
    ac.abort();
    expect((await aborted).timedOut).toBe(true);
    await b.release(name, g2.leaseId, g2.token);
  }, 20_000);

  it('a retried acquire with the same request id gets the earlier grant; an owner acquiring again is refused (no re-entrancy)', async () => {
    const b = await backend();
    const name = uname('retry');
    const g = granted(await b.acquire(spec(name, { requestId: 'req-1', ownerId: 'w1' }), ctx()));
    const again = granted(await b.acquire(spec(name, { requestId: 'req-1', ownerId: 'w1' }), ctx()));
    expect(again).toMatchObject({ leaseId: g.leaseId, token: g.token });
    await expect(b.acquire(spec(name, { ownerId: 'w1' }), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/no re-entrant locks/) });
    expect((await b.acquire(spec(name, { ownerId: 'w2' }), ctx())).timedOut).toBe(true);
    await b.release(name, g.leaseId, g.token);
  });

  it('renew extends on all instances; watchLoss reports LEASE_EXPIRED when the majority no longer holds our value', async () => {
    const b = await backend();
    const name = uname('loss');
    const g = granted(await b.acquire(spec(name, { ttlMs: 1500 }), ctx()));
    const ac = new AbortController();
    const loss = b.watchLoss(g, ac.signal);
    // renewed: no loss
    for (let i = 0; i < 6; i++) {
      expect(await b.renew(name, g.leaseId, 1500)).toBe(true);
      await sleep(300);
    }
    for (const r of raws) expect(await r.pttl(lockKey(name))).toBeGreaterThan(1000);
    // the key vanishes from two of three instances (e.g. restarts without persistence)
    await raws[0].del(lockKey(name));
    await raws[1].del(lockKey(name));
    const t0 = Date.now();
    expect(await loss).toBe('LEASE_EXPIRED');
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(await b.renew(name, g.leaseId, 1500)).toBe(false);

    // unrenewed: the lease simply runs out
    const g2 = granted(await b.acquire(spec(name, { ttlMs: 1000 }), ctx()));
    const t1 = Date.now();
    expect(await b.watchLoss(g2, new AbortController().signal)).toBe('LEASE_EXPIRED');
    expect(Date.now() - t1).toBeLessThan(1000 + 1000);
    expect(await b.release(name, g2.leaseId, g2.token)).toBe(-1);

    // abort ends a watch without a reason
    const g3 = granted(await b.acquire(spec(name), ctx()));
    const ac3 = new AbortController();
    const w3 = b.watchLoss(g3, ac3.signal);
    await sleep(100);
    ac3.abort();
    expect(await w3).toBeUndefined();
    await b.release(name, g3.leaseId, g3.token);
  }, 20_000);

  it('start fails with UNAVAILABLE when a majority cannot be reached', async () => {
    const b = new RedlockBackend({ instances: [{ url: servers!.urls[0] }, { host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port: 2 }], prefix: PREFIX });
    opened.push(b);
    await expect(b.start()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/start needs 2 of 3/) });
  });
});

function uniqueSeq(): string {
  return uname('seq');
}
