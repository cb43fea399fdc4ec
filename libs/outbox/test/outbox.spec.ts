/**
 * The outbox end to end on real servers: a 3-member Synod consensus cluster (ProcessCluster) holds the
 * coordinator's replicated store; the coordinator pieces (ConsensusTxnStore + campaign → Leadership, TxnEngine,
 * StoreMessageBroker, the gRPC Coordinator service) run in this process; business services and consumers use a
 * real PostgreSQL 15; every call is real gRPC. Every wait is bounded; every process started is stopped by pid.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { createRegistry } from '@app/observability';
import { loadTxnProto } from '@app/proto';
import { ConsensusTxnStore, NotLeaderError } from '@app/txn';
import type { Leadership } from '@app/txn';
import { CoordinatorCallError, CoordinatorConnection, InboxConsumer, Outbox, OutboxRelay } from '@app/outbox';
import type { InboxMessage } from '@app/outbox';
import { FAST, ProcessCluster, ROOT, freePort, sleep, waitFor } from '../../../apps/consensus/test/harness.js';
import { PostgresServer } from '../../testing/src/servers/postgres.js';
import { StoreMessageBroker, brokerKeys } from '../../../apps/txn/src/message-broker.js';
import type { BrokerOptions } from '../../../apps/txn/src/message-broker.js';
import { CoordinatorService } from '../../../apps/txn/src/coordinator-service.js';
import { DEFAULT_ENGINE_OPTIONS, TxnEngine, TxnError } from '../../../apps/txn/src/engine.js';
import type { Logger } from '../../../apps/txn/src/engine.js';
import { TxnMetrics } from '../../../apps/txn/src/metrics.js';

import { jest } from '@jest/globals';

jest.setTimeout(240_000);

const log: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (m) => process.stderr.write(`warn  ${m}\n`),
  error: (m) => process.stderr.write(`error ${m}\n`),
};

let cluster: ProcessCluster;
let postgres: PostgresServer;
let endpoints: string[];
let dbCount = 0;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  cluster = new ProcessCluster([1, 2, 3], FAST);
  [postgres] = await Promise.all([PostgresServer.start(), cluster.start()]);
  await cluster.waitLeader(undefined, 30_000);
  endpoints = [1, 2, 3].map((id) => `127.0.0.1:${cluster.members.get(id)!.clientPort}`);
}, 180_000);

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

afterAll(async () => {
  await cluster?.stopAll();
  await postgres?.stop();
});

// ---- helpers ------------------------------------------------------------------------------------------------

interface Coordinator {
  address: string;
  store: ConsensusTxnStore;
  broker: StoreMessageBroker;
  engine: TxnEngine;
  metrics: TxnMetrics;
  /** Resolves once this replica leads (engine and broker took over). */
  leading: Promise<Leadership>;
  stop(): Promise<void>;
}

const FAST_BROKER: Partial<BrokerOptions> = { retryBaseMs: 30, retryMaxMs: 300, pollMs: 250, deliverTimeoutMs: 5000 };

/** One coordinator replica in this process: store, campaign, engine + broker on election, the gRPC service. */
async function coordinator(root: string, brokerOpts: Partial<BrokerOptions> = {}): Promise<Coordinator> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const store = new ConsensusTxnStore({ endpoints, root, sessionTimeoutMs: 2000 });
  await store.start();
  const metrics = new TxnMetrics(createRegistry());
  const engine = new TxnEngine(store, DEFAULT_ENGINE_OPTIONS, metrics, log);
  const broker = new StoreMessageBroker(store, metrics, log, { ...FAST_BROKER, ...brokerOpts });
  const server = new grpc.Server();
  server.addService(loadTxnProto().Coordinator.service, new CoordinatorService(engine, store, broker, address).implementation());
  await new Promise<void>((res, rej) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  const ac = new AbortController();
  const leading = store.campaign(address, ac.signal).then(async (lead) => {
    await engine.becomeLeader(lead);
    await broker.becomeLeader(lead);
    return lead;
  });
  leading.catch(() => undefined);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    ac.abort(new Error('stopping'));
    await broker.close();
    engine.close();
    server.forceShutdown();
    await store.close();
  };
  cleanups.push(stop);
  return { address, store, broker, engine, metrics, leading, stop };
}

