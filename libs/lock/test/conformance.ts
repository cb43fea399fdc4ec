/**
 * The shared conformance suite every QueueStore runs (consensus, etcd, Redis, PostgreSQL), against its real
 * server: first the store primitives of the QueueStore contract (libs/lock/src/backend.ts), then the whole lock
 * algorithm (QueueLockBackend) over that store: mutual exclusion checked through a FencedResource, shared and
 * counting modes, FIFO, re-entrancy, idempotent fenced release, try-once, retried requests, wait timeouts,
 * lease expiry of holders and waiters, and the herd effect (one wake-up per release).
 *
 * Usage, from a backend's spec file: `runQueueStoreConformance('etcd', async () => ({ store, cleanup }))`.
 * `open` is called once per test, so each test gets a fresh store object (the server may be shared); lock names
 * are unique per test.
 */
import { FencedResource, QueueLockBackend } from '@app/lock';
import type { AcquireResult, AcquireSpec, Grant, QueueStore } from '@app/lock';
import { sleep, waitUntil, within } from './util.js';

export interface OpenedStore {
  store: QueueStore;
  cleanup: () => Promise<void>;
}


let counter = 0;
const uniqueName = (what: string): string => `conf/${what}/${Date.now().toString(36)}-${process.pid}-${++counter}`;

function spec(name: string, over: Partial<AcquireSpec> = {}): AcquireSpec {
  return { name, mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000, waitMs: 20_000, ...over };
}

function granted(r: AcquireResult): Grant {
  if (!r.granted) throw new Error(`expected a grant, got ${JSON.stringify(r)}`);
  return r.granted;
}



