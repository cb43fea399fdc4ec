/**
 * PostgresParticipant against a real PostgreSQL 15 (started here, max_prepared_transactions=64), called over
 * real gRPC on loopback with a grpc-js client from loadTxnProto().Participant: phase one and two, no votes,
 * idempotency (duplicate / concurrent Prepares, Prepare after Commit / Abort, unknown branches), two replicas
 * of one participant sharing the database, bad input, an unreachable database, and the Nest module.
 */
import 'reflect-metadata';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { NestFactory } from '@nestjs/core';
import pg from 'pg';
import { loadTxnProto } from '@app/proto';
import { BRANCHES_TABLE, ParticipantLifecycle, ParticipantModule, PostgresParticipant } from '@app/participant';
import type { Branch, NoVote } from '@app/participant';
import { PostgresServer } from '../../testing/src/servers/postgres.js';

let server: PostgresServer | undefined;
let admin: pg.Client | undefined;
const participants: PostgresParticipant[] = [];
const clients: grpc.Client[] = [];
let main: { participant: PostgresParticipant; client: grpc.Client } | undefined;

/** Work runs per `${globalId}/${branchId}` (the side effect the SDK must not repeat). */
const runs = new Map<string, number>();
let seq = 0;
const newId = (what: string): string => `${what}-${Date.now().toString(36)}-${++seq}`;

async function work(client: pg.PoolClient, branch: Branch): Promise<void | NoVote> {
  const key = `${branch.globalId}/${branch.branchId}`;
  runs.set(key, (runs.get(key) ?? 0) + 1);
  const cmd = branch.payload.toString();
  if (cmd === 'no') return { vote: 'no', reason: 'insufficient funds' };
  if (cmd === 'throw') throw new Error('boom');
  if (cmd === 'slow') await client.query('SELECT pg_sleep(0.3)');
  await client.query('INSERT INTO ledger (global_id, branch_id, note) VALUES ($1, $2, $3)', [branch.globalId, branch.branchId, cmd]);
  if (cmd === 'swallow') {
    // An error the work catches and does not rethrow: the transaction is aborted all the same.
    await client.query('SELECT 1 / 0').catch(() => undefined);
  }
}

function srv(): PostgresServer {
  if (server === undefined) throw new Error('the PostgreSQL test server did not start (see beforeAll)');
  return server;
}
function db(): pg.Client {
  if (admin === undefined) throw new Error('no admin connection (see beforeAll)');
  return admin;
}
function P(): PostgresParticipant {
  if (main === undefined) throw new Error('no participant (see beforeAll)');
  return main.participant;
}
function C(): grpc.Client {
  if (main === undefined) throw new Error('no participant client (see beforeAll)');
  return main.client;
}

function rpc<T = Record<string, unknown>>(client: grpc.Client, method: 'Prepare' | 'Commit' | 'Abort', req: object, deadlineMs = 30_000): Promise<T> {
  const fn = (client as unknown as Record<string, (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: T) => void) => void>)[method];
  return new Promise((resolve, reject) => fn.call(client, req, { deadline: Date.now() + deadlineMs }, (e, res) => (e ? reject(e) : resolve(res))));
}

async function rpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

const prepare = (client: grpc.Client, globalId: string, branchId: string, payload: string): Promise<{ prepared: boolean; reason: string }> =>
  rpc(client, 'Prepare', { globalId, branchId, payload: Buffer.from(payload) });

async function open(name = 'orders'): Promise<{ participant: PostgresParticipant; client: grpc.Client; port: number }> {
  const participant = new PostgresParticipant({ connectionString: srv().connectionString, name, work });
  participants.push(participant);
  const port = await participant.listen('127.0.0.1', 0);
  const client = new (loadTxnProto().Participant)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  clients.push(client);
  return { participant, client, port };
}

