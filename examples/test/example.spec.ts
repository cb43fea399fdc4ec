/**
 * The example end to end, as users run it: a 3-member consensus cluster (the decision log), two coordinator
 * replicas (apps/txn, with the outbox message broker), one real PostgreSQL 15 with the databases `orders` and
 * `inventory`, and the order and inventory services as child processes. Every wait is bounded; every process
 * started here is stopped by pid.
 */
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { TxnClient } from '@app/client';
import { loadTxnProto } from '@app/proto';
import { PostgresServer } from '../../libs/testing/src/servers/postgres.js';
import { ProcessCluster, freePort, sleep, waitFor } from '../../apps/consensus/test/harness.js';
import { ServiceProcess, TXN_MAIN } from '../../apps/lock/test/harness.js';
import { ExampleService, http } from './harness.js';

import { jest } from '@jest/globals';

jest.setTimeout(120_000);

const cluster = new ProcessCluster([1, 2, 3]);
let server: PostgresServer;
let coordinators: ServiceProcess[] = [];
let orders: ExampleService;
let inventory: ExampleService;
let ordersDb: pg.Pool;
let inventoryDb: pg.Pool;
let txn: TxnClient;
let api = '';
let consumerAddress = '';

beforeAll(async () => {
  [server] = await Promise.all([PostgresServer.start(), cluster.start()]);
  await cluster.waitLeader(undefined, 30_000);
  const consensus = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`).join(',');
  const admin = new pg.Client({ connectionString: server.connectionString });
  await admin.connect();
  await admin.query('CREATE DATABASE orders');
  await admin.query('CREATE DATABASE inventory');
  await admin.end();
  ordersDb = new pg.Pool({ connectionString: server.connectionStringFor('orders'), max: 4 });
  inventoryDb = new pg.Pool({ connectionString: server.connectionStringFor('inventory'), max: 4 });
  for (const pool of [ordersDb, inventoryDb]) pool.on('error', () => undefined); // idle connections closed at shutdown

  coordinators = [0, 1].map(() => new ServiceProcess(['--consensus-endpoints', consensus, '--session-timeout-ms', '1500', '--prepare-timeout-ms', '3000'], TXN_MAIN));
  for (const c of coordinators) await c.start();
  const endpoints = coordinators.map((c) => c.endpoint).join(',');
  txn = new TxnClient({ endpoints: coordinators.map((c) => c.endpoint) });

  const [invPart, invConsumer, invHttp, ordPart, ordHttp] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  inventory = new ExampleService('inventory', 'examples/inventory-service/main.ts', [
    '--database-url', server.connectionStringFor('inventory'),
    '--participant-port', String(invPart), '--consumer-port', String(invConsumer), '--http-port', String(invHttp),
    '--coordinators', endpoints,
    '--seed', 'widget=10,gadget=1,gizmo=5',
  ]);
  orders = new ExampleService('orders', 'examples/order-service/main.ts', [
    '--database-url', server.connectionStringFor('orders'),
    '--participant-port', String(ordPart), '--http-port', String(ordHttp),
    '--coordinators', endpoints,
    '--inventory', `127.0.0.1:${invPart}`,
  ]);
  await inventory.start();
  await orders.start();
  api = `http://127.0.0.1:${ordHttp}`;
  consumerAddress = `127.0.0.1:${invConsumer}`;
}, 240_000);

afterAll(async () => {
  await orders?.stop().catch(() => undefined);
  await inventory?.stop().catch(() => undefined);
  txn?.close();
  await ordersDb?.end().catch(() => undefined);
  await inventoryDb?.end().catch(() => undefined);
  for (const c of coordinators) await c.stop().catch(() => undefined);
  await Promise.allSettled([server?.stop(), cluster.stopAll()]);
}, 120_000);

const stockOf = async (sku: string): Promise<number> => (await inventoryDb.query<{ stock: number }>('SELECT stock FROM stock WHERE sku = $1', [sku])).rows[0].stock;
const count = async (pool: pg.Pool, sql: string, args: unknown[] = []): Promise<number> => (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, args)).rows[0].n;
// pg_prepared_xacts is server-wide: both databases' prepared transactions
const prepared = (): Promise<number> => count(ordersDb, 'pg_prepared_xacts');
const publishedTotal = async (): Promise<number> => {
  let n = 0;
  for (const c of coordinators) n += await c.metric('synod_txn_messages_published_total');
  return n;
};

