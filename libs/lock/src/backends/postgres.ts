/**
 * The `postgres` lock backend's store: the classic "unique index" database lock with its three problems fixed,
 * as a {@link QueueStore} (the lock algorithm itself is queue.ts). See docs/locks/postgres.md.
 *
 * One table of queue entries (one row per Acquire), created by `start()` if missing:
 *   lease_id text PRIMARY KEY, lock_name text, seq bigint (from a SEQUENCE: queue order and fencing token),
 *   mode, lim, owner_id, request_id, hold_count, expires_at timestamptz
 *   UNIQUE (lock_name, seq); UNIQUE (lock_name, request_id) WHERE request_id IS NOT NULL.
 *
 * - No expiry → every row has a lease: `expires_at = now() + ttl` on the database clock, extended by `renew`.
 *   Expired rows are never returned and are deleted (with a NOTIFY) by the next read of their lock.
 * - Non-blocking → waiters block on LISTEN/NOTIFY: removing a row (release, expiry cleanup, `notify`) sends
 *   NOTIFY on the lock's channel with the row's key; `watch` also arms a timer at the watched rows' expiry,
 *   since a row whose lease merely ends sends nothing.
 * - Not re-entrant → `hold_count` (queue.ts re-enters by owner id through `addHolds`).
 *
 * Order: a sequence value is taken when the INSERT runs but becomes visible at COMMIT, so two concurrent
 * inserts could become visible out of sequence order (a later reader would then see a smaller seq appear
 * in front of an entry already granted). Inserts of one lock name are therefore serialized with a
 * transaction-scoped advisory lock: per lock name, sequence order = commit order.
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { BackendKind, EnqueueSpec, QueueEntry, QueueStore } from '../backend.js';
import { LockError } from '../types.js';
import type { LockMode } from '../types.js';

export interface PostgresQueueStoreOptions {
  /** postgresql://user:password@host:port/database */
  connectionString: string;
  /** Table name, optionally schema-qualified (`schema.table`); lower-case identifiers. Default `synod_lock_entries`. */
  table?: string;
  /** Connection pool size (default 10). */
  poolSize?: number;
  /** Bound on connecting (ms, default 5000). */
  connectTimeoutMs?: number;
  /** Bound on any statement (ms, default 15000). */
  statementTimeoutMs?: number;
}

/** Extra wait after a watched row's expiry before re-checking it (ms): covers timer and clock rounding. */
const EXPIRY_MARGIN_MS = 25;
const MAX_TIMER_MS = 2 ** 31 - 1;
const IDENT = /^[a-z_][a-z0-9_]*$/;

interface Row {
  lease_id: string;
  seq: string;
  mode: string;
  lim: number;
  owner_id: string | null;
  request_id: string | null;
  hold_count: number;
}

const COLUMNS = 'lease_id, seq, mode, lim, owner_id, request_id, hold_count';

function toEntry(r: Row): QueueEntry {
  const e: QueueEntry = { key: r.lease_id, order: Number(r.seq), mode: r.mode as LockMode, limit: r.lim, holdCount: r.hold_count };
  if (r.owner_id !== null) e.ownerId = r.owner_id;
  if (r.request_id !== null) e.requestId = r.request_id;
  return e;
}

/** SQLSTATE classes / codes that mean "the database cannot be used right now" (not a bug in a statement). */
function isUnavailable(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return true; // socket errors, timeouts, "Connection terminated", pool closed
  if (!/^[0-9A-Z]{5}$/.test(code)) return true; // ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ...
  return (
    code.startsWith('08') || // connection exception
    code.startsWith('53') || // insufficient resources (too many connections, disk full)
    code.startsWith('57P') || // admin shutdown, crash shutdown, cannot connect now
    code === '25006' || // read-only transaction: connected to a standby
    code === '57014' || // statement timeout / cancel
    code === '3D000' || // database does not exist
    code === '28000' ||
    code === '28P01' // authentication
  );
}

function redact(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable connection string)';
  }
}

interface Watcher {
  keys: Set<string>;
  wake(): void;
}