async function database(): Promise<pg.Pool> {
  const name = `t${++dbCount}`;
  const admin = new pg.Client({ connectionString: postgres.connectionString });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const pool = new pg.Pool({ connectionString: postgres.connectionStringFor(name), max: 20 });
  pool.on('error', () => undefined);
  cleanups.push(() => pool.end());
  return pool;
}

interface Effects {
  consumer: InboxConsumer;
  /** Address the coordinator delivers to (a lossy proxy in front of the consumer when asked). */
  address: string;
  rows(): Promise<{ message_id: string; key: string; n: number }[]>;
}

/**
 * A consumer whose handler records an effect row (message id, key, n) and fails in `failAfterApplyRate` of the
 * calls after writing it (rolled back). With `lossy`, a real gRPC proxy in front of it fails `dropBeforeRate`
 * of the deliveries before forwarding and answers an error after a successful apply in `dropAckRate` of them
 * (an acknowledgment lost on the way back: the coordinator redelivers an applied message).
 */
async function effectsConsumer(pool: pg.Pool, name: string, topics: string[], coordinators: string[], o: { failAfterApplyRate?: number; handlerDelayMs?: (m: InboxMessage) => number; lossy?: { dropBeforeRate: number; dropAckRate: number } } = {}): Promise<Effects> {
  await pool.query('CREATE TABLE IF NOT EXISTS effects (id bigserial PRIMARY KEY, message_id text NOT NULL, key text NOT NULL, n int NOT NULL)');
  const consumer = new InboxConsumer({
    pool,
    name,
    topics,
    coordinators,
    handler: async (client, m) => {
      const body = JSON.parse(m.payload.toString('utf8')) as { n: number };
      const delay = o.handlerDelayMs?.(m) ?? 0;
      if (delay > 0) await sleep(delay);
      await client.query('INSERT INTO effects (message_id, key, n) VALUES ($1, $2, $3)', [m.messageId, m.key, body.n]);
      if (Math.random() < (o.failAfterApplyRate ?? 0)) throw new Error('injected failure after applying (rolled back)');
    },
  });
  await consumer.ensureSchema();
  const port = await consumer.listen('127.0.0.1', 0);
  cleanups.push(() => consumer.close());
  let address = `127.0.0.1:${port}`;
  if (o.lossy) {
    const lossy = o.lossy;
    const target = new (loadTxnProto().Consumer)(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
    const proxy = new grpc.Server();
    proxy.addService(loadTxnProto().Consumer.service, {
      Deliver: (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        if (Math.random() < lossy.dropBeforeRate) return cb({ code: grpc.status.UNAVAILABLE, details: 'proxy: injected loss before delivery' } as grpc.ServiceError);
        (target.Deliver as (r: unknown, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void).call(target, call.request, { deadline: Date.now() + 5000 }, (e, r) => {
          if (e) return cb(e);
          if (Math.random() < lossy.dropAckRate) return cb({ code: grpc.status.UNAVAILABLE, details: 'proxy: injected loss of the acknowledgment' } as grpc.ServiceError);
          cb(null, r);
        });
      },
    });
    const pport = await freePort();
    await new Promise<void>((res, rej) => proxy.bindAsync(`127.0.0.1:${pport}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    cleanups.push(async () => {
      proxy.forceShutdown();
      target.close();
    });
    address = `127.0.0.1:${pport}`;
  }
  return { consumer, address, rows: async () => (await pool.query('SELECT message_id, key, n FROM effects ORDER BY id')).rows };
}

/** Every message applied exactly once, and per key the effects in publish order (n = 0, 1, 2, ...). */
function checkEffects(rows: { message_id: string; key: string; n: number }[], expected: Map<string, number>): void {
  const ids = rows.map((r) => r.message_id);
  expect(new Set(ids).size).toBe(ids.length);
  const byKey = new Map<string, number[]>();
  for (const r of rows) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r.n]);
  for (const [key, count] of expected) expect({ key, ns: byKey.get(key) }).toEqual({ key, ns: Array.from({ length: count }, (_, i) => i) });
}

const counter = async (c: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> => (await c.get()).values.reduce((a, v) => a + v.value, 0);

// ---- the broker -----------------------------------------------------------------------------------------------

describe('StoreMessageBroker on a 3-member consensus cluster', () => {
  test('delivers every message exactly once in effect, in order per key, through lost deliveries and lost acknowledgments; a slow key does not hold back the others', async () => {
    const coord = await coordinator('/txn-order');
    const lead = await waitFor('leadership', () => coord.leading, 30_000);
    const pool = await database();
    const fx = await effectsConsumer(pool, 'billing', ['orders'], [coord.address], {
      failAfterApplyRate: 0.15,
      lossy: { dropBeforeRate: 0.15, dropAckRate: 0.15 },
      handlerDelayMs: (m) => (m.key === 'slow' ? 150 : 0),
    });
    await coord.broker.subscribe({ topic: 'orders', consumer: 'billing', address: fx.address }, lead);

    const keys = ['k1', 'k2', 'k3', 'k4', 'slow'];
    const perKey = 12;
    const expected = new Map(keys.map((k) => [k, perKey]));
    // per key one publish at a time (publish order = n); keys interleaved and concurrent
    await Promise.all(
      keys.map(async (key) => {
        for (let n = 0; n < perKey; n++) {
          const r = await coord.broker.publish({ messageId: `${key}-${n}`, topic: 'orders', key, payload: Buffer.from(JSON.stringify({ n })), headers: { n: String(n) } }, lead);
          expect(r.duplicate).toBe(false);
        }
      }),
    );
    const total = keys.length * perKey;
    await waitFor(`${total} effects`, async () => (await fx.rows()).length >= total, 120_000, 200);
    await waitFor('every delivery acknowledged', async () => coord.broker.snapshot()?.[0]?.cursor === total, 60_000, 100);
    await sleep(500); // any redelivery still in flight would show up as a second effect
    const rows = await fx.rows();
    expect(rows).toHaveLength(total);
    checkEffects(rows, expected);
    // the slow key finished last: the other keys did not wait behind it
    const lastFast = Math.max(...rows.map((r, i) => (r.key !== 'slow' ? i : -1)));
    const lastSlow = Math.max(...rows.map((r, i) => (r.key === 'slow' ? i : -1)));
    expect(lastSlow).toBeGreaterThan(lastFast);
    expect(fx.consumer.stats.applied).toBe(total);
    expect(await counter(coord.metrics.published)).toBe(total);
    expect(await counter(coord.metrics.redelivered)).toBeGreaterThan(0);
    expect(await counter(coord.metrics.delivered)).toBeGreaterThanOrEqual(total);
    process.stderr.write(`order test: ${total} messages, ${await counter(coord.metrics.delivered)} acknowledged deliveries, ${await counter(coord.metrics.redelivered)} redeliveries, consumer duplicates ${fx.consumer.stats.duplicates}, failures ${fx.consumer.stats.failed}\n`);
  });

  test('a duplicate Publish of a message id is stored once (sequential and concurrent), delivered once, and garbage-collected after the retention', async () => {
    const coord = await coordinator('/txn-dups', { retentionMs: 500, gcIntervalMs: 400 });
    const lead = await waitFor('leadership', () => coord.leading, 30_000);
    const pool = await database();
    const fx = await effectsConsumer(pool, 'dedupe', ['dups'], [coord.address]);
    await fx.consumer.subscribe();
    const msg = (id: string, n: number): Parameters<StoreMessageBroker['publish']>[0] => ({ messageId: id, topic: 'dups', key: 'k', payload: Buffer.from(JSON.stringify({ n })), headers: {} });

    const first = await coord.broker.publish(msg('m-0', 0), lead);
    const again = await coord.broker.publish(msg('m-0', 0), lead);
    expect(first.duplicate).toBe(false);
    expect(again).toEqual({ duplicate: true, sequence: first.sequence });
    // through gRPC too (the relay's path)
    const conn = new CoordinatorConnection({ endpoints: [coord.address] });
    cleanups.push(async () => conn.close());
    const viaGrpc = await conn.call('Publish', { messageId: 'm-0', topic: 'dups', key: 'k', payload: Buffer.from('{"n":0}') });
    expect(viaGrpc).toEqual({ duplicate: true, sequence: first.sequence });

    const racing = await Promise.all([1, 2, 3, 4].map(() => coord.broker.publish(msg('m-1', 1), lead)));
    expect(racing.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(racing.map((r) => r.sequence)).size).toBe(1);

    const stored = (await coord.store.list(brokerKeys.msgDir('dups'))).map((v) => JSON.parse(v.value.toString('utf8')) as { id?: string; tombstone?: boolean });
    expect(stored.filter((s) => s.id === 'm-0')).toHaveLength(1);
    expect(stored.filter((s) => s.id === 'm-1' && !s.tombstone)).toHaveLength(1);
    expect(await counter(coord.metrics.published)).toBe(2);

    await waitFor('2 effects', async () => (await fx.rows()).length >= 2, 60_000, 100);
    await sleep(500);
    checkEffects(await fx.rows(), new Map([['k', 2]]));
    // acknowledged by the only subscriber and past the retention: deleted, floor moved
    // the collector deletes the messages, then moves the floor: wait for both
    await waitFor('messages garbage-collected', async () => (await coord.store.list(brokerKeys.msgDir('dups'))).length === 0 && (await coord.store.get(brokerKeys.floor('dups'))) !== undefined, 30_000, 200);
    expect(await coord.store.get(brokerKeys.msgId('m-0'))).toBeUndefined();
    const floor = await coord.store.get(brokerKeys.floor('dups'));
    expect(JSON.parse(floor!.value.toString('utf8')).n).toBeGreaterThanOrEqual(first.sequence);
  });

  test('a new leader resumes delivery without losing or reordering messages', async () => {
    const a = await coordinator('/txn-failover');
    const leadA = await waitFor('leadership of A', () => a.leading, 30_000);
    const b = await coordinator('/txn-failover'); // stands by: campaigns behind A
    const pool = await database();
    const fx = await effectsConsumer(pool, 'ledger', ['payments'], [a.address, b.address], { failAfterApplyRate: 0.1, lossy: { dropBeforeRate: 0.1, dropAckRate: 0.1 }, handlerDelayMs: () => 15 });
    await fx.consumer.subscribe(fx.address);

    const keys = ['p1', 'p2', 'p3'];
    const next = new Map(keys.map((k) => [k, 0]));
    const publishVia = async (c: Coordinator, lead: Leadership, rounds: number): Promise<void> => {
      await Promise.all(
        keys.map(async (key) => {
          for (let i = 0; i < rounds; i++) {
            const n = next.get(key)!;
            await c.broker.publish({ messageId: `${key}-${n}`, topic: 'payments', key, payload: Buffer.from(JSON.stringify({ n })), headers: {} }, lead);
            next.set(key, n + 1);
          }
        }),
      );
    };
    await publishVia(a, leadA, 12);
    await waitFor('some effects before the failover', async () => (await fx.rows()).length >= 6, 60_000, 50);
    const before = (await fx.rows()).length;
    await a.stop(); // resigns by closing its session: B's campaign wins
    const leadB = await waitFor('leadership of B', () => b.leading, 30_000);
    expect(leadB.epoch).toBeGreaterThan(leadA.epoch);
    expect(leadA.signal.aborted).toBe(true);
    // the message ids published by A are known to B
    expect((await b.broker.publish({ messageId: 'p1-0', topic: 'payments', key: 'p1', payload: Buffer.from('{"n":0}'), headers: {} }, leadB)).duplicate).toBe(true);
    await publishVia(b, leadB, 6);
    const total = keys.length * 18;
    await waitFor(`${total} effects after the failover`, async () => (await fx.rows()).length >= total, 120_000, 200);
    await waitFor('every delivery acknowledged', async () => b.broker.snapshot()?.[0]?.cursor === total, 60_000, 100);
    await sleep(500);
    const rows = await fx.rows();
    expect(rows).toHaveLength(total);
    checkEffects(rows, new Map(keys.map((k) => [k, 18])));
    process.stderr.write(`failover test: ${before} effects before the failover, ${total} in all; consumer duplicates ${fx.consumer.stats.duplicates}\n`);
  });

  test('bad input to Publish and Subscribe gives clear errors', async () => {
    const coord = await coordinator('/txn-bad');
    const lead = await waitFor('leadership', () => coord.leading, 30_000);
    const ok = { messageId: 'id-1', topic: 'good', key: 'k', payload: Buffer.from('x'), headers: {} };
    const rejects = async (p: Promise<unknown>, code: string, re: RegExp): Promise<void> => {
      const err = await p.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(TxnError);
      expect({ code: (err as TxnError).code, message: (err as TxnError).message }).toEqual({ code, message: expect.stringMatching(re) });
    };
    await rejects(coord.broker.publish({ ...ok, messageId: '' }, lead), 'INVALID_ARGUMENT', /message_id is required/);
    await rejects(coord.broker.publish({ ...ok, messageId: 'a b' }, lead), 'INVALID_ARGUMENT', /message_id "a b" must be 1\.\.128 characters/);
    await rejects(coord.broker.publish({ ...ok, topic: 'a/b' }, lead), 'INVALID_ARGUMENT', /topic "a\/b" must be/);
    await rejects(coord.broker.publish({ ...ok, key: 'k'.repeat(300) }, lead), 'INVALID_ARGUMENT', /key is 300 characters; the limit is 256/);
    await rejects(coord.broker.publish({ ...ok, payload: Buffer.alloc(300 * 1024) }, lead), 'RESOURCE_EXHAUSTED', /payload is 307200 bytes; the limit is 262144/);
    await rejects(coord.broker.publish({ ...ok, headers: { h: 1 as unknown as string } }, lead), 'INVALID_ARGUMENT', /header "h" must be a string/);
    await rejects(coord.broker.publish({ ...ok, payload: 'text' as unknown as Buffer }, lead), 'INVALID_ARGUMENT', /payload must be bytes/);
    await rejects(coord.broker.subscribe({ topic: 'good', consumer: 'c', address: 'no-port' }, lead), 'INVALID_ARGUMENT', /address must be the host:port/);
    await rejects(coord.broker.subscribe({ topic: 'good', consumer: 'c', address: 'h:70000' }, lead), 'INVALID_ARGUMENT', /address must be the host:port/);
    await rejects(coord.broker.subscribe({ topic: 'good', consumer: '', address: 'h:1' }, lead), 'INVALID_ARGUMENT', /consumer is required/);
    // a message id reused on another topic
    await coord.broker.publish(ok, lead);
    await rejects(coord.broker.publish({ ...ok, topic: 'other' }, lead), 'FAILED_PRECONDITION', /already published to topic good/);
    // through gRPC: the status codes
    const conn = new CoordinatorConnection({ endpoints: [coord.address], deadlineMs: 5000 });
    cleanups.push(async () => conn.close());
    const e1 = await conn.call('Publish', { messageId: 'x', topic: 'bad topic', payload: Buffer.alloc(0) }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(CoordinatorCallError);
    expect((e1 as CoordinatorCallError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((e1 as CoordinatorCallError).details).toMatch(/topic "bad topic" must be/);
    const e2 = await conn.call('Subscribe', { topic: 't', consumer: 'c', address: 'nope' }).catch((e: unknown) => e);
    expect((e2 as CoordinatorCallError).code).toBe(grpc.status.INVALID_ARGUMENT);
    // a deposed leader cannot publish
    await lead.resign();
    await expect(coord.broker.publish({ ...ok, messageId: 'id-2' }, lead)).rejects.toBeInstanceOf(NotLeaderError);
  });
});

// ---- the outbox relay and the inbox -----------------------------------------------------------------------------

describe('Outbox, OutboxRelay and InboxConsumer over PostgreSQL', () => {
  test('the relay does not skip a row whose transaction commits late', async () => {
    const coord = await coordinator('/txn-late');
    await waitFor('leadership', () => coord.leading, 30_000);
    const pool = await database();
    const outbox = new Outbox(pool);
    await outbox.ensureSchema();
    await pool.query('CREATE TABLE orders (id text PRIMARY KEY)');
    const fx = await effectsConsumer(pool, 'shipping', ['late'], [coord.address]);
    await fx.consumer.subscribe();
    const relay = new OutboxRelay({ pool, coordinators: [coord.address], pollMs: 500 });
    cleanups.push(() => relay.stop());
    relay.start();

    const early = await pool.connect();
    cleanups.push(async () => early.release(true));
    await early.query('BEGIN');
    await early.query("INSERT INTO orders VALUES ('o-1')");
    const earlyId = await outbox.add(early, { topic: 'late', key: 'a', payload: JSON.stringify({ n: 0 }) });
    // a later transaction commits first and is relayed
    const later = await pool.connect();
    await later.query('BEGIN');
    await later.query("INSERT INTO orders VALUES ('o-2')");
    const laterId = await outbox.add(later, { topic: 'late', key: 'b', payload: JSON.stringify({ n: 0 }) });
    await later.query('COMMIT');
    later.release();
    await waitFor('the later row delivered', async () => (await fx.rows()).some((r) => r.message_id === laterId), 60_000, 100);
    await sleep(1200); // the relay went round at least once more (fallback poll) while the early row was invisible
    expect((await fx.rows()).some((r) => r.message_id === earlyId)).toBe(false);
    await early.query('COMMIT');
    await waitFor('the late-committed row delivered', async () => (await fx.rows()).some((r) => r.message_id === earlyId), 60_000, 100);
    expect(await outbox.pending()).toEqual([]);
    const sent = await pool.query('SELECT id, sequence FROM synod_outbox WHERE sent_at IS NOT NULL ORDER BY seq');
    expect(sent.rows.map((r) => r.id)).toEqual([earlyId, laterId]);
  });

  test('business writes and messages commit together; a relay killed after Publish and before marking sent → the effect happens exactly once; per-key order kept', async () => {
    const coord = await coordinator('/txn-crash');
    await waitFor('leadership', () => coord.leading, 30_000);
    const pool = await database();
    const outbox = new Outbox(pool);
    await outbox.ensureSchema();
    const fx = await effectsConsumer(pool, 'audit', ['crash'], [coord.address], { lossy: { dropBeforeRate: 0.1, dropAckRate: 0.1 } });
    await fx.consumer.subscribe();

    // a rolled-back business transaction leaves no message
    const rb = await pool.connect();
    await rb.query('BEGIN');
    await outbox.add(rb, { topic: 'crash', key: 'x', payload: JSON.stringify({ n: 99 }) });
    await rb.query('ROLLBACK');
    rb.release();

    const c = await pool.connect();
    await c.query('BEGIN');
    const id = await outbox.add(c, { topic: 'crash', key: 'x', payload: JSON.stringify({ n: 0 }) });
    await c.query('COMMIT');
    c.release();

    const env: NodeJS.ProcessEnv = { ...process.env, PG_URL: pool.options.connectionString as string, COORDINATOR: coord.address };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, ['--import', 'tsx', 'libs/outbox/test/relay-child.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let childErr = '';
    child.stderr!.on('data', (d: Buffer) => (childErr += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      await exited;
    });
    const published = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the relay child printed nothing within 90 s; stderr: ${childErr}`)), 90_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.startsWith('PUBLISHED ')) {
          clearTimeout(t);
          resolve(line);
        }
      });
    });
    expect(published).toContain(id);
    process.kill(child.pid!, 'SIGKILL');
    await exited;
    // published (stored by the coordinator), not marked sent
    expect((await outbox.pending()).map((p) => p.id)).toEqual([id]);
    await waitFor('the message delivered by the coordinator', async () => (await fx.rows()).some((r) => r.message_id === id), 60_000, 100);

    // more messages of the same key, then a fresh relay
    for (let n = 1; n <= 5; n++) {
      const t = await pool.connect();
      await t.query('BEGIN');
      await outbox.add(t, { topic: 'crash', key: 'x', payload: JSON.stringify({ n }) });
      await t.query('COMMIT');
      t.release();
    }
    const relay = new OutboxRelay({ pool, coordinators: [coord.address], pollMs: 300 });
    cleanups.push(() => relay.stop());
    relay.start();
    await waitFor('every row sent', async () => (await outbox.pending()).length === 0, 60_000, 100);
    expect(relay.stats.duplicates).toBe(1); // the killed relay's row: stored once, acknowledged as a duplicate
    expect(relay.stats.published).toBe(5);
    await waitFor('6 effects', async () => (await fx.rows()).length >= 6, 60_000, 100);
    await sleep(800);
    const rows = await fx.rows();
    checkEffects(rows, new Map([['x', 6]]));
    expect(rows.filter((r) => r.message_id === id)).toHaveLength(1);
    expect(rows.some((r) => r.n === 99)).toBe(false);
  });

  test('Outbox.add rejects bad messages before anything is written', async () => {
    const pool = await database();
    const outbox = new Outbox(pool);
    await outbox.ensureSchema();
    const c = await pool.connect();
    try {
      await expect(outbox.add(c, { topic: 'bad topic', payload: 'x' })).rejects.toThrow(/topic "bad topic" must be 1\.\.128 characters/);
      await expect(outbox.add(c, { topic: 't', key: 'k'.repeat(257), payload: 'x' })).rejects.toThrow(/key must be a string of at most 256/);
      await expect(outbox.add(c, { topic: 't', payload: Buffer.alloc(300 * 1024) })).rejects.toThrow(/payload is 307200 bytes/);
    } finally {
      c.release();
    }
    expect(await outbox.pending()).toEqual([]);
  });
});
