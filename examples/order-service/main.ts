/**
 * The order service of the example (examples/README.md):
 *   npx tsx examples/order-service/main.ts --database-url postgresql://postgres@127.0.0.1:5432/orders --inventory 127.0.0.1:7420
 * HTTP API (--http-port): POST /orders {sku, qty} — one 2PC transaction across this service and the inventory
 * service; POST /orders/async {sku, qty} — the order row and an outbox message in one local transaction;
 * GET /orders/<id>. A 2PC participant for the order branch (gRPC, --participant-port) and the outbox relay.
 * Prints one line `READY {...}` on stdout once everything serves; SIGTERM / SIGINT stop it cleanly.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ParticipantLifecycle } from '@app/participant';
import { UsageError, endpoint, endpoints, logger, port, positiveInt, readFlags, run } from '../shared/config.js';
import { OrderApp, OrderModule } from './order.module.js';

const PROGRAM = 'examples/order-service/main.ts';

run(PROGRAM, async () => {
  const f = readFlags(PROGRAM, {
    'database-url': { env: 'ORDER_DATABASE_URL', help: 'PostgreSQL URL of the orders database' },
    host: { env: 'ORDER_HOST', default: '127.0.0.1', help: 'listen address of every port' },
    'advertise-host': { env: 'ORDER_ADVERTISE_HOST', default: '127.0.0.1', help: 'host the coordinator uses to call this service' },
    'participant-port': { env: 'ORDER_PARTICIPANT_PORT', default: '7410', help: 'gRPC port of the 2PC participant (order branch)' },
    'http-port': { env: 'ORDER_HTTP_PORT', default: '8080', help: 'HTTP port of the API' },
    coordinators: { env: 'SYNOD_TXN_ENDPOINTS', default: '127.0.0.1:2395,127.0.0.1:2495', help: 'coordinator replicas (host:port,...)' },
    inventory: { env: 'ORDER_INVENTORY_PARTICIPANT', default: '127.0.0.1:7420', help: "the inventory service's participant (host:port, as the coordinator reaches it)" },
    'txn-timeout-ms': { env: 'ORDER_TXN_TIMEOUT_MS', default: '10000', help: 'Begin timeout: an unfinished transaction is aborted after this' },
    'commit-wait-ms': { env: 'ORDER_COMMIT_WAIT_MS', default: '20000', help: 'how long POST /orders waits for the outcome' },
    relay: { env: 'ORDER_RELAY', default: 'on', help: 'run the outbox relay in this process: on | off' },
  });
  if (f.relay !== 'on' && f.relay !== 'off') throw new UsageError(`--relay must be on or off, got "${f.relay}"`);
  const log = logger('orders', process.env.EXAMPLE_DEBUG === '1');
  const cfg = {
    databaseUrl: f['database-url'],
    host: f.host,
    advertiseHost: f['advertise-host'],
    participantPort: port('participant-port', f['participant-port']),
    httpPort: port('http-port', f['http-port']),
    coordinators: endpoints('coordinators', f.coordinators),
    inventory: endpoint('inventory', f.inventory),
    txnTimeoutMs: positiveInt('txn-timeout-ms', f['txn-timeout-ms']),
    commitWaitMs: positiveInt('commit-wait-ms', f['commit-wait-ms']),
    relay: f.relay === 'on',
    log,
  };
  const app = await NestFactory.createApplicationContext(OrderModule.forRoot(cfg), { logger: ['error', 'warn'], abortOnError: false });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  const orders = app.get(OrderApp);
  const participantPort = app.get(ParticipantLifecycle, { strict: false }).port;
  const ready = { participant: `${cfg.advertiseHost}:${participantPort}`, http: `http://${cfg.host}:${orders.httpPort}`, relay: cfg.relay };
  log.info(`serving: ${ready.http}, participant ${ready.participant}, relay ${f.relay}; inventory ${cfg.inventory}; coordinators ${cfg.coordinators.join(',')}`);
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
});