interface Channel {
  watchers: Set<Watcher>;
  /** The LISTEN for this channel (watchers await it before checking the rows). */
  listening: Promise<void>;
}

export class PostgresQueueStore implements QueueStore {
  readonly kind: BackendKind = 'postgres';
  private readonly table: string;
  private readonly seqName: string;
  private readonly qualified: string;
  private readonly channelPrefix: string;
  private readonly advisoryClass: number;
  private pool: pg.Pool | undefined;
  private listener: pg.Client | undefined;
  private listenerReady: Promise<pg.Client> | undefined;
  private readonly channels = new Map<string, Channel>();
  private readonly schema: string | undefined;
  private closed = false;

  constructor(private readonly options: PostgresQueueStoreOptions) {
    const table = options.table ?? 'synod_lock_entries';
    const parts = table.split('.');
    if (parts.length > 2 || parts.some((p) => !IDENT.test(p) || p.length > 50))
      throw new LockError('INVALID_ARGUMENT', `postgres lock store: table "${table}" must be a lower-case identifier of at most 50 characters ([a-z_][a-z0-9_]*), optionally "schema.table"`);
    this.table = parts[parts.length - 1];
    const schema = parts.length === 2 ? parts[0] : undefined;
    const q = (n: string): string => (schema !== undefined ? `"${schema}"."${n}"` : `"${n}"`);
    this.qualified = q(this.table);
    this.seqName = q(`${this.table}_seq`);
    this.schema = schema;
    // Channels and advisory locks are per table, so two tables (or two services) never wake each other.
    const h = createHash('sha256').update(table).digest();
    this.channelPrefix = `synod_lock_${h.subarray(0, 4).toString('hex')}_`;
    this.advisoryClass = h.readInt32BE(4);
  }

  /**
   * The LISTEN/NOTIFY channel of a lock: an identifier of at most 63 bytes, so the name is hashed (sweep()
   * computes the same in SQL: prefix || left(encode(sha256(name), 'hex'), 32)).
   */
  channelOf(name: string): string {
    return this.channelPrefix + createHash('sha256').update(name).digest('hex').slice(0, 32);
  }

  private unavailable(what: string, e: unknown): LockError {
    const msg = e instanceof Error ? e.message : String(e);
    return new LockError('UNAVAILABLE', `PostgreSQL lock store ${redact(this.options.connectionString)}: ${what} failed: ${msg}; check that the database is up and reachable`);
  }

  private wrap(what: string, e: unknown): Error {
    if (e instanceof LockError) return e;
    if (isUnavailable(e)) return this.unavailable(what, e);
    return e instanceof Error ? e : new Error(String(e));
  }

  private getPool(): pg.Pool {
    if (this.closed) throw new LockError('UNAVAILABLE', 'PostgreSQL lock store is closed');
    if (this.pool === undefined) {
      this.pool = new pg.Pool({
        connectionString: this.options.connectionString,
        max: this.options.poolSize ?? 10,
        connectionTimeoutMillis: this.options.connectTimeoutMs ?? 5000,
        statement_timeout: this.options.statementTimeoutMs ?? 15000,
        query_timeout: (this.options.statementTimeoutMs ?? 15000) + 5000,
        idleTimeoutMillis: 30000,
        keepAlive: true,
        application_name: 'synod-lock',
      });
      // An idle pooled connection that breaks (server restart) must not crash the process; the next query reconnects.
      this.pool.on('error', () => undefined);
    }
    return this.pool;
  }

