/**
 * The outbox relay: forwards committed `synod_outbox` rows to the coordinator's Publish and marks each one
 * sent only after the coordinator acknowledged it (the message is then durable in the replicated store).
 *
 * - No high-water mark: each round selects every unsent row (ordered by row order), so a row whose transaction
 *   commits late — after rows with higher ids were relayed — is found by the next round and sent too.
 * - One active relay per table: a session advisory lock held on the relay's LISTEN connection (a lease that
 *   PostgreSQL drops when that connection dies). Other relays stand by. One relay keeps per-key order.
 * - Per key (topic + key): rows are published one at a time in row order; a failing row holds back only the
 *   rows behind it with the same key (retried with back-off); different keys go in parallel (bounded).
 * - Woken by NOTIFY (sent by `Outbox.add`, delivered at commit) with a bounded fallback poll.
 * - A crash between the acknowledgment and the UPDATE re-publishes the row later: Publish is idempotent by
 *   message id (duplicate = true), consumers dedupe by message id (InboxConsumer).
 */
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { CoordinatorCallError, CoordinatorConnection } from './coordinator.js';
import { checkTable } from './outbox.js';
import { quietLogger } from './types.js';
import type { OutboxLogger } from './types.js';

export interface RelayedRow {
  id: string;
  topic: string;
  key: string;
  sequence: number;
  duplicate: boolean;
}

export interface OutboxRelayOptions {
  pool: pg.Pool;
  /** host:port of the coordinator replicas. */
  coordinators: string[];
  table?: string;
  /** Rows per round (default 200). */
  batchSize?: number;
  /** Keys published in parallel (default 8). */
  concurrency?: number;
  /** Fallback poll when no NOTIFY arrives (default 1000 ms). */
  pollMs?: number;
  /** Deadline of one Publish, leader-following retries included (default 10000 ms). */
  publishDeadlineMs?: number;
  /** Back-off of a key after a failed publish: base · 2^(n-1) ≤ max (defaults 200 ms, 5000 ms). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  log?: OutboxLogger;
  /** Called after the coordinator acknowledged a row and before the row is marked sent (tracing, fault tests). */
  afterPublish?: (row: RelayedRow) => Promise<void> | void;
}

interface Row {
  seq: string;
  id: string;
  topic: string;
  key: string;
  payload: Buffer;
  headers: Record<string, string>;
  attempts: number;
}

/** Errors that no retry can fix: the row is set aside (failed_at) so its key does not stall forever. */
const PERMANENT = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED]);

export class OutboxRelay {
  readonly table: string;
  private readonly conn: CoordinatorConnection;
  private readonly log: OutboxLogger;
  private ac: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private listener: pg.PoolClient | undefined;
  private wakeFn: (() => void) | undefined;
  private woken = false;
  private readonly notBefore = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  /** Counters for monitoring and tests. */
  readonly stats = { published: 0, duplicates: 0, failed: 0, errors: 0, rounds: 0 };
  leading = false;

  constructor(private readonly opts: OutboxRelayOptions) {
    this.table = checkTable(opts.table ?? 'synod_outbox');
    this.conn = new CoordinatorConnection({ endpoints: opts.coordinators, deadlineMs: opts.publishDeadlineMs ?? 10_000 });
    this.log = opts.log ?? quietLogger;
  }

  start(): void {
    if (this.loop) return;
    this.ac = new AbortController();
    this.loop = this.run(this.ac.signal);
  }

  /** Stops the relay (bounded: an in-flight Publish is abandoned after `timeoutMs`) and releases the lease. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.ac?.abort();
    this.wake();
    let t: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.loop?.catch(() => undefined), new Promise((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
    this.conn.close();
    this.dropListener();
    this.loop = undefined;
  }

  private wake(): void {
    this.woken = true;
    const f = this.wakeFn;
    this.wakeFn = undefined;
    f?.();
  }

  private idle(ms: number, signal: AbortSignal): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        this.woken = false;
        resolve();
      };
      const t = setTimeout(done, Math.max(0, ms));
      signal.addEventListener('abort', done, { once: true });
      this.wakeFn = done;
    });
  }

  private dropListener(): void {
    const l = this.listener;
    this.listener = undefined;
    this.leading = false;
    // destroying the connection ends the session: PostgreSQL drops the advisory lock and the LISTEN
    l?.release(true);
  }

  /** Connects the LISTEN connection and tries to take the relay lease on it. */
  private async lease(): Promise<boolean> {
    if (this.listener && this.leading) return true;
    if (!this.listener) {
      const c = await this.opts.pool.connect();
      c.on('error', (err) => {
        this.log.warn(`outbox relay: LISTEN connection failed: ${err.message}`);
        if (this.listener === c) this.dropListener();
        this.wake();
      });
      c.on('notification', () => this.wake());
      this.listener = c;
      await c.query(`LISTEN ${this.table}`);
    }
    const r = await this.listener.query('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', ['synod-outbox-relay', this.table]);
    this.leading = r.rows[0].ok === true;
    if (this.leading) this.log.info(`outbox relay: active on table ${this.table}`);
    return this.leading;
  }