async function prepared(): Promise<string[]> {
  return (await db().query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts ORDER BY gid')).rows.map((r) => r.gid);
}
async function ledger(globalId: string): Promise<string[]> {
  return (await db().query<{ branch_id: string }>('SELECT branch_id FROM ledger WHERE global_id = $1 ORDER BY id', [globalId])).rows.map((r) => r.branch_id);
}
async function outcome(gid: string): Promise<{ outcome: string; reason: string | null } | undefined> {
  return (await db().query<{ outcome: string; reason: string | null }>(`SELECT outcome, reason FROM ${BRANCHES_TABLE} WHERE gid = $1`, [gid])).rows[0];
}

beforeAll(async () => {
  server = await PostgresServer.start();
  admin = new pg.Client({ connectionString: server.connectionString });
  await admin.connect();
  await admin.query('CREATE TABLE ledger (id serial PRIMARY KEY, global_id text NOT NULL, branch_id text NOT NULL, note text)');
  const o = await open();
  main = { participant: o.participant, client: o.client };
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of participants) await p.close();
  // Nothing may stay prepared: it would hold its locks (and the server's shutdown keeps it).
  const left = admin ? await prepared().catch(() => []) : [];
  await admin?.end().catch(() => undefined);
  await server?.stop();
  expect(left).toEqual([]);
}, 60_000);