describe('example: order service + inventory service (real processes)', () => {
  it('POST /orders commits one global transaction in both databases', async () => {
    const r = await http('POST', `${api}/orders`, { sku: 'widget', qty: 3 });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ sku: 'widget', qty: 3, state: 'COMMITTED', completed: true });
    const { orderId, globalId } = r.body as { orderId: string; globalId: string };
    const row = await ordersDb.query('SELECT sku, qty, mode, global_id FROM orders WHERE id = $1', [orderId]);
    expect(row.rows).toEqual([{ sku: 'widget', qty: 3, mode: '2pc', global_id: globalId }]);
    expect(await stockOf('widget')).toBe(7);
    expect((await inventoryDb.query('SELECT status, via FROM reservations WHERE order_id = $1', [orderId])).rows).toEqual([{ status: 'reserved', via: '2pc' }]);
    expect(await prepared()).toBe(0);
    const s = await txn.status(globalId);
    expect(s.state).toBe('COMMITTED');
    expect(s.branches.map((b) => [b.branchId, b.vote, b.outcome])).toEqual([
      ['order', 'YES', 'COMMITTED'],
      ['stock', 'YES', 'COMMITTED'],
    ]);
    expect((await http('GET', `${api}/orders/${orderId}`)).body).toMatchObject({ id: orderId, mode: '2pc' });
  });

  it('an out-of-stock order: the inventory branch votes no, everything aborts (409), nothing changes', async () => {
    const ordersBefore = await count(ordersDb, 'orders');
    const r = await http('POST', `${api}/orders`, { sku: 'gadget', qty: 2 });
    expect(r.status).toBe(409);
    expect(r.body.error).toMatch(/stock voted NO: out of stock: gadget has 1, the order needs 2/);
    expect(r.body.state).toBe('ABORTED');
    expect(await stockOf('gadget')).toBe(1);
    expect(await count(ordersDb, 'orders WHERE id = $1', [r.body.orderId])).toBe(0);
    expect(await count(ordersDb, 'orders')).toBe(ordersBefore);
    expect(await count(inventoryDb, 'reservations WHERE order_id = $1', [r.body.orderId])).toBe(0);
    await waitFor('no prepared transaction left', async () => (await prepared()) === 0, 15_000);
    const s = await txn.status(r.body.globalId as string);
    expect(s.branches.find((b) => b.branchId === 'stock')!.vote).toBe('NO');
    // an unknown sku aborts the same way
    const u = await http('POST', `${api}/orders`, { sku: 'nothing-here', qty: 1 });
    expect(u.status).toBe(409);
    expect(u.body.error).toMatch(/unknown sku nothing-here/);
    expect(await count(ordersDb, 'orders')).toBe(ordersBefore);
  });

  it('POST /orders/async is applied exactly once, across relay restarts and a republish', async () => {
    const before = await stockOf('gizmo');
    const r = await http('POST', `${api}/orders/async`, { sku: 'gizmo', qty: 2 });
    expect(r.status).toBe(202);
    const { orderId, messageId } = r.body as { orderId: string; messageId: string };
    // the relay dies at once (it may or may not have published), a new one takes over
    await orders.kill('SIGKILL');
    await orders.start();
    const reservation = await waitFor('the reservation', async () => (await inventoryDb.query('SELECT status, via, message_id FROM reservations WHERE order_id = $1', [orderId])).rows[0], 30_000);
    expect(reservation).toEqual({ status: 'reserved', via: 'outbox', message_id: messageId });
    expect(await stockOf('gizmo')).toBe(before - 2);
    await waitFor('the outbox row marked sent', async () => (await count(ordersDb, 'synod_outbox WHERE id = $1 AND sent_at IS NOT NULL', [messageId])) === 1, 15_000);

    // a relay that died after Publish but before marking the row sent: the next relay publishes it again
    await orders.kill('SIGKILL');
    await ordersDb.query('UPDATE synod_outbox SET sent_at = NULL, sequence = NULL WHERE id = $1', [messageId]);
    const published = await publishedTotal();
    await orders.start();
    await waitFor('the row republished and marked sent', async () => (await count(ordersDb, 'synod_outbox WHERE id = $1 AND sent_at IS NOT NULL', [messageId])) === 1, 15_000);
    expect(await publishedTotal()).toBe(published); // the coordinator answered "duplicate": stored once

    // and a redelivery of the same message id straight to the consumer: acknowledged, no effect
    const Consumer = loadTxnProto().Consumer;
    const consumer = new Consumer(consumerAddress, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Deliver: (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void };
    try {
      await new Promise<void>((res, rej) =>
        consumer.Deliver({ messageId, topic: 'orders', key: 'gizmo', payload: Buffer.from(JSON.stringify({ orderId, sku: 'gizmo', qty: 2 })), headers: {}, sequence: 1, attempt: 9 }, { deadline: Date.now() + 10_000 }, (e) => (e ? rej(e) : res())),
      );
    } finally {
      consumer.close();
    }
    await sleep(1000); // room for any stray delivery to land
    expect(await stockOf('gizmo')).toBe(before - 2);
    expect(await count(inventoryDb, 'synod_inbox WHERE message_id = $1', [messageId])).toBe(1);
    expect(await count(inventoryDb, 'reservations WHERE order_id = $1', [orderId])).toBe(1);
    expect(await count(ordersDb, 'orders WHERE id = $1', [orderId])).toBe(1);
  });

  it('an async order that cannot be honoured becomes a rejected reservation (acknowledged, not retried forever)', async () => {
    const r = await http('POST', `${api}/orders/async`, { sku: 'gadget', qty: 5 });
    expect(r.status).toBe(202);
    const { orderId, messageId } = r.body as { orderId: string; messageId: string };
    const reservation = await waitFor('the rejected reservation', async () => (await inventoryDb.query('SELECT status, reason FROM reservations WHERE order_id = $1', [orderId])).rows[0], 30_000);
    expect(reservation).toEqual({ status: 'rejected', reason: 'out of stock: gadget has 1, the order needs 5' });
    expect(await stockOf('gadget')).toBe(1);
    expect(await count(inventoryDb, 'synod_inbox WHERE message_id = $1', [messageId])).toBe(1);
  });

  it('bad input to the HTTP API gets a 400 with a clear message and changes nothing', async () => {
    const before = { orders: await count(ordersDb, 'orders'), outbox: await count(ordersDb, 'synod_outbox'), widget: await stockOf('widget') };
    const cases: [string, unknown, RegExp][] = [
      ['/orders', 'not json', /request body is not valid JSON/],
      ['/orders', '', /request body is empty/],
      ['/orders', [], /request body must be a JSON object/],
      ['/orders', {}, /"sku" is required/],
      ['/orders', { sku: 'widget' }, /"qty" is required/],
      ['/orders', { sku: 'widget', qty: 0 }, /"qty" must be an integer from 1 to 1000, got 0/],
      ['/orders', { sku: 'widget', qty: '2' }, /"qty" must be an integer from 1 to 1000, got "2"/],
      ['/orders', { sku: 'widget', qty: 1.5 }, /"qty" must be an integer/],
      ['/orders', { sku: 'bad sku!', qty: 1 }, /"sku" must be a string of 1\.\.64 characters from \[A-Za-z0-9._-\]/],
      ['/orders', { sku: 'widget', qty: 1, price: 3 }, /unknown field "price"/],
      ['/orders/async', { sku: 'widget', qty: -1 }, /"qty" must be an integer/],
      ['/orders/async', { qty: 1 }, /"sku" is required/],
    ];
    for (const [path, body, message] of cases) {
      const r = await http('POST', `${api}${path}`, body);
      expect({ path, body, status: r.status }).toEqual({ path, body, status: 400 });
      expect(r.body.error).toMatch(message);
    }
    expect((await http('GET', `${api}/orders/not-a-uuid`)).status).toBe(400);
    expect((await http('GET', `${api}/orders/00000000-0000-0000-0000-000000000000`)).status).toBe(404);
    expect((await http('PUT', `${api}/orders`, { sku: 'widget', qty: 1 })).status).toBe(405);
    expect((await http('GET', `${api}/nope`)).status).toBe(404);
    const wrongType = await fetch(`${api}/orders`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"sku":"widget","qty":1}', signal: AbortSignal.timeout(10_000) });
    expect(wrongType.status).toBe(415);
    await wrongType.text();
    expect({ orders: await count(ordersDb, 'orders'), outbox: await count(ordersDb, 'synod_outbox'), widget: await stockOf('widget') }).toEqual(before);
  });
});
