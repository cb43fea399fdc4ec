/**
 * The consuming side: a `synod.txn.v1.Consumer` gRPC service that applies each delivered message exactly once
 * in effect. Deliver runs the user's handler and an INSERT into the inbox table (message id primary key) in
 * ONE local PostgreSQL transaction: the inbox row is inserted first, so a concurrent or later redelivery of the
 * same message id waits on (or hits) the primary key and is acknowledged without running the handler again.
 * A handler error rolls both back and answers a gRPC error: the coordinator redelivers later.
 */
import * as grpc from '@grpc/grpc-js';
import type pg from 'pg';
import { loadTxnProto } from '@app/proto';
import { CoordinatorConnection } from './coordinator.js';
import type { Msg } from './coordinator.js';
import { TOPIC_RE, checkTable, runSchema } from './outbox.js';
import { quietLogger } from './types.js';
import type { OutboxLogger } from './types.js';

export interface InboxMessage {
  messageId: string;
  topic: string;
  key: string;
  payload: Buffer;
  headers: Record<string, string>;
  /** The coordinator's per-topic sequence. */
  sequence: number;
  /** 1 for the first delivery by the current coordinator leader, then 2, 3, ... */
  attempt: number;
}

/** Applies one message with `client`, inside the transaction that also records it in the inbox. */
export type InboxHandler = (client: pg.PoolClient, message: InboxMessage) => Promise<void>;

export interface InboxConsumerOptions {
  pool: pg.Pool;
  /** Consumer name (one delivery stream per topic and name): 1..128 characters of [A-Za-z0-9._:-]. */
  name: string;
  topics: string[];
  handler: InboxHandler;
  /** host:port of the coordinator replicas (needed for `subscribe`). */
  coordinators?: string[];
  /** Inbox table (default `synod_inbox`); one table per consumer name when several share a database. */
  table?: string;
  log?: OutboxLogger;
}

export function inboxSchema(table: string): string {
  checkTable(table);
  return `
CREATE TABLE IF NOT EXISTS ${table} (
  message_id   text PRIMARY KEY,
  topic        text NOT NULL,
  key          text NOT NULL,
  sequence     bigint NOT NULL,
  consumer     text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
);`;
}

export class InboxConsumer {
  readonly table: string;
  readonly stats = { applied: 0, duplicates: 0, failed: 0 };
  private server: grpc.Server | undefined;
  private conn: CoordinatorConnection | undefined;
  private readonly log: OutboxLogger;
  port = 0;
  host = '127.0.0.1';

  constructor(private readonly opts: InboxConsumerOptions) {
    if (typeof opts.name !== 'string' || !TOPIC_RE.test(opts.name)) throw new TypeError(`consumer name "${String(opts.name)}" must be 1..128 characters of [A-Za-z0-9._:-]`);
    for (const t of opts.topics ?? []) if (typeof t !== 'string' || !TOPIC_RE.test(t)) throw new TypeError(`topic "${String(t)}" must be 1..128 characters of [A-Za-z0-9._:-]`);
    if (typeof opts.handler !== 'function') throw new TypeError('a handler(client, message) is required');
    this.table = checkTable(opts.table ?? 'synod_inbox');
    this.log = opts.log ?? quietLogger;
  }

  async ensureSchema(): Promise<void> {
    await runSchema(this.opts.pool, `synod-inbox-schema:${this.table}`, inboxSchema(this.table));
  }

  /** The gRPC handlers (to add the Consumer service to a server of your own). */
  implementation(): grpc.UntypedServiceImplementation {
    return {
      Deliver: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
        this.deliver(call.request).then(
          () => cb(null, {}),
          (err: unknown) => cb({ code: err instanceof BadDelivery ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL, details: `consumer ${this.opts.name}: ${(err as Error).message}` } as grpc.ServiceError),
        );
      },
    };
  }

  /** Applies one delivery (exactly once per message id). Exposed for tests and custom transports. */
  async deliver(r: Msg): Promise<'applied' | 'duplicate'> {
    if (typeof r.messageId !== 'string' || r.messageId === '') throw new BadDelivery('message_id is required');
    if (typeof r.topic !== 'string' || r.topic === '') throw new BadDelivery('topic is required');
    const m: InboxMessage = {
      messageId: r.messageId,
      topic: r.topic,
      key: r.key ?? '',
      payload: Buffer.from(r.payload ?? []),
      headers: r.headers ?? {},
      sequence: Number(r.sequence ?? 0),
      attempt: Number(r.attempt ?? 0),
    };
    const c = await this.opts.pool.connect();
    let broken = false;
    try {
      await c.query('BEGIN');
      const ins = await c.query(`INSERT INTO ${this.table} (message_id, topic, key, sequence, consumer) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING`, [m.messageId, m.topic, m.key, m.sequence, this.opts.name]);
      if (ins.rowCount === 0) {
        await c.query('ROLLBACK');
        this.stats.duplicates++;
        return 'duplicate';
      }
      await this.opts.handler(c, m);
      await c.query('COMMIT');
      this.stats.applied++;
      return 'applied';
    } catch (err) {
      this.stats.failed++;
      await c.query('ROLLBACK').catch(() => {
        broken = true;
      });
      this.log.debug(`consumer ${this.opts.name}: message ${m.messageId} (attempt ${m.attempt}) failed: ${(err as Error).message}`);
      throw err;
    } finally {
      c.release(broken);
    }
  }

  /** Serves the Consumer gRPC service; resolves with the bound port. */
  async listen(host = '127.0.0.1', port = 0): Promise<number> {
    if (this.server) throw new Error('already listening');
    const server = new grpc.Server();
    server.addService(loadTxnProto().Consumer.service, this.implementation());
    const h = host.includes(':') ? `[${host}]` : host;
    this.port = await new Promise<number>((res, rej) => server.bindAsync(`${h}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(new Error(`cannot listen on ${h}:${port}: ${err.message}`)) : res(p))));
    this.host = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    this.server = server;
    return this.port;
  }

  /** Registers this consumer for each topic with the coordinator (idempotent). `address` defaults to host:port of `listen`. */
  async subscribe(address = `${this.host}:${this.port}`, deadlineMs = 15_000): Promise<void> {
    if (!this.opts.coordinators?.length) throw new Error('subscribe needs the coordinator endpoints (options.coordinators)');
    if (!this.server && address.endsWith(':0')) throw new Error('call listen() first, or pass the address the coordinator should call');
    this.conn ??= new CoordinatorConnection({ endpoints: this.opts.coordinators });
    for (const topic of this.opts.topics) await this.conn.call('Subscribe', { topic, consumer: this.opts.name, address }, deadlineMs);
  }

  /** Stops serving (bounded) and closes the coordinator connection. */
  async close(timeoutMs = 3000): Promise<void> {
    this.conn?.close();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.forceShutdown();
        resolve();
      }, timeoutMs);
      s.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

class BadDelivery extends Error {
  override readonly name = 'BadDelivery';
}
