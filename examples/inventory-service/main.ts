/**
 * The inventory service of the example (examples/README.md):
 *   npx tsx examples/inventory-service/main.ts --database-url postgresql://postgres@127.0.0.1:5432/inventory --seed widget=10,gadget=1
 * A 2PC participant (gRPC, --participant-port) that decrements stock inside a prepared transaction, an outbox
 * consumer (gRPC, --consumer-port, subscribed to topic `orders`) that decrements it once per message, and a
 * read-only HTTP API (--http-port: GET /stock, /stock/<sku>, /reservations/<order id>).
 * Prints one line `READY {...ports}` on stdout once everything serves; SIGTERM / SIGINT stop it cleanly.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ParticipantLifecycle } from '@app/participant';
import { endpoints, logger, port, readFlags, run } from '../shared/config.js';
import { parseSeed } from './inventory.js';
import { InventoryApp, InventoryModule } from './inventory.module.js';

const PROGRAM = 'examples/inventory-service/main.ts';

run(PROGRAM, async () => {
  const f = readFlags(PROGRAM, {
    'database-url': { env: 'INVENTORY_DATABASE_URL', help: 'PostgreSQL URL of the inventory database' },
    host: { env: 'INVENTORY_HOST', default: '127.0.0.1', help: 'listen address of every port' },
    'advertise-host': { env: 'INVENTORY_ADVERTISE_HOST', default: '127.0.0.1', help: 'host the coordinator uses to call this service' },
    'participant-port': { env: 'INVENTORY_PARTICIPANT_PORT', default: '7420', help: 'gRPC port of the 2PC participant' },
    'consumer-port': { env: 'INVENTORY_CONSUMER_PORT', default: '7421', help: 'gRPC port of the outbox consumer' },
    'http-port': { env: 'INVENTORY_HTTP_PORT', default: '8081', help: 'HTTP port of the read-only API' },
    coordinators: { env: 'SYNOD_TXN_ENDPOINTS', default: '127.0.0.1:2395,127.0.0.1:2495', help: 'coordinator replicas (host:port,...)' },
    seed: { env: 'INVENTORY_SEED', optional: true, help: 'initial stock for skus not in the table yet, e.g. widget=10,gadget=1' },
  });
  const log = logger('inventory', process.env.EXAMPLE_DEBUG === '1');
  const cfg = {
    databaseUrl: f['database-url'],
    host: f.host,
    advertiseHost: f['advertise-host'],
    participantPort: port('participant-port', f['participant-port']),
    consumerPort: port('consumer-port', f['consumer-port']),
    httpPort: port('http-port', f['http-port']),
    coordinators: endpoints('coordinators', f.coordinators),
    seed: parseSeed(f.seed),
    log,
  };
  const app = await NestFactory.createApplicationContext(InventoryModule.forRoot(cfg), { logger: ['error', 'warn'], abortOnError: false });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  const inv = app.get(InventoryApp);
  const participantPort = app.get(ParticipantLifecycle, { strict: false }).port;
  const ready = { participant: `${cfg.advertiseHost}:${participantPort}`, consumer: `${cfg.advertiseHost}:${inv.consumerPort}`, http: `http://${cfg.host}:${inv.httpPort}` };
  log.info(`serving: participant ${ready.participant}, consumer ${ready.consumer} (topic orders), ${ready.http}; coordinators ${cfg.coordinators.join(',')}`);
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
});
