/**
 * The pure queue rules of libs/lock/src/queue.ts (which entries hold, what a waiter watches), checked with
 * fast-check against the safety properties of mutexes, read/write locks and semaphores.
 */
import fc from 'fast-check';
import { decide, holders, shapeConflict } from '@app/lock';
import type { LockMode, QueueEntry } from '@app/lock';

interface E {
  key: string;
  mode: LockMode;
  limit: number;
  ownerId?: string;
}

const entry = fc.record({
  mode: fc.constantFrom<LockMode>('EXCLUSIVE', 'SHARED'),
  limit: fc.constantFrom(1, 1, 2, 3),
  ownerId: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
});

const queue = fc.array(entry, { minLength: 1, maxLength: 12 }).map((xs) =>
  xs.map((x, i): E => ({ key: `k${i}`, mode: x.mode, limit: x.mode === 'SHARED' ? 1 : x.limit, ownerId: x.ownerId })),
);

const isSem = (e: E): boolean => e.mode === 'EXCLUSIVE' && e.limit > 1;

describe('queue rules (property tests)', () => {
  it('safety: a held mutex writer excludes everyone but its owner\'s readers; semaphores never exceed their limit; the head always holds', () => {
    fc.assert(
      fc.property(queue, (q) => {
        const h = holders(q);
        expect(h[0]).toBe(true);
        q.forEach((e, i) => {
          if (!h[i]) return;
          if (e.mode === 'EXCLUSIVE' && !isSem(e)) {
            q.forEach((o, j) => {
              if (j !== i && h[j]) expect(o.mode === 'SHARED' && o.ownerId !== undefined && o.ownerId === e.ownerId).toBe(true);
            });
          }
          if (isSem(e)) {
            const n = h.filter((x, j) => x && isSem(q[j]) && q[j].limit === e.limit).length;
            expect(n).toBeLessThanOrEqual(e.limit);
            q.forEach((o, j) => {
              if (h[j]) expect(isSem(o)).toBe(true); // nothing else holds beside a semaphore
            });
          }
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('FIFO: a non-shared entry holds only when it is first, or within the limit of a uniform semaphore prefix', () => {
    fc.assert(
      fc.property(queue, (q) => {
        const h = holders(q);
        q.forEach((e, i) => {
          if (!h[i] || e.mode === 'SHARED') return;
          if (i > 0) {
            expect(isSem(e)).toBe(true);
            expect(i).toBeLessThan(e.limit);
            for (let j = 0; j < i; j++) expect(isSem(q[j]) && q[j].limit === e.limit).toBe(true);
          }
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('decide agrees with holders; a waiter watches earlier entries only; positions count the waiters ahead', () => {
    fc.assert(
      fc.property(queue, (q) => {
        const h = holders(q);
        q.forEach((_, i) => {
          const d = decide(q, i);
          expect(d.granted).toBe(h[i]);
          if (!d.granted) {
            expect(d.watch.length).toBeGreaterThan(0);
            for (const k of d.watch) expect(Number(k.slice(1))).toBeLessThan(i);
            expect(d.position).toBeGreaterThanOrEqual(1);
            expect(d.position).toBeLessThanOrEqual(i);
          }
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('no lost wake-up: removing every entry a waiter watches changes its decision or gives it new entries to watch', () => {
    fc.assert(
      fc.property(queue, (q) => {
        q.forEach((_, i) => {
          const d = decide(q, i);
          if (d.granted) return;
          const rest = q.filter((e) => !d.watch.includes(e.key));
          const j = rest.findIndex((e) => e.key === q[i].key);
          const d2 = decide(rest, j);
          if (!d2.granted) expect(d2.watch.some((k) => !d.watch.includes(k))).toBe(true);
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('a mutex queue: each waiter watches exactly its predecessor (one wake-up per release)', () => {
    const q: E[] = Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, mode: 'EXCLUSIVE', limit: 1 }));
    for (let i = 1; i < 50; i++) expect(decide(q, i)).toEqual({ granted: false, watch: [`k${i - 1}`], position: i });
  });

  it('readers behind a writer all watch that writer; a writer behind readers watches its predecessor', () => {
    const q: E[] = [
      { key: 'w', mode: 'EXCLUSIVE', limit: 1 },
      { key: 'r1', mode: 'SHARED', limit: 1 },
      { key: 'r2', mode: 'SHARED', limit: 1 },
      { key: 'w2', mode: 'EXCLUSIVE', limit: 1 },
      { key: 'r3', mode: 'SHARED', limit: 1 },
    ];
    expect(decide(q, 1)).toMatchObject({ watch: ['w'] });
    expect(decide(q, 2)).toMatchObject({ watch: ['w'] });
    expect(decide(q, 3)).toMatchObject({ watch: ['r2'] });
    expect(decide(q, 4)).toMatchObject({ watch: ['w2'] });
    expect(holders(q.slice(1))).toEqual([true, true, false, false]);
  });

  it('refuses to mix shapes in one lock', () => {
    const sem = [{ key: 'a', order: 1, mode: 'EXCLUSIVE', limit: 3, holdCount: 1 }] as QueueEntry[];
    const mutex = [{ key: 'a', order: 1, mode: 'EXCLUSIVE', limit: 1, holdCount: 1 }] as QueueEntry[];
    expect(shapeConflict(sem, 'x', { mode: 'EXCLUSIVE', limit: 2 })).toMatch(/limit 3/);
    expect(shapeConflict(sem, 'x', { mode: 'SHARED', limit: 1 })).toMatch(/semaphore/);
    expect(shapeConflict(mutex, 'x', { mode: 'EXCLUSIVE', limit: 4 })).toMatch(/cannot be taken as a semaphore/);
    expect(shapeConflict(mutex, 'x', { mode: 'SHARED', limit: 1 })).toBeUndefined();
  });
});
