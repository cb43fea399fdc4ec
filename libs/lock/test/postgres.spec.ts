/**
 * The postgres lock backend (PostgresQueueStore) against a real PostgreSQL 15 server started by this file:
 * postgres-specific behaviour (the table and its unique indexes, sequence order, retried request ids, expiry
 * with the watch deadline timer, LISTEN/NOTIFY across two store instances = two lock service replicas, renew,
 * names, a lost listener connection, an unreachable database), then the shared QueueStore conformance suite.
 */
import { existsSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { LockError, QueueLockBackend } from '@app/lock';
import type { AcquireResult, Grant } from '@app/lock';
import { PostgresQueueStore } from '../src/backends/postgres.js';
import { PostgresServer } from '../../testing/src/servers/postgres.js';
import { runQueueStoreConformance } from './conformance.js';
import { sleep, within } from './util.js';

let server: PostgresServer | undefined;
let admin: pg.Client | undefined;
const stores: PostgresQueueStore[] = [];



function srv(): PostgresServer {
  if (server === undefined) throw new Error('the PostgreSQL test server did not start (see beforeAll)');
  return server;
}

function db(): pg.Client {
  if (admin === undefined) throw new Error('no admin connection (see beforeAll)');
  return admin;
}

async function open(table = 'synod_lock_entries'): Promise<PostgresQueueStore> {
  const s = new PostgresQueueStore({ connectionString: srv().connectionString, table });
  stores.push(s);
  await s.start();
  return s;
}

let n = 0;
const uniqueName = (what: string): string => `pg/${what}/${Date.now().toString(36)}-${++n}`;
const ex = (ttlMs = 60_000) => ({ mode: 'EXCLUSIVE' as const, limit: 1, ttlMs });

beforeAll(async () => {
  server = await PostgresServer.start();
  admin = new pg.Client({ connectionString: server.connectionString });
  await admin.connect();
}, 60_000);

afterEach(async () => {
  const list = stores.splice(0);
  for (const s of list) await s.close();
});

afterAll(async () => {
  await admin?.end().catch(() => undefined);
  await server?.stop();
}, 30_000);

describe('PostgreSQL test server', () => {
  it('runs as the postgres OS user with fsync on and max_prepared_transactions=64; stop() kills it and removes its directory', async () => {
    const r = await db().query("SELECT current_setting('fsync') AS fsync, current_setting('max_prepared_transactions') AS mpt, inet_server_addr()::text AS addr");
    expect(r.rows[0]).toEqual({ fsync: 'on', mpt: '64', addr: '127.0.0.1/32' });
    const pid = srv().pid!;
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    if (process.getuid?.() === 0) expect(uid).not.toBe(0);

    const other = await PostgresServer.start();
    const otherPid = other.pid!;
    expect(other.port).not.toBe(srv().port);
    expect(existsSync(other.dataDir)).toBe(true);
    await other.stop();
    expect(existsSync(other.dir)).toBe(false);
    expect(() => process.kill(otherPid, 0)).toThrow();
    await other.stop(); // idempotent
  }, 60_000);
});

describe('PostgresQueueStore', () => {
  it('start() creates the table, its sequence and unique indexes; twice at once is fine', async () => {
    await Promise.all([open('twice_entries'), open('twice_entries')]);
    const idx = await db().query<{ indexname: string; indexdef: string }>("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'twice_entries' ORDER BY indexname");
    const defs = idx.rows.map((r) => r.indexdef).join('\n');
    expect(defs).toMatch(/UNIQUE INDEX twice_entries_pkey ON public\.twice_entries USING btree \(lease_id\)/);
    expect(defs).toMatch(/UNIQUE INDEX twice_entries_name_seq ON public\.twice_entries USING btree \(lock_name, seq\)/);
    expect(defs).toMatch(/UNIQUE INDEX twice_entries_name_request ON public\.twice_entries USING btree \(lock_name, request_id\) WHERE \(request_id IS NOT NULL\)/);
    const seq = await db().query("SELECT 1 FROM pg_sequences WHERE sequencename = 'twice_entries_seq'");
    expect(seq.rowCount).toBe(1);
  });

  it('a schema-qualified table is created in its schema; a bad table name is refused', async () => {
    const s = await open('synod_locks.entries');
    const a = await s.enqueue(uniqueName('schema'), ex());
    const r = await db().query('SELECT lease_id FROM synod_locks.entries');
    expect(r.rows.map((x) => x.lease_id)).toEqual([a.key]);
    expect(() => new PostgresQueueStore({ connectionString: srv().connectionString, table: 'x; DROP TABLE y' })).toThrow(LockError);
  });

  it('order is the sequence value (fencing token) and the unique index refuses a duplicate (lock_name, seq)', async () => {
    const s = await open();
    const name = uniqueName('seq');
    const a = await s.enqueue(name, { ...ex(5000), ownerId: 'o', requestId: 'r' });
    const b = await s.enqueue(name, { mode: 'SHARED', limit: 1, ttlMs: 5000 });
    const rows = await db().query('SELECT lease_id, seq::text AS seq, mode, lim, owner_id, request_id, hold_count, extract(epoch FROM expires_at - now()) * 1000 AS left_ms FROM synod_lock_entries WHERE lock_name = $1 ORDER BY seq', [name]);
    expect(rows.rows.map((r) => [r.lease_id, Number(r.seq)])).toEqual([
      [a.key, a.order],
      [b.key, b.order],
    ]);
    expect(rows.rows[0]).toMatchObject({ mode: 'EXCLUSIVE', lim: 1, owner_id: 'o', request_id: 'r', hold_count: 1 });
    expect(Number(rows.rows[0].left_ms)).toBeGreaterThan(3000);
    expect(Number(rows.rows[0].left_ms)).toBeLessThanOrEqual(5000);
    expect(a.key).toMatch(/^[0-9a-f-]{36}$/);
    await expect(
      db().query("INSERT INTO synod_lock_entries (lease_id, lock_name, seq, mode, lim, expires_at) VALUES ('dup', $1, $2, 'EXCLUSIVE', 1, now() + interval '1 minute')", [name, a.order]),
    ).rejects.toMatchObject({ code: '23505' });
  });

  it('inserts of one lock name are serialized: concurrent enqueues from two replicas get distinct, increasing orders', async () => {
    const s1 = await open();
    const s2 = await open();
    const name = uniqueName('concurrent');
    const made = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? s1 : s2).enqueue(name, ex())));
    const es = await s1.entries(name);
    expect(es).toHaveLength(30);
    expect(new Set(made.map((e) => e.order)).size).toBe(30);
    for (let i = 1; i < es.length; i++) expect(es[i].order).toBeGreaterThan(es[i - 1].order);
  });

  it('a duplicate request id returns the existing entry (also when retried concurrently); once that entry expired, a new one', async () => {
    const s = await open();
    const name = uniqueName('request');
    const first = await s.enqueue(name, { ...ex(1000), requestId: 'req-7' });
    const again = await Promise.all(Array.from({ length: 5 }, () => s.enqueue(name, { ...ex(1000), requestId: 'req-7' })));
    for (const e of again) expect(e).toEqual(first);
    const count = await db().query('SELECT count(*)::int AS n FROM synod_lock_entries WHERE lock_name = $1', [name]);
    expect(count.rows[0].n).toBe(1);
    // the same request id on another lock is another request
    const other = await s.enqueue(`${name}-other`, { ...ex(), requestId: 'req-7' });
    expect(other.key).not.toBe(first.key);
    await sleep(1200);
    const fresh = await s.enqueue(name, { ...ex(), requestId: 'req-7' });
    expect(fresh.key).not.toBe(first.key);
    expect(fresh.order).toBeGreaterThan(first.order);
    expect((await s.entries(name)).map((e) => e.key)).toEqual([fresh.key]);
  });

  it("expiry: the watch's deadline timer wakes a watcher without any NOTIFY; the next read deletes the row and NOTIFYs", async () => {
    const s = await open();
    const name = uniqueName('expiry');
    const a = await s.enqueue(name, ex(800));
    const t0 = Date.now();
    const w = s.watch(name, [a.key], new AbortController().signal);
    expect(await within(w, 400)).toBe('pending');
    expect(await within(w, 3000)).toBeUndefined();
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(700);
    expect(took).toBeLessThan(2000);
    // nothing deleted the row yet: the timer, not a notification, woke the watcher
    const still = await db().query('SELECT count(*)::int AS n FROM synod_lock_entries WHERE lease_id = $1', [a.key]);
    expect(still.rows[0].n).toBe(1);
    expect(await s.get(name, a.key)).toBeUndefined();

    const listener = new pg.Client({ connectionString: srv().connectionString });
    await listener.connect();
    try {
      const got: string[] = [];
      listener.on('notification', (m) => got.push(`${m.channel}:${m.payload}`));
      await listener.query(`LISTEN "${s.channelOf(name)}"`);
      expect(await s.entries(name)).toEqual([]);
      const end = Date.now() + 5000;
      while (got.length === 0 && Date.now() < end) await sleep(20);
      expect(got).toEqual([`${s.channelOf(name)}:${a.key}`]);
      const gone = await db().query('SELECT count(*)::int AS n FROM synod_lock_entries WHERE lease_id = $1', [a.key]);
      expect(gone.rows[0].n).toBe(0);
    } finally {
      await listener.end();
    }
  });

  it('renew moves the expiry (a watcher armed before the renewal does not wake at the old one); false once expired', async () => {
    const s = await open();
    const name = uniqueName('renew');
    const a = await s.enqueue(name, ex(700));
    const w = s.watch(name, [a.key], new AbortController().signal);
    await sleep(100);
    expect(await s.renew(name, a.key, 2500)).toBe(true);
    const left = await db().query('SELECT extract(epoch FROM expires_at - now()) * 1000 AS ms FROM synod_lock_entries WHERE lease_id = $1', [a.key]);
    expect(Number(left.rows[0].ms)).toBeGreaterThan(2000);
    expect(await within(w, 1500)).toBe('pending'); // past the old expiry
    expect(await within(w, 3000)).toBeUndefined(); // the new one
    expect(await s.renew(name, a.key, 10_000)).toBe(false);
    expect(await s.addHolds(name, a.key, 1)).toBeUndefined();
  }, 20_000);

  it('NOTIFY wakes a watcher on another store instance (another lock service replica), only for its key', async () => {
    const s1 = await open();
    const s2 = await open();
    const name = uniqueName('replicas');
    const a = await s1.enqueue(name, ex());
    const b = await s1.enqueue(name, ex());
    const wa = s2.watch(name, [a.key], new AbortController().signal);
    const wb = s2.watch(name, [b.key], new AbortController().signal);
    expect(await within(wa, 300)).toBe('pending');
    expect(s2.listenedChannels).toBe(1); // one LISTEN for both watchers of the lock
    const t0 = Date.now();
    expect(await s1.remove(name, a.key)).toBe(true);
    expect(await within(wa, 3000)).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await within(wb, 300)).toBe('pending');
    await s1.notify(name, b.key);
    expect(await within(wb, 3000)).toBeUndefined();
    expect(s2.listenedChannels).toBe(0); // UNLISTENed when unused
    expect((await s2.entries(name)).map((e) => e.key)).toEqual([b.key]);
  });

  it('a watcher of a row that is already gone resolves at once; an aborted signal ends a watch', async () => {
    const s = await open();
    const name = uniqueName('gone');
    const a = await s.enqueue(name, ex());
    await s.remove(name, a.key);
    expect(await within(s.watch(name, [a.key], new AbortController().signal), 2000)).toBeUndefined();
    const b = await s.enqueue(name, ex());
    const ac = new AbortController();
    const w = s.watch(name, [b.key, 'missing-key'], ac.signal);
    expect(await within(w, 2000)).toBeUndefined(); // one of the keys is gone
    const w2 = s.watch(name, [b.key], ac.signal);
    ac.abort();
    expect(await within(w2, 2000)).toBeUndefined();
  });

  it('a lost LISTEN connection wakes its watchers (they re-read), and the next watch reconnects', async () => {
    const s = await open();
    const name = uniqueName('listener');
    const a = await s.enqueue(name, ex());
    const w = s.watch(name, [a.key], new AbortController().signal);
    expect(await within(w, 300)).toBe('pending');
    const killed = await db().query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'synod-lock-listener'");
    expect(killed.rowCount).toBe(1);
    expect(await within(w, 5000)).toBeUndefined();
    expect(await s.get(name, a.key)).toBeDefined();
    const w2 = s.watch(name, [a.key], new AbortController().signal);
    expect(await within(w2, 300)).toBe('pending');
    await s.remove(name, a.key);
    expect(await within(w2, 3000)).toBeUndefined();
  });

  it('names(): live lock names by prefix, in code-point order, at most limit; expired ones are not listed', async () => {
    const s = await open();
    const base = uniqueName('names');
    for (const x of ['b', 'a', 'B', 'a/x']) await s.enqueue(`${base}/${x}`, ex());
    await s.enqueue(`${base}/expired`, ex(200));
    await s.enqueue(`${base}-sibling`, ex());
    await sleep(300);
    const expected = [`${base}/B`, `${base}/a`, `${base}/a/x`, `${base}/b`];
    expect(await s.names(`${base}/`, 100)).toEqual(expected);
    expect([...expected].sort()).toEqual(expected);
    expect(await s.names(`${base}/`, 2)).toEqual(expected.slice(0, 2));
    expect(await s.names(`${base}/`, 0)).toEqual([]);
  });

  it('sweep() deletes expired rows of any lock, NOTIFYing on the same channel the store LISTENs on', async () => {
    const s = await open('sweep_entries');
    const name = uniqueName('sweep');
    const a = await s.enqueue(name, ex(300));
    const w = s.watch(name, [a.key], new AbortController().signal);
    expect(await within(w, 100)).toBe('pending');
    const listener = new pg.Client({ connectionString: srv().connectionString });
    await listener.connect();
    try {
      const got: string[] = [];
      listener.on('notification', (m) => got.push(`${m.channel}:${m.payload}`));
      await listener.query(`LISTEN "${s.channelOf(name)}"`);
      await sleep(400);
      expect(await s.sweep()).toBe(1);
      const end = Date.now() + 5000;
      while (got.length === 0 && Date.now() < end) await sleep(20);
      expect(got).toEqual([`${s.channelOf(name)}:${a.key}`]);
      expect(await within(w, 3000)).toBeUndefined();
      expect(await s.sweep()).toBe(0);
    } finally {
      await listener.end();
    }
  });

  it('no herd effect over LISTEN/NOTIFY: 15 waiters queued one at a time, each release wakes exactly the next one', async () => {
    const b = new QueueLockBackend(await open());
    const name = uniqueName('herd');
    const spec = { name, mode: 'EXCLUSIVE' as const, limit: 1, ttlMs: 30_000, waitMs: 30_000 };
    const wakes: number[] = [];
    const first = await b.acquire(spec, { signal: new AbortController().signal });
    const waiters: Promise<AcquireResult>[] = [];
    for (let i = 0; i < 15; i++) {
      waiters.push(b.acquire(spec, { signal: new AbortController().signal, onWake: () => wakes.push(i) }));
      const end = Date.now() + 10_000;
      while ((await b.describe(name)).entries.length !== i + 2) {
        if (Date.now() > end) throw new Error(`waiter ${i} did not queue`);
        await sleep(10);
      }
    }
    let prev = first.granted as Grant;
    for (let i = 0; i < 15; i++) {
      await b.release(name, prev.leaseId, prev.token);
      const r = await waiters[i];
      if (r.granted === undefined) throw new Error(`waiter ${i}: ${JSON.stringify(r)}`);
      expect(r.granted.token).toBeGreaterThan(prev.token);
      prev = r.granted;
      await sleep(20);
      expect(wakes).toEqual(Array.from({ length: i + 1 }, (_, k) => k));
    }
    expect(await b.release(name, prev.leaseId, prev.token)).toBe(0);
  }, 60_000);

  it('channel names stay within 63 bytes for the longest lock names', async () => {
    const s = await open();
    const long = 'x'.repeat(256);
    expect(Buffer.byteLength(s.channelOf(long))).toBeLessThanOrEqual(63);
    expect(s.channelOf(long)).toMatch(/^[a-z0-9_]+$/);
    expect(s.channelOf('a')).not.toBe(s.channelOf('b'));
    const a = await s.enqueue(long, ex());
    const w = s.watch(long, [a.key], new AbortController().signal);
    expect(await within(w, 200)).toBe('pending');
    await s.remove(long, a.key);
    expect(await within(w, 3000)).toBeUndefined();
  });

  it('an unreachable database is LockError UNAVAILABLE with a clear message', async () => {
    const s = new PostgresQueueStore({ connectionString: 'postgresql://postgres:secret@127.0.0.1:1/postgres', connectTimeoutMs: 2000 });
    stores.push(s);
    const err = await s.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
    expect((err as Error).message).toMatch(/PostgreSQL lock store .*127\.0\.0\.1:1.*ECONNREFUSED|connect/);
    expect((err as Error).message).not.toContain('secret');
    await expect(s.entries('x')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(s.watch('x', ['k'], new AbortController().signal)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

runQueueStoreConformance('postgres', async () => {
  const store = new PostgresQueueStore({ connectionString: srv().connectionString, table: 'conformance_entries' });
  return { store, cleanup: () => store.close() };
});
