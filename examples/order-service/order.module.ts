/**
 * The order service as a Nest application context (factory providers with explicit inject lists, plain
 * servers): ParticipantModule serves synod.txn.v1.Participant for the order branch; OrderApp runs the HTTP API
 * (POST /orders, POST /orders/async, GET /orders/<id>) and the OutboxRelay of the `synod_outbox` table.
 */
import { BeforeApplicationShutdown, DynamicModule, Module, OnApplicationBootstrap, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import pg from 'pg';
import { TxnClient } from '@app/client';
import { Outbox, OutboxRelay } from '@app/outbox';
import { ParticipantLifecycle, ParticipantModule } from '@app/participant';
import { HttpError, JsonServer, jsonBody } from '../shared/http.js';
import type { Logger } from '../shared/config.js';
import { parseOrderInput } from '../shared/order.js';
import { OrderDeps, ensureSchema, orderBranch, placeAsync, placeTwoPhase } from './orders.js';

export interface OrderConfig {
  databaseUrl: string;
  host: string;
  /** The host the coordinator uses to reach this process's participant. */
  advertiseHost: string;
  participantPort: number;
  httpPort: number;
  coordinators: string[];
  /** host:port of the inventory service's participant. */
  inventory: string;
  txnTimeoutMs: number;
  commitWaitMs: number;
  /** Run the OutboxRelay in this process (`--relay off` for a replica that only serves; relays take a lease anyway). */
  relay: boolean;
  log: Logger;
}

export const CONFIG = Symbol('ORDER_CONFIG');
export const POOL = Symbol('ORDER_POOL');

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class OrderApp implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  readonly txn: TxnClient;
  readonly outbox: Outbox;
  readonly relay: OutboxRelay;
  readonly http: JsonServer;
  httpPort = 0;

  constructor(
    private readonly cfg: OrderConfig,
    private readonly pool: pg.Pool,
    private readonly participant: ParticipantLifecycle,
  ) {
    this.txn = new TxnClient({ endpoints: cfg.coordinators });
    this.outbox = new Outbox(pool);
    this.relay = new OutboxRelay({ pool, coordinators: cfg.coordinators, log: cfg.log });
    this.http = new JsonServer((m) => cfg.log.error(m))
      .route('GET', /^\/healthz$/, async () => ({ status: 200, body: { ok: true } }))
      .route('POST', /^\/orders$/, async (req) => {
        const { sku, qty } = parseOrderInput(await jsonBody(req));
        return placeTwoPhase(this.deps(), sku, qty);
      })
      .route('POST', /^\/orders\/async$/, async (req) => {
        const { sku, qty } = parseOrderInput(await jsonBody(req));
        return placeAsync(this.deps(), sku, qty);
      })
      .route('GET', /^\/orders\/([^/]+)$/, async (_req, [id]) => {
        if (!UUID_RE.test(id)) throw new HttpError(400, `order id must be a UUID, got "${id}"`);
        const r = await pool.query('SELECT id, sku, qty, mode, global_id, message_id, created_at FROM orders WHERE id = $1', [id]);
        if (r.rowCount === 0) throw new HttpError(404, `no order ${id}`);
        return { status: 200, body: r.rows[0] };
      });
  }

  private deps(): OrderDeps {
    const c = this.cfg;
    return { pool: this.pool, txn: this.txn, outbox: this.outbox, self: `${c.advertiseHost}:${this.participant.port}`, inventory: c.inventory, txnTimeoutMs: c.txnTimeoutMs, commitWaitMs: c.commitWaitMs, log: c.log };
  }

  async onModuleInit(): Promise<void> {
    await ensureSchema(this.pool);
    await this.outbox.ensureSchema();
  }

  async onApplicationBootstrap(): Promise<void> {
    if (this.cfg.relay) this.relay.start();
    this.httpPort = await this.http.listen(this.cfg.host, this.cfg.httpPort);
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.http.close();
    await this.relay.stop(5000);
  }

  async onApplicationShutdown(): Promise<void> {
    this.txn.close();
    await this.pool.end();
  }
}

@Module({})
export class OrderModule {
  static forRoot(cfg: OrderConfig): DynamicModule {
    const pool = new pg.Pool({ connectionString: cfg.databaseUrl, max: 10 });
    pool.on('error', (err) => cfg.log.warn(`idle PostgreSQL connection failed: ${err.message}`));
    return {
      module: OrderModule,
      imports: [
        ParticipantModule.forRoot({
          pool,
          name: 'orders',
          work: orderBranch,
          coordinator: cfg.coordinators,
          host: cfg.host,
          port: cfg.participantPort,
          logger: cfg.log,
        }),
      ],
      providers: [
        { provide: CONFIG, useValue: cfg },
        { provide: POOL, useValue: pool },
        { provide: OrderApp, useFactory: (c: OrderConfig, p: pg.Pool, l: ParticipantLifecycle) => new OrderApp(c, p, l), inject: [CONFIG, POOL, ParticipantLifecycle] },
      ],
    };
  }
}
