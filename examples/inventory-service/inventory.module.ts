/**
 * The inventory service as a Nest application context (the repository's pattern: factory providers with
 * explicit inject lists, plain grpc-js servers): ParticipantModule serves synod.txn.v1.Participant (2PC
 * branches), InventoryApp runs the outbox consumer (synod.txn.v1.Consumer, subscribed to topic `orders`) and
 * a read-only HTTP API.
 */
import { BeforeApplicationShutdown, DynamicModule, Module, OnApplicationBootstrap, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import pg from 'pg';
import { InboxConsumer } from '@app/outbox';
import { ParticipantModule } from '@app/participant';
import { HttpError, JsonServer } from '../shared/http.js';
import type { Logger } from '../shared/config.js';
import { applyOrderMessage, ensureSchema, reserveBranch, seed } from './inventory.js';

export interface InventoryConfig {
  databaseUrl: string;
  host: string;
  /** The host the coordinator uses to reach this process (participant and consumer addresses). */
  advertiseHost: string;
  participantPort: number;
  consumerPort: number;
  httpPort: number;
  coordinators: string[];
  seed: [string, number][];
  log: Logger;
}

export const CONFIG = Symbol('INVENTORY_CONFIG');
export const POOL = Symbol('INVENTORY_POOL');

export class InventoryApp implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  readonly consumer: InboxConsumer;
  readonly http: JsonServer;
  consumerPort = 0;
  httpPort = 0;

  constructor(
    private readonly cfg: InventoryConfig,
    private readonly pool: pg.Pool,
  ) {
    const log = cfg.log;
    this.consumer = new InboxConsumer({
      pool,
      name: 'inventory',
      topics: ['orders'],
      coordinators: cfg.coordinators,
      log,
      handler: async (client, m) => {
        const outcome = await applyOrderMessage(client, m);
        log.info(`message ${m.messageId} (orders #${m.sequence}, attempt ${m.attempt}): ${outcome}`);
      },
    });
    this.http = new JsonServer((m) => log.error(m))
      .route('GET', /^\/healthz$/, async () => ({ status: 200, body: { ok: true } }))
      .route('GET', /^\/stock$/, async () => ({ status: 200, body: (await pool.query('SELECT sku, stock FROM stock ORDER BY sku')).rows }))
      .route('GET', /^\/stock\/([^/]+)$/, async (_req, [sku]) => {
        const r = await pool.query('SELECT sku, stock FROM stock WHERE sku = $1', [sku]);
        if (r.rowCount === 0) throw new HttpError(404, `unknown sku ${sku}`);
        return { status: 200, body: r.rows[0] };
      })
      .route('GET', /^\/reservations\/([^/]+)$/, async (_req, [orderId]) => {
        const r = await pool.query('SELECT order_id, sku, qty, status, via, message_id, reason, created_at FROM reservations WHERE order_id = $1', [orderId]);
        if (r.rowCount === 0) throw new HttpError(404, `no reservation for order ${orderId}`);
        return { status: 200, body: r.rows[0] };
      });
  }

  /** Before any bootstrap hook (so before the participant serves Prepare): tables and seed stock. */
  async onModuleInit(): Promise<void> {
    await ensureSchema(this.pool);
    await seed(this.pool, this.cfg.seed);
    await this.consumer.ensureSchema();
  }

  async onApplicationBootstrap(): Promise<void> {
    this.consumerPort = await this.consumer.listen(this.cfg.host, this.cfg.consumerPort);
    // idempotent; needs a coordinator leader: retried within its deadline (the coordinators may still be starting)
    await this.consumer.subscribe(`${this.cfg.advertiseHost}:${this.consumerPort}`, 30_000);
    this.httpPort = await this.http.listen(this.cfg.host, this.cfg.httpPort);
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.http.close();
    await this.consumer.close();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.pool.end();
  }
}

@Module({})
export class InventoryModule {
  static forRoot(cfg: InventoryConfig): DynamicModule {
    const pool = new pg.Pool({ connectionString: cfg.databaseUrl, max: 10 });
    pool.on('error', (err) => cfg.log.warn(`idle PostgreSQL connection failed: ${err.message}`));
    return {
      module: InventoryModule,
      imports: [
        ParticipantModule.forRoot({
          pool,
          name: 'inventory',
          work: reserveBranch,
          coordinator: cfg.coordinators,
          host: cfg.host,
          port: cfg.participantPort,
          logger: cfg.log,
        }),
      ],
      providers: [
        { provide: CONFIG, useValue: cfg },
        { provide: POOL, useValue: pool },
        { provide: InventoryApp, useFactory: (c: InventoryConfig, p: pg.Pool) => new InventoryApp(c, p), inject: [CONFIG, POOL] },
      ],
    };
  }
}