  private async run(signal: AbortSignal): Promise<void> {
    const pollMs = this.opts.pollMs ?? 1000;
    while (!signal.aborted) {
      let delay = pollMs;
      try {
        if (await this.lease()) {
          const r = await this.round(signal);
          delay = r.full ? 0 : Math.min(pollMs, r.nextDueMs);
        }
      } catch (err) {
        if (signal.aborted) break;
        this.stats.errors++;
        this.log.warn(`outbox relay: ${(err as Error).message}; retrying in ${pollMs} ms`);
        if (this.listener && !(err instanceof CoordinatorCallError)) this.dropListener();
      }
      if (delay > 0) await this.idle(delay, signal);
    }
    if (this.listener && this.leading) await this.listener.query('SELECT pg_advisory_unlock(hashtext($1), hashtext($2))', ['synod-outbox-relay', this.table]).catch(() => undefined);
  }

  /** One round: every unsent row (up to the batch), grouped by key, each group in row order. */
  private async round(signal: AbortSignal): Promise<{ full: boolean; nextDueMs: number }> {
    this.stats.rounds++;
    const batch = this.opts.batchSize ?? 200;
    const res = await this.opts.pool.query<Row>(
      `SELECT seq, id, topic, key, payload, headers, attempts FROM ${this.table} WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT $1`,
      [batch],
    );
    const groups = new Map<string, Row[]>();
    for (const row of res.rows) {
      const g = JSON.stringify([row.topic, row.key]);
      let list = groups.get(g);
      if (!list) groups.set(g, (list = []));
      list.push(row);
    }
    const now = Date.now();
    let nextDueMs = Infinity;
    const ready: [string, Row[]][] = [];
    for (const [g, rows] of groups) {
      const due = this.notBefore.get(g) ?? 0;
      if (due > now) nextDueMs = Math.min(nextDueMs, due - now);
      else ready.push([g, rows]);
    }
    const limit = Math.max(1, this.opts.concurrency ?? 8);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ready.length && !signal.aborted) {
        const [g, rows] = ready[next++];
        await this.sendGroup(g, rows, signal);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, ready.length) }, worker));
    for (const [g] of ready) {
      const due = this.notBefore.get(g);
      if (due !== undefined) nextDueMs = Math.min(nextDueMs, Math.max(0, due - Date.now()));
    }
    return { full: res.rows.length === batch, nextDueMs };
  }

  private async sendGroup(g: string, rows: Row[], signal: AbortSignal): Promise<void> {
    for (const row of rows) {
      if (signal.aborted || !this.leading) return;
      try {
        const r = await this.conn.call('Publish', { messageId: row.id, topic: row.topic, key: row.key, payload: row.payload, headers: row.headers ?? {} });
        const relayed: RelayedRow = { id: row.id, topic: row.topic, key: row.key, sequence: Number(r.sequence), duplicate: Boolean(r.duplicate) };
        await this.opts.afterPublish?.(relayed);
        if (signal.aborted) return;
        await this.opts.pool.query(`UPDATE ${this.table} SET sent_at = now(), sequence = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1 AND sent_at IS NULL`, [row.id, relayed.sequence]);
        if (relayed.duplicate) this.stats.duplicates++;
        else this.stats.published++;
        this.notBefore.delete(g);
        this.failures.delete(g);
      } catch (err) {
        if (signal.aborted) return;
        const msg = err instanceof Error ? err.message : String(err);
        if (err instanceof CoordinatorCallError && PERMANENT.has(err.code)) {
          // the coordinator will never take this row: set it aside (visible as failed_at/last_error) and go on
          this.stats.failed++;
          this.log.error(`outbox relay: message ${row.id} (topic ${row.topic}, key ${row.key}) rejected: ${msg}; set aside`);
          await this.opts.pool.query(`UPDATE ${this.table} SET failed_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1`, [row.id, msg.slice(0, 2000)]);
          continue;
        }
        this.stats.errors++;
        const n = (this.failures.get(g) ?? 0) + 1;
        this.failures.set(g, n);
        const backoff = Math.min(this.opts.retryMaxMs ?? 5000, (this.opts.retryBaseMs ?? 200) * 2 ** Math.min(n - 1, 20));
        this.notBefore.set(g, Date.now() + backoff);
        this.log.warn(`outbox relay: publish of ${row.id} failed (${msg}); key retried in ${backoff} ms`);
        await this.opts.pool.query(`UPDATE ${this.table} SET attempts = attempts + 1, last_error = $2 WHERE id = $1`, [row.id, msg.slice(0, 2000)]).catch(() => undefined);
        return; // the rows behind it (same key) wait
      }
    }
  }
}