describe('phase one and two over gRPC', () => {
  it('Prepare runs the work in a prepared transaction (invisible, in pg_prepared_xacts); Commit makes it visible', async () => {
    const g = newId('commit');
    expect(await prepare(C(), g, 'b1', 'pay 10')).toEqual({ prepared: true, reason: '' });
    const gid = P().gid(g, 'b1');
    expect(gid).toBe(`synod:orders:${g}:b1`);
    expect(await prepared()).toContain(gid);
    expect(await ledger(g)).toEqual([]); // undecided: not visible to anyone else
    expect(await outcome(gid)).toBeUndefined(); // the branch row is part of the prepared transaction

    expect(await rpc(C(), 'Commit', { globalId: g, branchId: 'b1' })).toEqual({});
    expect(await prepared()).not.toContain(gid);
    expect(await ledger(g)).toEqual(['b1']);
    expect(await outcome(gid)).toMatchObject({ outcome: 'committed' });
    // A repeated Commit succeeds and changes nothing.
    expect(await rpc(C(), 'Commit', { globalId: g, branchId: 'b1' })).toEqual({});
    expect(await P().commit(g, 'b1')).toBe('already-committed');
    expect(await ledger(g)).toEqual(['b1']);
  });

  it('Prepare then Abort leaves nothing, and the abort is remembered', async () => {
    const g = newId('abort');
    expect((await prepare(C(), g, 'b1', 'pay 20')).prepared).toBe(true);
    const before = P().stats().aborted;
    expect(await rpc(C(), 'Abort', { globalId: g, branchId: 'b1' })).toEqual({});
    expect(P().stats().aborted).toBe(before + 1);
    expect(await prepared()).not.toContain(P().gid(g, 'b1'));
    expect(await ledger(g)).toEqual([]);
    expect(await outcome(P().gid(g, 'b1'))).toMatchObject({ outcome: 'aborted' });
    expect(await P().abort(g, 'b1')).toBe('already-aborted');
    // A late duplicate Prepare votes no and does not run the work again.
    expect(await prepare(C(), g, 'b1', 'pay 20')).toEqual({ prepared: false, reason: 'already aborted: aborted by the coordinator' });
    expect(runs.get(`${g}/b1`)).toBe(1);
    expect(await ledger(g)).toEqual([]);
  });

  it('a no vote (work says no, work throws, work swallows an SQL error) rolls back, says why, and is answered again on a retry', async () => {
    const g = newId('no');
    const votedNo = P().stats().votedNo;
    expect(await prepare(C(), g, 'says-no', 'no')).toEqual({ prepared: false, reason: 'insufficient funds' });
    expect(await prepare(C(), g, 'throws', 'throw')).toEqual({ prepared: false, reason: 'work failed: boom' });
    const swallowed = await prepare(C(), g, 'swallows', 'swallow');
    expect(swallowed.prepared).toBe(false);
    expect(swallowed.reason).toMatch(/aborted by an error inside work/);
    expect(P().stats().votedNo).toBe(votedNo + 3);
    expect(await ledger(g)).toEqual([]);
    expect((await prepared()).filter((x) => x.includes(g))).toEqual([]);
    // Retried Prepares answer the same without running the work again.
    expect(await prepare(C(), g, 'says-no', 'no')).toEqual({ prepared: false, reason: 'already aborted: insufficient funds' });
    expect(await prepare(C(), g, 'throws', 'throw')).toEqual({ prepared: false, reason: 'already aborted: work failed: boom' });
    expect([runs.get(`${g}/says-no`), runs.get(`${g}/throws`), runs.get(`${g}/swallows`)]).toEqual([1, 1, 1]);
    // The coordinator aborts after a no vote: fine, nothing to roll back.
    expect(await rpc(C(), 'Abort', { globalId: g, branchId: 'throws' })).toEqual({});
  });

  it('a duplicate Prepare votes yes without redoing the work, before and after Commit', async () => {
    const g = newId('dup');
    const prepared0 = P().stats().prepared;
    expect(await prepare(C(), g, 'b1', 'once')).toEqual({ prepared: true, reason: '' });
    expect(await prepare(C(), g, 'b1', 'once')).toEqual({ prepared: true, reason: 'already prepared' });
    expect(P().stats().prepared).toBe(prepared0 + 1);
    await rpc(C(), 'Commit', { globalId: g, branchId: 'b1' });
    expect(await prepare(C(), g, 'b1', 'once')).toEqual({ prepared: true, reason: 'already committed' });
    expect(runs.get(`${g}/b1`)).toBe(1);
    expect(await ledger(g)).toEqual(['b1']);
  });

  it('Prepare after an Abort of a never-prepared branch votes no without running the work', async () => {
    const g = newId('late');
    expect(await rpc(C(), 'Abort', { globalId: g, branchId: 'b1' })).toEqual({});
    expect(await P().abort(g, 'b1')).toBe('already-aborted');
    const r = await prepare(C(), g, 'b1', 'late');
    expect(r.prepared).toBe(false);
    expect(r.reason).toMatch(/^already aborted/);
    expect(runs.get(`${g}/b1`)).toBeUndefined();
    expect(await ledger(g)).toEqual([]);
  });

  it('Commit and Abort of unknown branches succeed; contradicting a finished branch is FAILED_PRECONDITION', async () => {
    const g = newId('unknown');
    expect(await rpc(C(), 'Commit', { globalId: g, branchId: 'nobody' })).toEqual({});
    expect(await P().commit(g, 'nobody')).toBe('unknown');
    expect(await P().abort(g, 'nobody-2')).toBe('unknown');
    expect(await rpc(C(), 'Abort', { globalId: g, branchId: 'nobody-3' })).toEqual({});

    expect((await prepare(C(), g, 'c', 'x')).prepared).toBe(true);
    await rpc(C(), 'Commit', { globalId: g, branchId: 'c' });
    const e1 = await rpcError(rpc(C(), 'Abort', { globalId: g, branchId: 'c' }));
    expect(e1.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e1.details).toMatch(/was committed: it cannot be aborted/);
    const e2 = await rpcError(rpc(C(), 'Commit', { globalId: g, branchId: 'nobody-3' }));
    expect(e2.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e2.details).toMatch(/was aborted .*cannot be committed/);
  });
});