export function runQueueStoreConformance(label: string, open: () => Promise<OpenedStore>): void {
  describe(`QueueStore conformance: ${label}`, () => {
    let opened: OpenedStore[] = [];
    const fresh = async (): Promise<QueueStore> => {
      const o = await open();
      opened.push(o);
      await o.store.start();
      return o.store;
    };
    afterEach(async () => {
      const list = opened;
      opened = [];
      for (const o of list) await o.cleanup();
    });

    describe('store primitives', () => {
      it('enqueue assigns increasing orders; entries() lists them in order; get() finds one', async () => {
        const s = await fresh();
        const name = uniqueName('order');
        const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000, ownerId: 'o1', requestId: 'r1' });
        const b = await s.enqueue(name, { mode: 'SHARED', limit: 1, ttlMs: 10_000 });
        const c = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        expect(a.order).toBeLessThan(b.order);
        expect(b.order).toBeLessThan(c.order);
        const es = await s.entries(name);
        expect(es.map((e) => e.key)).toEqual([a.key, b.key, c.key]);
        expect(es[0]).toMatchObject({ mode: 'EXCLUSIVE', limit: 1, ownerId: 'o1', requestId: 'r1', holdCount: 1, order: a.order });
        expect(es[1]).toMatchObject({ mode: 'SHARED', holdCount: 1 });
        expect((await s.get(name, b.key))?.order).toBe(b.order);
        expect(await s.get(name, 'no-such-key')).toBeUndefined();
        expect(await s.entries(uniqueName('empty'))).toEqual([]);
      });

      it('orders keep increasing for a lock name after its queue empties', async () => {
        const s = await fresh();
        const name = uniqueName('monotonic');
        const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        expect(await s.remove(name, a.key)).toBe(true);
        const b = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        expect(b.order).toBeGreaterThan(a.order);
      });

      it('remove is idempotent and wakes a watcher; watch resolves at once for a missing key', async () => {
        const s = await fresh();
        const name = uniqueName('remove');
        const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        const ac = new AbortController();
        const w = s.watch(name, [a.key], ac.signal);
        expect(await within(w, 300)).toBe('pending');
        expect(await s.remove(name, a.key)).toBe(true);
        expect(await within(w, 5000)).toBeUndefined();
        expect(await s.remove(name, a.key)).toBe(false);
        expect(await within(s.watch(name, [a.key], new AbortController().signal), 5000)).toBeUndefined();
        expect(await s.entries(name)).toEqual([]);
      });

      it('watch on several keys wakes when any one goes; notify wakes without removing; abort ends a watch', async () => {
        const s = await fresh();
        const name = uniqueName('watch');
        const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 2, ttlMs: 10_000 });
        const b = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 2, ttlMs: 10_000 });
        const w1 = s.watch(name, [a.key, b.key], new AbortController().signal);
        expect(await within(w1, 300)).toBe('pending');
        await s.remove(name, b.key);
        expect(await within(w1, 5000)).toBeUndefined();

        const w2 = s.watch(name, [a.key], new AbortController().signal);
        expect(await within(w2, 300)).toBe('pending');
        await s.notify(name, a.key);
        expect(await within(w2, 5000)).toBeUndefined();
        expect((await s.get(name, a.key))?.order).toBe(a.order);

        const ac = new AbortController();
        const w3 = s.watch(name, [a.key], ac.signal);
        expect(await within(w3, 300)).toBe('pending');
        ac.abort();
        expect(await within(w3, 5000)).toBeUndefined();
        expect(await s.get(name, a.key)).toBeDefined();
      });

      it('a lease that ends unrenewed removes the entry and wakes its watcher; renew keeps it alive', async () => {
        const s = await fresh();
        const name = uniqueName('lease');
        const dying = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
        const kept = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 1000 });
        const w = s.watch(name, [dying.key], new AbortController().signal);
        const t0 = Date.now();
        let renewals = 0;
        const renewing = (async () => {
          while (Date.now() - t0 < 4000) {
            if (!(await s.renew(name, kept.key, 1000))) throw new Error('renew of a live entry returned false');
            renewals++;
            await sleep(250);
          }
        })();
        expect(await within(w, 8000)).toBeUndefined();
        const woke = Date.now() - t0;
        expect(woke).toBeGreaterThanOrEqual(900);
        await renewing;
        expect(renewals).toBeGreaterThan(5);
        const es = await s.entries(name);
        expect(es.map((e) => e.key)).toEqual([kept.key]);
        expect(await s.renew(name, dying.key, 1000)).toBe(false);
      }, 30_000);

      it('addHolds adds atomically and reports a missing entry', async () => {
        const s = await fresh();
        const name = uniqueName('holds');
        const a = await s.enqueue(name, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        const results = await Promise.all(Array.from({ length: 10 }, () => s.addHolds(name, a.key, 1)));
        expect(new Set(results).size).toBe(10);
        expect((await s.get(name, a.key))?.holdCount).toBe(11);
        expect(await s.addHolds(name, a.key, -10)).toBe(1);
        await s.remove(name, a.key);
        expect(await s.addHolds(name, a.key, 1)).toBeUndefined();
      });

      it('names() lists lock names with live entries by prefix', async () => {
        const s = await fresh();
        const base = uniqueName('names');
        await s.enqueue(`${base}/a`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        await s.enqueue(`${base}/b`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        const gone = await s.enqueue(`${base}/c`, { mode: 'EXCLUSIVE', limit: 1, ttlMs: 10_000 });
        await s.remove(`${base}/c`, gone.key);
        expect(await s.names(`${base}/`, 100)).toEqual([`${base}/a`, `${base}/b`]);
        expect(await s.names(`${base}/`, 1)).toEqual([`${base}/a`]);
      });
    });

    describe('lock algorithm over the store', () => {
      const backend = async (): Promise<QueueLockBackend> => new QueueLockBackend(await fresh());
      const ctx = (signal = new AbortController().signal, onWake?: () => void) => ({ signal, onWake });

      it('mutual exclusion under contention: 6 clients x 5 increments through a FencedResource', async () => {
        const b = await backend();
        const name = uniqueName('mutex');
        const resource = new FencedResource();
        let value = 0;
        let inside = 0;
        let maxInside = 0;
        const worker = async (): Promise<void> => {
          for (let i = 0; i < 5; i++) {
            const g = granted(await b.acquire(spec(name), ctx()));
            inside++;
            maxInside = Math.max(maxInside, inside);
            const read = resource.run(name, g.token, () => value);
            await sleep(2);
            resource.run(name, g.token, () => (value = read + 1));
            inside--;
            expect(await b.release(name, g.leaseId, g.token)).toBe(0);
          }
        };
        await Promise.all(Array.from({ length: 6 }, worker));
        expect(value).toBe(30);
        expect(maxInside).toBe(1);
        expect(resource.rejected).toBe(0);
        expect((await b.describe(name)).entries).toEqual([]);
      }, 60_000);

      it('FIFO: waiters are granted in arrival order with increasing tokens', async () => {
        const b = await backend();
        const name = uniqueName('fifo');
        const first = granted(await b.acquire(spec(name), ctx()));
        const order: number[] = [];
        const waiters: Promise<Grant>[] = [];
        for (let i = 0; i < 5; i++) {
          const positions: number[] = [];
          waiters.push(
            b.acquire(spec(name), { signal: new AbortController().signal, onQueued: (p) => positions.push(p) }).then((r) => {
              order.push(i);
              return granted(r);
            }),
          );
          await waitUntil(`waiter ${i} queued`, async () => (await b.describe(name)).entries.length === i + 2);
        }
        let prev = first;
        await b.release(name, first.leaseId, first.token);
        for (let i = 0; i < 5; i++) {
          const g = await waiters[i];
          expect(g.token).toBeGreaterThan(prev.token);
          prev = g;
          await b.release(name, g.leaseId, g.token);
        }
        expect(order).toEqual([0, 1, 2, 3, 4]);
      }, 60_000);

      it('shared: readers hold together; a writer waits for them; a reader behind the writer waits for it', async () => {
        const b = await backend();
        const name = uniqueName('rw');
        const r1 = granted(await b.acquire(spec(name, { mode: 'SHARED' }), ctx()));
        const r2 = granted(await b.acquire(spec(name, { mode: 'SHARED' }), ctx()));
        const w = b.acquire(spec(name), ctx());
        await waitUntil('writer queued', async () => (await b.describe(name)).entries.length === 3);
        const r3 = b.acquire(spec(name, { mode: 'SHARED' }), ctx());
        await waitUntil('late reader queued', async () => (await b.describe(name)).entries.length === 4);
        const d = await b.describe(name);
        expect(d.entries.map((e) => [e.mode, e.held])).toEqual([['SHARED', true], ['SHARED', true], ['EXCLUSIVE', false], ['SHARED', false]]);
        await b.release(name, r1.leaseId, r1.token);
        expect(await within(w, 300)).toBe('pending');
        await b.release(name, r2.leaseId, r2.token);
        const wg = granted(await w);
        expect(await within(r3, 300)).toBe('pending');
        await b.release(name, wg.leaseId, wg.token);
        const r3g = granted(await r3);
        expect(r3g.token).toBeGreaterThan(wg.token);
        // try-once on a read-held lock: a reader gets in, a writer does not
        const r4 = granted(await b.acquire(spec(name, { mode: 'SHARED', waitMs: 0 }), ctx()));
        expect((await b.acquire(spec(name, { waitMs: 0 }), ctx())).timedOut).toBe(true);
        await b.release(name, r3g.leaseId, r3g.token);
        await b.release(name, r4.leaseId, r4.token);
      }, 60_000);

      it('write→read downgrade by the same owner; read→write upgrade is refused', async () => {
        const b = await backend();
        const name = uniqueName('downgrade');
        const w = granted(await b.acquire(spec(name, { ownerId: 'alice' }), ctx()));
        const r = granted(await b.acquire(spec(name, { mode: 'SHARED', ownerId: 'alice', waitMs: 0 }), ctx()));
        expect(r.token).toBeGreaterThan(w.token);
        const other = b.acquire(spec(name, { mode: 'SHARED', ownerId: 'bob' }), ctx());
        expect(await within(other, 300)).toBe('pending');
        await b.release(name, w.leaseId, w.token);
        const o = granted(await other);
        await expect(b.acquire(spec(name, { ownerId: 'bob' }), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
        await b.release(name, r.leaseId, r.token);
        await b.release(name, o.leaseId, o.token);
      }, 60_000);

      it('counting: limit 3 admits exactly 3 holders; a release admits the next', async () => {
        const b = await backend();
        const name = uniqueName('semaphore');
        const s3 = (): AcquireSpec => spec(name, { limit: 3 });
        const holders = [granted(await b.acquire(s3(), ctx())), granted(await b.acquire(s3(), ctx())), granted(await b.acquire(s3(), ctx()))];
        const fourth = b.acquire(s3(), ctx());
        const fifth = b.acquire(s3(), ctx());
        await waitUntil('two waiters', async () => (await b.describe(name)).entries.length === 5);
        expect((await b.describe(name)).entries.filter((e) => e.held).length).toBe(3);
        expect(await within(fourth, 300)).toBe('pending');
        await b.release(name, holders[1].leaseId, holders[1].token);
        const g4 = granted(await fourth);
        expect(await within(fifth, 300)).toBe('pending');
        expect((await b.describe(name)).entries.filter((e) => e.held).length).toBe(3);
        await b.release(name, holders[0].leaseId, holders[0].token);
        const g5 = granted(await fifth);
        await expect(b.acquire(spec(name, { limit: 2 }), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
        await expect(b.acquire(spec(name), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
        for (const g of [holders[2], g4, g5]) await b.release(name, g.leaseId, g.token);
      }, 60_000);

      it('re-entrancy by owner id: same lease and token, hold count; the lock frees after the last release', async () => {
        const b = await backend();
        const name = uniqueName('reentrant');
        const g1 = granted(await b.acquire(spec(name, { ownerId: 'worker-1' }), ctx()));
        const g2 = granted(await b.acquire(spec(name, { ownerId: 'worker-1', waitMs: 0 }), ctx()));
        expect(g2).toMatchObject({ leaseId: g1.leaseId, token: g1.token, holdCount: 2 });
        expect((await b.acquire(spec(name, { ownerId: 'worker-2', waitMs: 0 }), ctx())).timedOut).toBe(true);
        expect(await b.release(name, g1.leaseId, g1.token)).toBe(1);
        expect((await b.acquire(spec(name, { waitMs: 0 }), ctx())).timedOut).toBe(true);
        expect(await b.release(name, g1.leaseId, g1.token)).toBe(0);
        const g3 = granted(await b.acquire(spec(name, { ownerId: 'worker-2', waitMs: 0 }), ctx()));
        expect(g3.token).toBeGreaterThan(g1.token);
        await b.release(name, g3.leaseId, g3.token);
      });

      it('release is idempotent and fenced: a retried or stale release never frees a newer grant', async () => {
        const b = await backend();
        const name = uniqueName('release');
        const g1 = granted(await b.acquire(spec(name), ctx()));
        expect(await b.release(name, g1.leaseId, g1.token + 1)).toBe(-1);
        expect((await b.describe(name)).entries).toHaveLength(1);
        expect(await b.release(name, g1.leaseId, g1.token)).toBe(0);
        expect(await b.release(name, g1.leaseId, g1.token)).toBe(-1);
        const g2 = granted(await b.acquire(spec(name), ctx()));
        expect(await b.release(name, g1.leaseId, g1.token)).toBe(-1);
        expect((await b.describe(name)).entries.map((e) => e.token)).toEqual([g2.token]);
        await b.release(name, g2.leaseId, g2.token);
      });

      it('try once (wait 0) on a held lock queues nothing; a wait timeout removes the waiter', async () => {
        const b = await backend();
        const name = uniqueName('timeout');
        const g = granted(await b.acquire(spec(name), ctx()));
        expect((await b.acquire(spec(name, { waitMs: 0 }), ctx())).timedOut).toBe(true);
        expect((await b.describe(name)).entries).toHaveLength(1);
        const ac = new AbortController();
        const waiter = b.acquire(spec(name), ctx(ac.signal));
        await waitUntil('waiter queued', async () => (await b.describe(name)).entries.length === 2);
        ac.abort();
        expect((await waiter).timedOut).toBe(true);
        expect((await b.describe(name)).entries).toHaveLength(1);
        await b.release(name, g.leaseId, g.token);
      });

      it('a retried Acquire (same request id) reuses its queue slot', async () => {
        const b = await backend();
        const name = uniqueName('retry');
        const g = granted(await b.acquire(spec(name), ctx()));
        const ac = new AbortController();
        const first = b.acquire(spec(name, { requestId: 'req-1' }), ctx(ac.signal));
        await waitUntil('first attempt queued', async () => (await b.describe(name)).entries.length === 2);
        // the client's connection dropped; it retries with the same request id while the first wait still runs
        const retry = b.acquire(spec(name, { requestId: 'req-1' }), ctx());
        await sleep(200);
        expect((await b.describe(name)).entries).toHaveLength(2);
        await b.release(name, g.leaseId, g.token);
        const rg = granted(await retry);
        const fg = granted(await first);
        expect(rg.leaseId).toBe(fg.leaseId);
        await expect(b.acquire(spec(name, { requestId: 'req-1', mode: 'SHARED' }), ctx())).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
        await b.release(name, rg.leaseId, rg.token);
        ac.abort();
      });

      it('a holder whose lease ends is lost (watchLoss) and the next waiter is granted; a waiter whose lease ends is never granted', async () => {
        const b = await backend();
        const name = uniqueName('expiry');
        const holder = granted(await b.acquire(spec(name, { ttlMs: 1000 }), ctx()));
        const lossAc = new AbortController();
        const loss = b.watchLoss(holder, lossAc.signal);
        const next = b.acquire(spec(name, { ttlMs: 10_000 }), ctx());
        // keep the waiter's lease alive while the holder's runs out
        await waitUntil('waiter queued', async () => (await b.describe(name)).entries.length === 2);
        const waiterKey = (await b.describe(name)).entries[1].leaseId;
        expect(await within(loss, 10_000)).toBe('LEASE_EXPIRED');
        const g = granted(await next);
        expect(g.leaseId).toBe(waiterKey);
        expect(g.token).toBeGreaterThan(holder.token);
        expect(await b.release(name, holder.leaseId, holder.token)).toBe(-1);

        // a waiter with a short lease behind a renewed holder
        const shortWaiter = b.acquire(spec(name, { ttlMs: 1000 }), ctx());
        const t0 = Date.now();
        while (Date.now() - t0 < 3000) {
          expect(await b.renew(name, g.leaseId, 1000)).toBe(true);
          await sleep(200);
        }
        expect(await within(shortWaiter, 8000)).toEqual({ lost: 'LEASE_EXPIRED' });
        await b.release(name, g.leaseId, g.token);
        lossAc.abort();
      }, 60_000);

      it('no herd effect: 20 waiters, each release wakes exactly one waiter', async () => {
        const b = await backend();
        const name = uniqueName('herd');
        let wakes = 0;
        const first = granted(await b.acquire(spec(name), ctx()));
        const waiters: Promise<AcquireResult>[] = [];
        // queued one at a time, so that call order is queue order (concurrent enqueues may commit in any order)
        for (let i = 0; i < 20; i++) {
          waiters.push(b.acquire(spec(name), ctx(undefined, () => wakes++)));
          await waitUntil(`waiter ${i} queued`, async () => (await b.describe(name)).entries.length === i + 2, 30_000);
        }
        await sleep(200);
        expect(wakes).toBe(0);
        let prev = first;
        for (let i = 0; i < 20; i++) {
          const before = wakes;
          await b.release(name, prev.leaseId, prev.token);
          prev = granted(await waiters[i]);
          await sleep(20);
          expect(wakes - before).toBe(1);
        }
        await b.release(name, prev.leaseId, prev.token);
        expect(wakes).toBe(20);
      }, 120_000);
    });
  });
}
