/**
 * The business side of the local message table (outbox) pattern: a service writes its own rows and a message
 * row into `synod_outbox` in ONE local PostgreSQL transaction (`Outbox.add` inside the business transaction),
 * so the message exists if and only if the business change committed. The OutboxRelay forwards committed rows
 * to the coordinator. docs/outbox.md.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';

export interface OutboxMessage {
  /** 1..128 characters of [A-Za-z0-9._:-]. */
  topic: string;
  /** Messages with the same key (within the topic) are delivered in order; default '' (one key). */
  key?: string;
  payload: Buffer | Uint8Array | string;
  headers?: Record<string, string>;
}

export interface OutboxOptions {
  /** Table name (default `synod_outbox`); also the LISTEN/NOTIFY channel. */
  table?: string;
  /** Largest payload accepted by `add` (default 256 KiB, the coordinator's limit). */
  maxPayloadBytes?: number;
}

const IDENT_RE = /^[a-z_][a-z0-9_]{0,62}$/;
export const TOPIC_RE = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_PAYLOAD_BYTES = 256 * 1024;

export function checkTable(name: string): string {
  if (!IDENT_RE.test(name)) throw new Error(`table name "${name}" must match ${IDENT_RE} (lower-case SQL identifier)`);
  return name;
}

export function outboxSchema(table: string): string {
  checkTable(table);
  return `
CREATE TABLE IF NOT EXISTS ${table} (
  seq         bigserial PRIMARY KEY,
  id          uuid NOT NULL UNIQUE,
  topic       text NOT NULL,
  key         text NOT NULL DEFAULT '',
  payload     bytea NOT NULL,
  headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  sent_at     timestamptz,
  sequence    bigint,
  failed_at   timestamptz,
  attempts    integer NOT NULL DEFAULT 0,
  last_error  text
);
CREATE INDEX IF NOT EXISTS ${table}_pending ON ${table} (seq) WHERE sent_at IS NULL AND failed_at IS NULL;`;
}

/** Runs DDL once at a time across processes (CREATE ... IF NOT EXISTS races otherwise). */
export async function runSchema(pool: pg.Pool, lockName: string, sql: string): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockName]);
    await c.query(sql);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export class Outbox {
  readonly table: string;
  private readonly maxPayloadBytes: number;

  constructor(
    private readonly pool: pg.Pool,
    opts: OutboxOptions = {},
  ) {
    this.table = checkTable(opts.table ?? 'synod_outbox');
    this.maxPayloadBytes = opts.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  }

  async ensureSchema(): Promise<void> {
    await runSchema(this.pool, `synod-outbox-schema:${this.table}`, outboxSchema(this.table));
  }

  /**
   * Adds a message inside the caller's transaction (`client` must be in BEGIN ... COMMIT with the business
   * writes). Returns the message id (a UUID). The relay is woken by a NOTIFY delivered at commit.
   */
  async add(client: pg.PoolClient | pg.Client, m: OutboxMessage): Promise<string> {
    if (!m || typeof m !== 'object') throw new TypeError('outbox: a message {topic, key, payload} is required');
    if (typeof m.topic !== 'string' || !TOPIC_RE.test(m.topic)) throw new TypeError(`outbox: topic "${String(m.topic).slice(0, 140)}" must be 1..128 characters of [A-Za-z0-9._:-]`);
    const key = m.key ?? '';
    if (typeof key !== 'string' || key.length > 256) throw new TypeError('outbox: key must be a string of at most 256 characters');
    const payload = typeof m.payload === 'string' ? Buffer.from(m.payload, 'utf8') : Buffer.from(m.payload ?? []);
    if (payload.length > this.maxPayloadBytes) throw new RangeError(`outbox: payload is ${payload.length} bytes; the limit is ${this.maxPayloadBytes}`);
    const headers = m.headers ?? {};
    for (const [k, v] of Object.entries(headers)) if (typeof v !== 'string') throw new TypeError(`outbox: header "${k}" must be a string`);
    const id = randomUUID();
    await client.query(`INSERT INTO ${this.table} (id, topic, key, payload, headers) VALUES ($1, $2, $3, $4, $5)`, [id, m.topic, key, payload, JSON.stringify(headers)]);
    await client.query('SELECT pg_notify($1, $2)', [this.table, m.topic]);
    return id;
  }

  /** Deletes rows sent more than `olderThanMs` ago; returns how many. */
  async purgeSent(olderThanMs: number): Promise<number> {
    const r = await this.pool.query(`DELETE FROM ${this.table} WHERE sent_at IS NOT NULL AND sent_at < now() - ($1::double precision * interval '1 millisecond')`, [olderThanMs]);
    return r.rowCount ?? 0;
  }

  /** Rows not sent yet (not failed), oldest first (monitoring, tests). */
  async pending(limit = 1000): Promise<{ id: string; topic: string; key: string; attempts: number; lastError: string | null }[]> {
    const r = await this.pool.query(`SELECT id, topic, key, attempts, last_error FROM ${this.table} WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT $1`, [limit]);
    return r.rows.map((x) => ({ id: x.id, topic: x.topic, key: x.key, attempts: x.attempts, lastError: x.last_error }));
  }
}