describe('concurrency', () => {
  it('concurrent duplicate Prepares of one branch run the work once and all vote yes', async () => {
    const g = newId('conc');
    const votes = await Promise.all(Array.from({ length: 6 }, () => prepare(C(), g, 'b1', 'slow')));
    expect(votes.every((v) => v.prepared)).toBe(true);
    expect(votes.filter((v) => v.reason === '')).toHaveLength(1);
    expect(runs.get(`${g}/b1`)).toBe(1);
    await rpc(C(), 'Commit', { globalId: g, branchId: 'b1' });
    expect(await ledger(g)).toEqual(['b1']);
  });

  it('two replicas of one participant (same name, same database) serialize a branch through the advisory lock', async () => {
    const other = await open('orders');
    const g = newId('replicas');
    const votes = await Promise.all([0, 1, 2, 3].map((i) => prepare(i % 2 === 0 ? C() : other.client, g, 'b1', 'slow')));
    expect(votes.map((v) => v.prepared)).toEqual([true, true, true, true]);
    expect(runs.get(`${g}/b1`)).toBe(1);
    expect(P().stats().workRuns + other.participant.stats().workRuns).toBeGreaterThanOrEqual(1);
    // Either replica finishes it; the other then finds it done.
    await rpc(other.client, 'Commit', { globalId: g, branchId: 'b1' });
    expect(await P().commit(g, 'b1')).toBe('already-committed');
    expect(await ledger(g)).toEqual(['b1']);
  });

  it('an Abort racing its Prepare never leaves the branch prepared or its work visible', async () => {
    for (let i = 0; i < 5; i++) {
      const g = newId('race');
      const [vote] = await Promise.all([prepare(C(), g, 'b1', 'slow'), new Promise((r) => setTimeout(r, i * 20)).then(() => rpc(C(), 'Abort', { globalId: g, branchId: 'b1' }))]);
      // Whichever came first: either the Prepare voted no (Abort recorded first) or the Abort rolled it back.
      if (vote.prepared) expect(await outcome(P().gid(g, 'b1'))).toMatchObject({ outcome: 'aborted' });
      else expect(vote.reason).toMatch(/^already aborted/);
      expect(await prepared()).not.toContain(P().gid(g, 'b1'));
      expect(await ledger(g)).toEqual([]);
    }
  });
});

