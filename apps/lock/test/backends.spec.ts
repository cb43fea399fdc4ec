/**
 * The lock service with each non-default backend, as users run it: a real lock-service process per backend
 * over a real etcd, Redis (one server; three independent ones for redlock) and PostgreSQL, all started here on
 * loopback, driven over real gRPC by libs/client. (Each store's full algorithm is tested by the conformance
 * suite in libs/lock/test; this checks the service wiring, the configuration and the lease path end to end.)
 */
import { FencedResource, LockClient } from '@app/client';
import type { LockHandle } from '@app/client';
import { EtcdServer } from '../../../libs/testing/src/servers/etcd.js';
import { PostgresServer } from '../../../libs/testing/src/servers/postgres.js';
import { RedisServers } from '../../../libs/testing/src/servers/redis.js';
import { HolderProcess, LockServiceProcess, sleep } from './harness.js';

let etcd: EtcdServer;
let redis: RedisServers;
let pg: PostgresServer;
const services = new Map<string, LockServiceProcess>();
const clients: LockClient[] = [];
const holders: HolderProcess[] = [];

beforeAll(async () => {
  [etcd, redis, pg] = await Promise.all([EtcdServer.start(), RedisServers.start(3), PostgresServer.start()]);
  const args: Record<string, string[]> = {
    etcd: ['--backend', 'etcd', '--etcd-endpoints', etcd.endpoint],
    redis: ['--backend', 'redis', '--redis-url', redis.urls[0]],
    redlock: ['--backend', 'redlock', '--redlock-urls', redis.urls.join(',')],
    postgres: ['--backend', 'postgres', '--postgres-url', pg.connectionString],
  };
  for (const [k, a] of Object.entries(args)) services.set(k, new LockServiceProcess(a));
  await Promise.all([...services.values()].map((s) => s.start()));
}, 120_000);

afterEach(async () => {
  for (const h of holders.splice(0)) await h.stop();
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  await Promise.allSettled([...services.values()].map((s) => s.stop()));
  await Promise.allSettled([etcd?.stop(), redis?.stop(), pg?.stop()]);
});

const client = (backend: string): LockClient => {
  const c = new LockClient({ endpoints: [services.get(backend)!.endpoint] });
  clients.push(c);
  return c;
};

describe.each(['etcd', 'redis', 'redlock', 'postgres'])('lock service with the %s backend (real servers)', (backend) => {
  it('grants with a fencing token, refuses a second holder, releases idempotently, grants again with a larger token', async () => {
    const c = client(backend);
    const name = `be/${backend}/basic`;
    const l1 = await c.acquire(name, { ttlMs: 5000 });
    expect(l1.backend).toBe(backend);
    expect(await c.tryAcquire(name)).toBeUndefined();
    expect(await l1.release()).toBe(true);
    expect(await l1.release()).toBe(false);
    const l2 = await c.acquire(name, { ttlMs: 5000 });
    expect(l2.token).toBeGreaterThan(l1.token);
    await l2.release();
  });

  it('mutual exclusion under contention (3 clients x 5), checked through a FencedResource', async () => {
    const resource = new FencedResource();
    const name = `be/${backend}/mutex`;
    let value = 0;
    let inside = 0;
    let maxInside = 0;
    const worker = async (c: LockClient): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        const lock = await c.acquire(name, { ttlMs: 5000, waitMs: 30_000 });
        inside++;
        maxInside = Math.max(maxInside, inside);
        const v = resource.run(name, lock.token, () => value);
        await sleep(2);
        resource.run(name, lock.token, () => (value = v + 1));
        inside--;
        await lock.release();
      }
    };
    await Promise.all([worker(client(backend)), worker(client(backend)), worker(client(backend))]);
    expect(value).toBe(15);
    expect(maxInside).toBe(1);
    expect(resource.rejected).toBe(0);
  }, 60_000);

  it('shared and counting modes: supported, or refused with FAILED_PRECONDITION by redlock', async () => {
    const c = client(backend);
    const name = `be/${backend}/rw`;
    if (backend === 'redlock') {
      await expect(c.acquire(name, { mode: 'SHARED' })).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
      await expect(c.acquire(name, { limit: 2 })).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
      return;
    }
    const held: LockHandle[] = [await c.acquire(name, { mode: 'SHARED' }), await c.acquire(name, { mode: 'SHARED' })];
    expect(await c.tryAcquire(name)).toBeUndefined();
    for (const h of held.splice(0)) await h.release();
    for (let i = 0; i < 2; i++) held.push(await c.acquire(`${name}-sem`, { limit: 2 }));
    expect(await c.tryAcquire(`${name}-sem`, { limit: 2 })).toBeUndefined();
    for (const h of held) await h.release();
  });

  it('SIGKILL of the holder process: the next waiter is granted once the lease ends', async () => {
    const svc = services.get(backend)!;
    const name = `be/${backend}/killed`;
    const holder = await HolderProcess.start(svc.endpoint, name, 2000);
    holders.push(holder);
    const c = client(backend);
    const waiting = c.acquire(name, { ttlMs: 5000, waitMs: 30_000 });
    await sleep(200);
    holder.signal('SIGKILL');
    const g = await waiting;
    expect(g.token).toBeGreaterThan(holder.token);
    await g.release();
  }, 60_000);
});