  private async query<R extends pg.QueryResultRow>(what: string, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.getPool().query<R>(text, values);
    } catch (e) {
      throw this.wrap(what, e);
    }
  }

  async start(): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      client = await this.getPool().connect();
      await client.query('BEGIN');
      // Two replicas starting at once must not race on CREATE ... IF NOT EXISTS (it is not atomic).
      await client.query('SELECT pg_advisory_xact_lock($1, 0)', [this.advisoryClass]);
      if (this.schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
      await client.query(`CREATE SEQUENCE IF NOT EXISTS ${this.seqName} AS bigint MINVALUE 1 NO CYCLE`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.qualified} (
        lease_id   text PRIMARY KEY,
        lock_name  text NOT NULL,
        seq        bigint NOT NULL DEFAULT nextval('${this.seqName.replace(/'/g, "''")}'),
        mode       text NOT NULL CHECK (mode IN ('EXCLUSIVE', 'SHARED')),
        lim        integer NOT NULL CHECK (lim >= 1),
        owner_id   text,
        request_id text,
        hold_count integer NOT NULL DEFAULT 1,
        expires_at timestamptz NOT NULL
      )`);
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS "${this.table}_name_seq" ON ${this.qualified} (lock_name, seq)`);
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS "${this.table}_name_request" ON ${this.qualified} (lock_name, request_id) WHERE request_id IS NOT NULL`);
      await client.query(`CREATE INDEX IF NOT EXISTS "${this.table}_expires" ON ${this.qualified} (expires_at)`);
      await client.query('COMMIT');
    } catch (e) {
      await client?.query('ROLLBACK').catch(() => undefined);
      throw this.wrap('start (creating the lock table)', e);
    } finally {
      client?.release();
    }
    await this.sweep();
  }

  /**
   * Deletes up to `limit` expired rows of any lock (NOTIFY for each): garbage collection of locks nobody reads
   * any more (a lock's own expired rows are deleted by its next `entries`). Run by `start` and `names`.
   * Returns how many rows went.
   */
  async sweep(limit = 1000): Promise<number> {
    const res = await this.query(
      'sweep',
      `DELETE FROM ${this.qualified} WHERE lease_id IN (
         SELECT lease_id FROM ${this.qualified} WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)
       RETURNING pg_notify($2 || left(encode(sha256(convert_to(lock_name, 'UTF8')), 'hex'), 32), lease_id)`,
      [Math.max(1, Math.trunc(limit)), this.channelPrefix],
    );
    return res.rowCount ?? 0;
  }

  async enqueue(name: string, spec: EnqueueSpec): Promise<QueueEntry> {
    const channel = this.channelOf(name);
    // Bounded: each round either returns or deleted the expired row that blocked the request id.
    for (let attempt = 0; attempt < 5; attempt++) {
      let client: pg.PoolClient | undefined;
      let row: Row | undefined;
      try {
        client = await this.getPool().connect();
        await client.query('BEGIN');
        // Serializes inserts of this lock name until COMMIT: sequence order = commit order (see the file comment).
        await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [this.advisoryClass, name]);
        const res = await client.query<Row>(
          `INSERT INTO ${this.qualified} (lease_id, lock_name, mode, lim, owner_id, request_id, hold_count, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, 1, now() + $7 * interval '1 millisecond')
           ON CONFLICT (lock_name, request_id) WHERE request_id IS NOT NULL
             DO UPDATE SET request_id = EXCLUDED.request_id WHERE ${this.qualified}.expires_at > now()
           RETURNING ${COLUMNS}`,
          [randomUUID(), name, spec.mode, spec.limit, spec.ownerId ?? null, spec.requestId ?? null, Math.max(1, Math.round(spec.ttlMs))],
        );
        row = res.rows[0];
        if (row === undefined) {
          // The request id belongs to a row whose lease ended: delete it (waking its watchers) and insert anew.
          await client.query(`DELETE FROM ${this.qualified} WHERE lock_name = $1 AND request_id = $2 AND expires_at <= now() RETURNING pg_notify($3, lease_id)`, [
            name,
            spec.requestId ?? null,
            channel,
          ]);
        }
        await client.query('COMMIT');
      } catch (e) {
        await client?.query('ROLLBACK').catch(() => undefined);
        throw this.wrap('enqueue', e);
      } finally {
        client?.release();
      }
      if (row !== undefined) return toEntry(row);
    }
    throw new LockError('UNAVAILABLE', `PostgreSQL lock store: could not enqueue on lock "${name}" (request id "${spec.requestId}" kept conflicting); retry`);
  }

  async entries(name: string): Promise<QueueEntry[]> {
    // Deletes the lock's expired rows (NOTIFY for each, sent at commit) and returns the live ones, in one statement.
    const res = await this.query<Row>(
      'entries',
      `WITH gone AS (DELETE FROM ${this.qualified} WHERE lock_name = $1 AND expires_at <= now() RETURNING pg_notify($2, lease_id))
       SELECT ${COLUMNS} FROM ${this.qualified} WHERE lock_name = $1 AND expires_at > now() ORDER BY seq`,
      [name, this.channelOf(name)],
    );
    return res.rows.map(toEntry);
  }

  async get(name: string, key: string): Promise<QueueEntry | undefined> {
    const res = await this.query<Row>('get', `SELECT ${COLUMNS} FROM ${this.qualified} WHERE lock_name = $1 AND lease_id = $2 AND expires_at > now()`, [name, key]);
    return res.rows[0] === undefined ? undefined : toEntry(res.rows[0]);
  }

  async notify(name: string, key: string): Promise<void> {
    await this.query('notify', 'SELECT pg_notify($1, $2)', [this.channelOf(name), key]);
  }

  async remove(name: string, key: string): Promise<boolean> {
    const res = await this.query<{ live: boolean }>(
      'remove',
      `DELETE FROM ${this.qualified} WHERE lock_name = $1 AND lease_id = $2 RETURNING pg_notify($3, lease_id), expires_at > now() AS live`,
      [name, key, this.channelOf(name)],
    );
    return res.rows[0]?.live === true;
  }

  async renew(name: string, key: string, ttlMs: number): Promise<boolean> {
    const res = await this.query(
      'renew',
      `UPDATE ${this.qualified} SET expires_at = now() + $3 * interval '1 millisecond' WHERE lock_name = $1 AND lease_id = $2 AND expires_at > now()`,
      [name, key, Math.max(1, Math.round(ttlMs))],
    );
    return (res.rowCount ?? 0) > 0;
  }

  async addHolds(name: string, key: string, delta: number): Promise<number | undefined> {
    const res = await this.query<{ hold_count: number }>(
      'addHolds',
      `UPDATE ${this.qualified} SET hold_count = hold_count + $3 WHERE lock_name = $1 AND lease_id = $2 AND expires_at > now() RETURNING hold_count`,
      [name, key, Math.trunc(delta)],
    );
    return res.rows[0]?.hold_count;
  }

  async names(prefix: string, limit: number): Promise<string[]> {
    if (limit <= 0) return [];
    await this.sweep();
    const res = await this.query<{ lock_name: string }>(
      'names',
      `SELECT DISTINCT lock_name COLLATE "C" AS lock_name FROM ${this.qualified}
       WHERE expires_at > now() AND starts_with(lock_name, $1) ORDER BY 1 LIMIT $2`,
      [prefix, Math.trunc(limit)],
    );
    return res.rows.map((r) => r.lock_name);
  }

  // --- watching: one long-lived listener connection per store, channels ref-counted -------------------------

  private connectListener(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new LockError('UNAVAILABLE', 'PostgreSQL lock store is closed'));
    if (this.listenerReady !== undefined) return this.listenerReady;
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? 5000,
      query_timeout: (this.options.statementTimeoutMs ?? 15000) + 5000,
      keepAlive: true,
      application_name: 'synod-lock-listener',
    });
    this.listener = client;
    const lost = (): void => {
      if (this.listener !== client) return;
      // Notifications may have been missed: wake every watcher (they re-read the queue); the next watch reconnects.
      this.listener = undefined;
      this.listenerReady = undefined;
      const all = [...this.channels.values()].flatMap((c) => [...c.watchers]);
      this.channels.clear();
      for (const w of all) w.wake();
      client.end().catch(() => undefined);
    };
    client.on('notification', (msg) => {
      const ch = this.channels.get(msg.channel);
      if (ch === undefined || msg.payload === undefined) return;
      for (const w of [...ch.watchers]) if (w.keys.has(msg.payload)) w.wake();
    });
    client.on('error', lost);
    client.on('end', lost);
    const ready = client.connect().then(
      () => client,
      (e: unknown) => {
        lost();
        throw this.wrap('connecting the LISTEN connection', e);
      },
    );
    this.listenerReady = ready;
    return ready;
  }

  /** Adds `w` to the channel, LISTENing on first use; resolves once the LISTEN is in effect. */
  private async subscribe(channel: string, w: Watcher): Promise<void> {
    let ch = this.channels.get(channel);
    if (ch === undefined) {
      const client = await this.connectListener();
      ch = this.channels.get(channel); // another watcher may have subscribed meanwhile
      if (ch === undefined) {
        // Commands on one connection run in order, so LISTEN/UNLISTEN issued on 0↔1 transitions stay consistent.
        const created: Channel = { watchers: new Set(), listening: Promise.resolve() };
        created.listening = client.query(`LISTEN "${channel}"`).then(
          () => undefined,
          (e: unknown) => {
            // Forget the failed channel so that the next watcher LISTENs afresh.
            if (this.channels.get(channel) === created) this.channels.delete(channel);
            throw this.wrap('LISTEN', e);
          },
        );
        created.listening.catch(() => undefined);
        ch = created;
        this.channels.set(channel, ch);
      }
    }
    ch.watchers.add(w);
    await ch.listening;
  }

  private unsubscribe(channel: string, w: Watcher): void {
    const ch = this.channels.get(channel);
    if (ch === undefined || !ch.watchers.delete(w) || ch.watchers.size > 0) return;
    this.channels.delete(channel);
    this.listener?.query(`UNLISTEN "${channel}"`).catch(() => undefined);
  }

  /** Number of channels the listener connection is LISTENing on (for tests and metrics). */
  get listenedChannels(): number {
    return this.channels.size;
  }

  async watch(name: string, keys: string[], signal: AbortSignal): Promise<void> {
    if (signal.aborted || keys.length === 0) return;
    if (this.closed) throw new LockError('UNAVAILABLE', 'PostgreSQL lock store is closed');
    const channel = this.channelOf(name);
    const wanted = new Set(keys);
    let resolveWoken!: () => void;
    const woken = new Promise<void>((resolve) => (resolveWoken = resolve));
    let done = false;
    const watcher: Watcher = {
      keys: wanted,
      wake: () => {
        done = true;
        resolveWoken();
      },
    };
    const onAbort = (): void => watcher.wake();
    signal.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      // LISTEN first, then check: a removal between the two is either seen by the check or notified.
      try {
        await this.subscribe(channel, watcher);
      } catch (e) {
        // The listener connection broke under the LISTEN: one more try on a fresh connection.
        if (done || this.closed || !(e instanceof LockError) || e.code !== 'UNAVAILABLE') throw e;
        this.unsubscribe(channel, watcher);
        await this.subscribe(channel, watcher);
      }
      while (!done) {
        const res = await this.query<{ remaining_ms: number | null; n: number }>(
          'watch',
          `SELECT (extract(epoch FROM (min(expires_at) - now())) * 1000)::float8 AS remaining_ms, count(*)::int AS n
           FROM ${this.qualified} WHERE lock_name = $1 AND lease_id = ANY($2::text[]) AND expires_at > now()`,
          [name, [...wanted]],
        );
        const { remaining_ms: remaining, n } = res.rows[0];
        if (done || n < wanted.size || remaining === null) return;
        // A lease that just ends sends no NOTIFY: re-check at the earliest watched expiry (a deadline, not a poll;
        // a renewal moves it and the loop re-arms it).
        const deadline = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.min(MAX_TIMER_MS, Math.max(0, remaining) + EXPIRY_MARGIN_MS));
        });
        await Promise.race([woken, deadline]);
        clearTimeout(timer);
        timer = undefined;
      }
    } catch (e) {
      // Woken meanwhile (listener lost, store closed, aborted): the caller re-reads the queue anyway.
      if (done) return;
      throw e;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      this.unsubscribe(channel, watcher);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.channels.values()].flatMap((c) => [...c.watchers]);
    this.channels.clear();
    for (const w of all) w.wake();
    const listener = this.listener;
    await this.listenerReady?.catch(() => undefined);
    this.listener = undefined;
    this.listenerReady = undefined;
    await listener?.end().catch(() => undefined);
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end().catch(() => undefined);
  }
}