describe('input and errors', () => {
  it('missing or oversized ids are INVALID_ARGUMENT; ids with quotes, colons and non-ASCII work; a 199-byte gid is really prepared', async () => {
    for (const [req, re] of [
      [{ branchId: 'b' }, /global_id is required/],
      [{ globalId: 'g' }, /branch_id is required/],
      [{ globalId: 'g'.repeat(300), branchId: 'b' }, /too long .* at most 199/],
    ] as const) {
      for (const m of ['Prepare', 'Commit', 'Abort'] as const) {
        const e = await rpcError(rpc(C(), m, req));
        expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(e.details).toMatch(re);
      }
    }
    const odd = `${newId('odd')}:'; DROP TABLE ledger; --é`;
    expect((await prepare(C(), odd, "b'1:x", 'odd')).prepared).toBe(true);
    await rpc(C(), 'Commit', { globalId: odd, branchId: "b'1:x" });
    expect(await ledger(odd)).toEqual(["b'1:x"]);

    const g = newId('max');
    const branchId = 'b'.repeat(199 - P().gid(g, 'x').length + 1);
    expect(P().gid(g, branchId)).toHaveLength(199);
    expect((await prepare(C(), g, branchId, 'max')).prepared).toBe(true);
    expect(await prepared()).toContain(P().gid(g, branchId));
    await rpc(C(), 'Commit', { globalId: g, branchId });
    const e = await rpcError(prepare(C(), g, branchId + 'b', 'max'));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('an unreachable PostgreSQL is UNAVAILABLE with a clear message', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const p = new PostgresParticipant({ connectionString: `postgresql://postgres@127.0.0.1:${port}/postgres`, name: 'orders', work });
    participants.push(p);
    const g = new grpc.Server();
    g.addService(loadTxnProto().Participant.service, p.implementation());
    const gport = await new Promise<number>((res, rej) => g.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, n) => (err ? rej(err) : res(n))));
    const client = new (loadTxnProto().Participant)(`127.0.0.1:${gport}`, grpc.credentials.createInsecure());
    try {
      for (const m of ['Prepare', 'Commit', 'Abort'] as const) {
        const e = await rpcError(rpc(client, m, { globalId: 'g', branchId: 'b' }));
        expect(e.code).toBe(grpc.status.UNAVAILABLE);
        expect(e.details).toMatch(new RegExp(`PostgreSQL postgresql://postgres@127.0.0.1:${port}/postgres: start: cannot connect: .*ECONNREFUSED`));
      }
    } finally {
      client.close();
      g.forceShutdown();
    }
  });

  it('PostgreSQL going away under a serving participant: Prepare / Commit / Abort answer UNAVAILABLE (not a no vote)', async () => {
    const pg2 = await PostgresServer.start();
    const p = new PostgresParticipant({ connectionString: pg2.connectionString, name: 'orders', work: async () => undefined });
    participants.push(p);
    try {
      const client = new (loadTxnProto().Participant)(`127.0.0.1:${await p.listen('127.0.0.1', 0)}`, grpc.credentials.createInsecure());
      clients.push(client);
      expect(await prepare(client, 'g', 'b', '')).toEqual({ prepared: true, reason: '' });
      await rpc(client, 'Commit', { globalId: 'g', branchId: 'b' });
      await pg2.stop();
      for (const m of ['Prepare', 'Commit', 'Abort'] as const) {
        const e = await rpcError(rpc(client, m, { globalId: 'g2', branchId: 'b' }));
        expect(e.code).toBe(grpc.status.UNAVAILABLE);
        expect(e.details).toMatch(/check that the database is up and reachable|ECONNREFUSED/);
      }
      expect(p.stats().votedNo).toBe(0);
    } finally {
      await pg2.stop();
    }
  }, 90_000);

  it('refuses to start, with FAILED_PRECONDITION, on a server with max_prepared_transactions = 0', async () => {
    const off = await PostgresServer.start({ settings: { max_prepared_transactions: 0 } });
    const p = new PostgresParticipant({ connectionString: off.connectionString, name: 'orders', work });
    try {
      await expect(p.start()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/max_prepared_transactions is 0/) });
    } finally {
      await p.close();
      await off.stop();
    }
  }, 90_000);
});

describe('ParticipantModule (NestJS)', () => {
  it('starts the gRPC service on bootstrap and stops it (and the pool it owns) on shutdown', async () => {
    const app = await NestFactory.createApplicationContext(ParticipantModule.forRoot({ connectionString: srv().connectionString, name: 'nest', work, host: '127.0.0.1', port: 0 }), { logger: false });
    let closed = false;
    try {
      const life = app.get(ParticipantLifecycle);
      expect(app.get(PostgresParticipant)).toBe(life.participant);
      expect(life.port).toBeGreaterThan(0);
      const client = new (loadTxnProto().Participant)(`127.0.0.1:${life.port}`, grpc.credentials.createInsecure());
      try {
        const g = newId('nest');
        expect(await prepare(client, g, 'b1', 'nest')).toEqual({ prepared: true, reason: '' });
        expect(await prepared()).toContain(`synod:nest:${g}:b1`);
        await rpc(client, 'Commit', { globalId: g, branchId: 'b1' });
        expect(await ledger(g)).toEqual(['b1']);
        await app.close();
        closed = true;
        const e = await rpcError(rpc(client, 'Commit', { globalId: g, branchId: 'b1' }, 3000));
        expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(e.code);
        expect(life.participant.pool.totalCount).toBe(0);
      } finally {
        client.close();
      }
    } finally {
      if (!closed) await app.close();
    }
  });
});
