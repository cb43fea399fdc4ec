/**
 * The lock service as users run it: real lock-service processes (apps/lock) over a real 3-member Synod
 * consensus cluster (the default backend), driven over real gRPC by libs/client's LockClient and a raw client.
 */
import * as grpc from '@grpc/grpc-js';
import { FencedResource, LockClient, LockLostError, StaleTokenError } from '@app/client';
import { ProcessCluster, rpcError } from '../../consensus/test/harness.js';
import { HolderProcess, LockServiceProcess, rawLockClient, sleep, waitFor } from './harness.js';

const cluster = new ProcessCluster([1, 2, 3]);
let a: LockServiceProcess;
let b: LockServiceProcess;
const clients: LockClient[] = [];
const holders: HolderProcess[] = [];

const newClient = (...eps: string[]): LockClient => {
  const c = new LockClient({ endpoints: eps });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  await cluster.start();
  const eps = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`).join(',');
  a = new LockServiceProcess(['--backend', 'consensus', '--consensus-endpoints', eps, '--session-timeout-ms', '2000']);
  b = new LockServiceProcess(['--backend', 'consensus', '--consensus-endpoints', eps, '--session-timeout-ms', '2000']);
  await Promise.all([a.start(), b.start()]);
}, 90_000);

afterEach(async () => {
  for (const h of holders.splice(0)) await h.stop();
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await cluster.stopAll();
});

describe('lock service over the consensus backend (real processes)', () => {
  it('grants, queues FIFO, describes holders and waiters, releases idempotently', async () => {
    const c = newClient(a.endpoint);
    const l1 = await c.acquire('svc/basic', { ttlMs: 5000 });
    expect(l1.token).toBeGreaterThan(0);
    expect(l1.backend).toBe('consensus');
    const positions: number[] = [];
    const p2 = c.acquire('svc/basic', { ttlMs: 5000, waitMs: 10_000, onQueued: (p) => positions.push(p) });
    await waitFor('waiter queued', async () => (await c.describe('svc/basic')).entries.length === 2);
    const d = await c.describe('svc/basic');
    expect(d.entries.map((e) => e.held)).toEqual([true, false]);
    expect(d.entries[0].token).toBe(l1.token);
    expect(await c.list('svc/')).toEqual([{ name: 'svc/basic', holders: 1, waiters: 1 }]);
    expect(await c.tryAcquire('svc/basic')).toBeUndefined();
    expect(await l1.release()).toBe(true);
    expect(await l1.release()).toBe(false);
    const l2 = await p2;
    expect(positions).toEqual([1]);
    expect(l2.token).toBeGreaterThan(l1.token);
    // a stale release (the old grant) through the raw API changes nothing
    const raw = rawLockClient(a.endpoint);
    const r = await new Promise<Record<string, unknown>>((res, rej) =>
      (raw.Release as (q: object, cb: (e: Error | null, r: Record<string, unknown>) => void) => void).call(raw, { name: 'svc/basic', leaseId: l1.leaseId, token: l1.token }, (e, x) => (e ? rej(e) : res(x))),
    );
    raw.close();
    expect(r.released).toBe(false);
    expect((await c.describe('svc/basic')).entries.map((e) => e.token)).toEqual([l2.token]);
    await l2.release();
    expect(await c.list('svc/')).toEqual([]);
  });

  it('keep-alives hold two locks (whose lease ids are alike) past their TTL; an unrenewed one is lost before the next holder is granted', async () => {
    const c = newClient(a.endpoint);
    const l1 = await c.acquire('svc/ka/one', { ttlMs: 1500 });
    const l2 = await c.acquire('svc/ka/two', { ttlMs: 1500 });
    expect(l1.leaseId).toBe(l2.leaseId); // the first entry of each lock: same node name
    await sleep(4000);
    expect(l1.lost).toBe(false);
    expect(l2.lost).toBe(false);
    expect((await c.describe('svc/ka/one')).entries.map((e) => e.token)).toEqual([l1.token]);
    expect((await c.describe('svc/ka/two')).entries.map((e) => e.token)).toEqual([l2.token]);
    await l1.release();
    await l2.release();
    // A raw Acquire that nobody keeps alive: `lost` reaches its stream before a waiter through B is granted.
    const raw = rawLockClient(a.endpoint);
    const events: { at: number; ev: Record<string, unknown> }[] = [];
    const stream = (raw.Acquire as (r: object) => grpc.ClientReadableStream<Record<string, unknown>>).call(raw, { name: 'svc/ka/unrenewed', ttlMs: 1500 });
    stream.on('data', (ev) => events.push({ at: Date.now(), ev }));
    stream.on('error', () => undefined);
    await waitFor('raw grant', () => events.some((e) => e.ev.granted));
    const other = await newClient(b.endpoint).acquire('svc/ka/unrenewed', { ttlMs: 5000, waitMs: 20_000 });
    const grantedAt = Date.now();
    const lost = events.find((e) => e.ev.lost);
    expect(lost?.ev.lost).toMatchObject({ reason: 'LEASE_EXPIRED' });
    expect(lost!.at).toBeLessThanOrEqual(grantedAt);
    await other.release();
    raw.close();
  }, 30_000);

  it('mutual exclusion across two service instances, checked through a FencedResource', async () => {
    const resource = new FencedResource();
    let value = 0;
    let inside = 0;
    let maxInside = 0;
    const worker = async (c: LockClient): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        await using lock = await c.acquire('svc/mutex', { ttlMs: 5000, waitMs: 30_000 });
        inside++;
        maxInside = Math.max(maxInside, inside);
        const v = resource.run('svc/mutex', lock.token, () => value);
        await sleep(3);
        resource.run('svc/mutex', lock.token, () => (value = v + 1));
        inside--;
      }
    };
    await Promise.all([worker(newClient(a.endpoint)), worker(newClient(b.endpoint)), worker(newClient(a.endpoint)), worker(newClient(b.endpoint))]);
    expect(value).toBe(20);
    expect(maxInside).toBe(1);
    expect(resource.rejected).toBe(0);
  }, 60_000);

  it('shared and counting modes admit exactly the allowed holders', async () => {
    const c = newClient(a.endpoint);
    const r1 = await c.acquire('svc/rw', { mode: 'SHARED' });
    const r2 = await c.acquire('svc/rw', { mode: 'SHARED' });
    expect(await c.tryAcquire('svc/rw')).toBeUndefined();
    await r1.release();
    await r2.release();
    const s = await Promise.all([1, 2, 3].map(() => c.acquire('svc/sem', { limit: 3 })));
    expect(await c.tryAcquire('svc/sem', { limit: 3 })).toBeUndefined();
    const waiting = c.acquire('svc/sem', { limit: 3, waitMs: 10_000 });
    await sleep(200);
    await s[0].release();
    const g = await waiting;
    expect((await c.describe('svc/sem')).entries.filter((e) => e.held)).toHaveLength(3);
    for (const h of [s[1], s[2], g]) await h.release();
  });

  it('re-entrancy by owner id, and read→write upgrade refused with FAILED_PRECONDITION', async () => {
    const c = newClient(a.endpoint);
    const l1 = await c.acquire('svc/reentrant', { ownerId: 'job-7' });
    const l2 = await c.acquire('svc/reentrant', { ownerId: 'job-7', waitMs: 0 });
    expect(l2.token).toBe(l1.token);
    expect(l2.holdCount).toBe(2);
    await l2.release();
    expect(await c.tryAcquire('svc/reentrant')).toBeUndefined();
    await l1.release();
    const r = await c.acquire('svc/upgrade', { mode: 'SHARED', ownerId: 'o' });
    await expect(c.acquire('svc/upgrade', { ownerId: 'o', waitMs: 0 })).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
    await r.release();
  });

  it('SIGKILL of the holder process: the lock comes free when its lease ends and the waiter is granted', async () => {
    const holder = await HolderProcess.start(a.endpoint, 'svc/killed-holder', 1500);
    holders.push(holder);
    const c = newClient(b.endpoint);
    const waiting = c.acquire('svc/killed-holder', { ttlMs: 5000, waitMs: 20_000 });
    await sleep(300);
    const t0 = Date.now();
    holder.signal('SIGKILL');
    const g = await waiting;
    const waited = Date.now() - t0;
    expect(g.token).toBeGreaterThan(holder.token);
    expect(waited).toBeGreaterThan(500); // not before the lease ran out
    await g.release();
  }, 60_000);

  it('SIGSTOP of the holder past its TTL: another client is granted and the paused holder\'s late write is rejected by its token', async () => {
    const holder = await HolderProcess.start(a.endpoint, 'svc/paused-holder', 1500);
    holders.push(holder);
    const resource = new FencedResource();
    let applied = 0;
    let rejected = 0;
    let seen = 0;
    const pump = (): void => {
      for (; seen < holder.lines.length; seen++) {
        const m = /^WRITE (\d+)$/.exec(holder.lines[seen]);
        if (!m) continue;
        try {
          resource.check('svc/paused-holder', Number(m[1]));
          applied++;
        } catch (err) {
          if (!(err instanceof StaleTokenError)) throw err;
          rejected++;
        }
      }
    };
    await waitFor('holder writing', () => (pump(), applied > 2));
    holder.signal('SIGSTOP');
    pump();
    const c = newClient(b.endpoint);
    const g = await c.acquire('svc/paused-holder', { ttlMs: 5000, waitMs: 20_000 });
    expect(g.token).toBeGreaterThan(holder.token);
    resource.check('svc/paused-holder', g.token); // the new holder writes
    holder.signal('SIGCONT');
    await waitFor('paused holder noticed its loss', () => holder.lines.some((l) => l.startsWith('LOST')), 10_000);
    pump();
    // whatever the paused holder wrote after it woke up and before it saw `lost` was refused
    expect(resource.highestToken('svc/paused-holder')).toBe(g.token);
    expect(applied).toBeGreaterThan(2);
    expect(holder.lines.filter((l) => l.startsWith('WRITE')).length).toBe(applied + rejected);
    await g.release();
  }, 60_000);

  it('herd effect: 50 waiters on one lock; each release wakes exactly one waiter', async () => {
    const c = newClient(a.endpoint);
    const first = await c.acquire('svc/herd', { ttlMs: 20_000 });
    const waiters: Promise<Awaited<ReturnType<LockClient['acquire']>>>[] = [];
    for (let i = 0; i < 50; i++) {
      // one at a time, so that the array is in queue (FIFO) order
      waiters.push(c.acquire('svc/herd', { ttlMs: 20_000, waitMs: 60_000 }));
      await waitFor(`waiter ${i} queued`, async () => (await c.describe('svc/herd')).entries.length === i + 2, 30_000, 10);
    }
    await sleep(200);
    const wake0 = await a.metric('synod_lock_wakeups_total');
    const rel0 = await a.metric('synod_lock_releases_total');
    let prev = first;
    const perRelease: number[] = [];
    for (let i = 0; i < 50; i++) {
      const before = await a.metric('synod_lock_wakeups_total');
      await prev.release();
      const next = await waiters[i];
      expect(next.token).toBeGreaterThan(prev.token);
      prev = next;
      await sleep(20);
      perRelease.push((await a.metric('synod_lock_wakeups_total')) - before);
    }
    await prev.release();
    expect(perRelease).toEqual(Array.from({ length: 50 }, () => 1));
    expect((await a.metric('synod_lock_wakeups_total')) - wake0).toBe(50);
    expect((await a.metric('synod_lock_releases_total')) - rel0).toBe(51);
    expect(await a.metric('synod_lock_wakeups_per_release')).toBeLessThanOrEqual(1);
  }, 180_000);

  it('bad input gets a clear status and changes nothing', async () => {
    const raw = rawLockClient(a.endpoint);
    const acquireError = (req: object): Promise<grpc.ServiceError> =>
      new Promise((res, rej) => {
        const s = (raw.Acquire as (r: object) => grpc.ClientReadableStream<unknown>).call(raw, req);
        s.on('data', () => rej(new Error('expected an error, got an event')));
        s.on('error', (e: grpc.ServiceError) => res(e));
        s.on('end', () => rej(new Error('expected an error, the stream ended')));
      });
    const unary = (method: string, req: object): Promise<unknown> =>
      new Promise((res, rej) => (raw[method] as (r: object, cb: (e: Error | null, x: unknown) => void) => void).call(raw, req, (e, x) => (e ? rej(e) : res(x))));
    const cases: [object, RegExp][] = [
      [{ name: '' }, /name is required/],
      [{ name: '/abs' }, /empty, "\." or "\.\." segment/],
      [{ name: 'a b' }, /character outside/],
      [{ name: 'x'.repeat(300) }, /limit is 256/],
      [{ name: 'ok', mode: 'SHARED', limit: 3 }, /only valid with mode EXCLUSIVE/],
      [{ name: 'ok', ttlMs: 10 }, /ttl_ms is 10 ms/],
      [{ name: 'ok', waitMs: 999_999_999 }, /wait_ms/],
    ];
    for (const [req, msg] of cases) {
      const e = await acquireError(req);
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details).toMatch(msg);
    }
    await expect(rpcError(unary('Release', { name: 'ok', leaseId: 'x' }), grpc.status.INVALID_ARGUMENT)).resolves.toMatchObject({ details: expect.stringMatching(/token is required/) });
    await expect(rpcError(unary('Release', { name: 'ok', token: 3 }), grpc.status.INVALID_ARGUMENT)).resolves.toMatchObject({ details: expect.stringMatching(/lease_id is required/) });
    await expect(rpcError(unary('Describe', { name: '../x' }), grpc.status.INVALID_ARGUMENT)).resolves.toBeDefined();
    await expect(rpcError(unary('List', { prefix: 'p', limit: 100_000 }), grpc.status.INVALID_ARGUMENT)).resolves.toBeDefined();
    const ka = (raw.KeepAlive as () => grpc.ClientDuplexStream<object, unknown>).call(raw);
    const kaErr = new Promise<grpc.ServiceError>((res) => ka.on('error', res));
    ka.write({ name: 'ok' });
    expect((await kaErr).code).toBe(grpc.status.INVALID_ARGUMENT);
    raw.close();
    expect(await newClient(a.endpoint).list('')).toEqual([]);
  });

  it('metrics: synod_lock_* on /metrics with the backend label only', async () => {
    const text = await (await fetch(a.metricsUrl)).text();
    for (const m of ['synod_lock_acquisitions_total', 'synod_lock_wait_duration_seconds_bucket', 'synod_lock_hold_duration_seconds_bucket', 'synod_lock_held', 'synod_lock_waiters', 'synod_lock_contended_total', 'synod_lock_lost_total', 'synod_lock_expired_total', 'synod_lock_wakeups_per_release', 'grpc_server_handled_total'])
      expect(text).toContain(m);
    expect(text).toMatch(/synod_lock_acquisitions_total\{backend="consensus",result="granted"\} [1-9]/);
    expect(text).not.toMatch(/synod_lock_[a-z_]+\{[^}]*name=/);
  });

  it('a lock service instance killed: its clients see lost, and the locks come free when their leases end', async () => {
    const c = newClient(b.endpoint);
    const lock = await c.acquire('svc/instance-dies', { ttlMs: 3000 });
    const lost = new Promise<LockLostError>((res) => lock.signal.addEventListener('abort', () => res(lock.signal.reason as LockLostError)));
    const other = newClient(a.endpoint);
    const waiting = other.acquire('svc/instance-dies', { ttlMs: 5000, waitMs: 30_000 });
    await sleep(300);
    await b.kill('SIGKILL');
    const reason = await lost;
    expect(reason).toBeInstanceOf(LockLostError);
    const g = await waiting; // after the dead instance's consensus session (2 s) expired
    expect(g.token).toBeGreaterThan(lock.token);
    await g.release();
    await b.start();
  }, 60_000);
});
