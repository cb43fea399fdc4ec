/**
 * Prepared branches outliving their participant, and recovery, against a real PostgreSQL 15: a participant
 * closed (with its pool) and re-created finds its prepared branch; a participant in a child process SIGKILLed
 * after PREPARE leaves the branch in pg_prepared_xacts for the next instance; recover() finishes branches by
 * their decision. The decision source here is the SDK's own seam (a plain function); the default one (the
 * Coordinator's Status over gRPC) is tested end to end with the real coordinator in apps/txn — here only
 * its "no coordinator reachable" path, against closed ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { loadTxnProto } from '@app/proto';
import { PostgresParticipant } from '@app/participant';
import type { Branch, Decision, PostgresParticipantOptions } from '@app/participant';
import { PostgresServer } from '../../testing/src/servers/postgres.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

let server: PostgresServer | undefined;
let admin: pg.Client | undefined;
const participants: PostgresParticipant[] = [];
const clients: grpc.Client[] = [];
const children: ChildProcess[] = [];
const runs = new Map<string, number>();
let seq = 0;
const newId = (what: string): string => `${what}-${Date.now().toString(36)}-${++seq}`;

async function work(client: pg.PoolClient, branch: Branch): Promise<void> {
  const key = `${branch.globalId}/${branch.branchId}`;
  runs.set(key, (runs.get(key) ?? 0) + 1);
  await client.query('INSERT INTO ledger (global_id, branch_id) VALUES ($1, $2)', [branch.globalId, branch.branchId]);
}

function srv(): PostgresServer {
  if (server === undefined) throw new Error('the PostgreSQL test server did not start (see beforeAll)');
  return server;
}
function db(): pg.Client {
  if (admin === undefined) throw new Error('no admin connection (see beforeAll)');
  return admin;
}

function participant(options: Partial<PostgresParticipantOptions> = {}): PostgresParticipant {
  const p = new PostgresParticipant({ connectionString: srv().connectionString, name: 'stock', work, recoveryIntervalMs: 0, ...options });
  participants.push(p);
  return p;
}

function client(port: number): grpc.Client {
  const c = new (loadTxnProto().Participant)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

function rpc<T = Record<string, unknown>>(c: grpc.Client, method: 'Prepare' | 'Commit' | 'Abort', req: object, deadlineMs = 30_000): Promise<T> {
  const fn = (c as unknown as Record<string, (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: T) => void) => void>)[method];
  return new Promise((res, rej) => fn.call(c, req, { deadline: Date.now() + deadlineMs }, (e, r) => (e ? rej(e) : res(r))));
}

async function preparedGids(): Promise<string[]> {
  return (await db().query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts ORDER BY gid')).rows.map((r) => r.gid);
}
async function ledger(globalId: string): Promise<string[]> {
  return (await db().query<{ branch_id: string }>('SELECT branch_id FROM ledger WHERE global_id = $1 ORDER BY id', [globalId])).rows.map((r) => r.branch_id);
}

async function closedPort(): Promise<number> {
  return new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/** Polls `check` every 50 ms until it returns true or `ms` pass (then fails with `what`). */
async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${ms} ms: ${what}`);
}

beforeAll(async () => {
  server = await PostgresServer.start();
  admin = new pg.Client({ connectionString: server.connectionString });
  await admin.connect();
  await admin.query('CREATE TABLE ledger (id serial PRIMARY KEY, global_id text NOT NULL, branch_id text NOT NULL)');
}, 90_000);

afterAll(async () => {
  for (const ch of children) if (ch.pid !== undefined && ch.exitCode === null && ch.signalCode === null) process.kill(ch.pid, 'SIGKILL');
  for (const c of clients) c.close();
  for (const p of participants) await p.close();
  const left = admin ? await preparedGids().catch(() => []) : [];
  await admin?.end().catch(() => undefined);
  await server?.stop();
  expect(left).toEqual([]);
}, 60_000);

describe('a prepared branch outlives its participant', () => {
  it('closing the participant and its pool, then creating a new one: the branch is still prepared and is found, not redone', async () => {
    const a = participant();
    const g = newId('restart');
    const ca = client(await a.listen('127.0.0.1', 0));
    expect(await rpc(ca, 'Prepare', { globalId: g, branchId: 'b1', payload: Buffer.from('x') })).toEqual({ prepared: true, reason: '' });
    await a.close();
    expect(a.pool.ended).toBe(true);
    expect(await preparedGids()).toContain(`synod:stock:${g}:b1`);

    const b = participant();
    const cb = client(await b.listen('127.0.0.1', 0));
    expect(await b.preparedBranches()).toEqual([expect.objectContaining({ gid: `synod:stock:${g}:b1`, globalId: g, branchId: 'b1', preparedAt: expect.any(Date) })]);
    expect(await rpc(cb, 'Prepare', { globalId: g, branchId: 'b1', payload: Buffer.from('x') })).toEqual({ prepared: true, reason: 'already prepared' });
    expect(b.stats().workRuns).toBe(0);
    expect(runs.get(`${g}/b1`)).toBe(1);
    await rpc(cb, 'Commit', { globalId: g, branchId: 'b1' });
    expect(await ledger(g)).toEqual(['b1']);
  });

  it('a participant process SIGKILLed after PREPARE: the next instance finds the branch and recovery commits it once', async () => {
    const code = `
      const { PostgresParticipant } = await import(${JSON.stringify(join(ROOT, 'libs/participant/src/index.ts'))});
      const p = new PostgresParticipant({
        connectionString: process.env.PG_URL, name: 'crashy',
        work: async (c, b) => { await c.query('INSERT INTO ledger (global_id, branch_id) VALUES ($1, $2)', [b.globalId, b.branchId]); },
      });
      const port = await p.listen('127.0.0.1', 0);
      console.log('LISTENING ' + port);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, env: { ...process.env, PG_URL: srv().connectionString }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const port = await new Promise<number>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`the child did not listen within 60 s; stderr: ${err}`)), 60_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /LISTENING (\d+)/.exec(out);
        if (m) {
          clearTimeout(t);
          res(Number(m[1]));
        }
      });
      child.once('exit', (c, s) => {
        clearTimeout(t);
        rej(new Error(`the child exited (${c ?? s}) before listening; stderr: ${err}`));
      });
    });
    const g = newId('killed');
    expect(await rpc(client(port), 'Prepare', { globalId: g, branchId: 'b1' })).toEqual({ prepared: true, reason: '' });
    process.kill(child.pid!, 'SIGKILL');
    let t: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((_, rej) => (t = setTimeout(() => rej(new Error('the child did not die within 10 s of SIGKILL')), 10_000)))]).finally(() => clearTimeout(t));
    expect(child.signalCode).toBe('SIGKILL');

    expect(await preparedGids()).toContain(`synod:crashy:${g}:b1`);
    expect(await ledger(g)).toEqual([]);
    let decision: Decision = 'UNDECIDED';
    const asked: string[] = [];
    const next = participant({
      name: 'crashy',
      recoverAfterMs: 0,
      decisions: async (id) => {
        asked.push(id);
        return decision;
      },
    });
    await next.start(); // recovery at start: undecided, left alone
    expect(asked).toEqual([g]);
    expect((await next.preparedBranches()).map((b) => b.globalId)).toEqual([g]);
    expect(await next.prepare({ globalId: g, branchId: 'b1' })).toEqual({ prepared: true, reason: 'already prepared' });
    expect(next.stats().workRuns).toBe(0);
    decision = 'COMMITTED';
    expect(await next.recover()).toEqual({ examined: 1, committed: 1, aborted: 0, left: 0, errors: [] });
    expect(next.stats()).toMatchObject({ recovered: 1, committed: 1, workRuns: 0 });
    expect(await ledger(g)).toEqual(['b1']);
    expect(await next.preparedBranches()).toEqual([]);
  }, 120_000);
});

describe('recover()', () => {
  it('finishes old enough branches by their decision and leaves undecided or unanswered ones prepared', async () => {
    const p = participant({ name: 'recov' });
    const g1 = `${newId('g1')}:it's`; // decoded back from the gid exactly
    const [g2, g3, g4] = [newId('g2'), newId('g3'), newId('g4')];
    for (const [g, b] of [[g1, 'a'], [g1, 'b'], [g2, 'a'], [g3, 'a'], [g4, 'a']]) expect((await p.prepare({ globalId: g, branchId: b })).prepared).toBe(true);
    const asked: string[] = [];
    const decisions = async (id: string): Promise<Decision> => {
      asked.push(id);
      if (id === g4) throw new Error('coordinator unreachable');
      return id === g1 ? 'COMMITTED' : id === g2 ? 'ABORTED' : 'UNDECIDED';
    };

    // Younger than the threshold: left to the coordinator's own phase two.
    expect(await p.recover({ minAgeMs: 60_000, decisions })).toEqual({ examined: 0, committed: 0, aborted: 0, left: 0, errors: [] });
    expect(asked).toEqual([]);

    const report = await p.recover({ minAgeMs: 0, decisions });
    expect(report).toMatchObject({ examined: 5, committed: 2, aborted: 1, left: 2 });
    expect(report.errors).toEqual([expect.stringMatching(new RegExp(`${g4}:a: no decision: coordinator unreachable`))]);
    expect(asked.sort()).toEqual([g1, g1, g2, g3, g4].sort());
    expect(p.stats()).toMatchObject({ recovered: 3, committed: 2, aborted: 1 });
    expect(await ledger(g1)).toEqual(['a', 'b']);
    expect(await ledger(g2)).toEqual([]);
    expect((await p.preparedBranches()).map((b) => b.globalId).sort()).toEqual([g3, g4].sort());
    // Recovered outcomes are remembered like the coordinator's own Commit / Abort.
    expect(await p.prepare({ globalId: g2, branchId: 'a' })).toEqual({ prepared: false, reason: 'already aborted: aborted (recovery: the coordinator decided ABORT)' });
    expect(await p.prepare({ globalId: g1, branchId: 'a' })).toEqual({ prepared: true, reason: 'already committed' });
    expect(runs.get(`${g1}/a`)).toBe(1);
    // A late phase-two call from the coordinator agrees.
    expect(await p.commit(g1, 'b')).toBe('already-committed');
    expect(await p.abort(g2, 'a')).toBe('already-aborted');

    // A second pass changes nothing for the undecided ones.
    expect(await p.recover({ minAgeMs: 0, decisions: async () => 'UNDECIDED' })).toMatchObject({ examined: 2, committed: 0, aborted: 0, left: 2 });
    expect(await p.abort(g3, 'a')).toBe('aborted');
    expect(await p.abort(g4, 'a')).toBe('aborted');
  });

  it('looks only at its own branches: not another participant name, not gids that are not Synod branches', async () => {
    const mine = participant({ name: 'mine' });
    const other = participant({ name: 'mine-too' }); // a name that shares a prefix
    const g = newId('own');
    await mine.prepare({ globalId: g, branchId: 'x' });
    await other.prepare({ globalId: g, branchId: 'y' });
    await db().query('BEGIN');
    await db().query("INSERT INTO ledger (global_id, branch_id) VALUES ('foreign', 'z')");
    await db().query("PREPARE TRANSACTION 'synod:mine:foreign'"); // not a branch gid (three parts)
    try {
      const asked: string[] = [];
      const r = await mine.recover({ minAgeMs: 0, decisions: async (id) => (asked.push(id), 'UNDECIDED') });
      expect(asked).toEqual([g]);
      expect(r).toMatchObject({ examined: 1, left: 1 });
      expect((await mine.preparedBranches()).map((b) => b.branchId)).toEqual(['x']);
    } finally {
      await db().query("ROLLBACK PREPARED 'synod:mine:foreign'");
      await mine.abort(g, 'x');
      await other.abort(g, 'y');
    }
  });

  it('runs periodically (bounded interval) once started, and only for branches older than recoverAfterMs', async () => {
    let decision: Decision = 'UNDECIDED';
    const p = participant({ name: 'periodic', recoveryIntervalMs: 100, recoverAfterMs: 300, decisions: async () => decision });
    await p.start();
    const g = newId('periodic');
    await p.prepare({ globalId: g, branchId: 'b1' });
    const runs0 = p.stats().recoveryRuns;
    await until('three recovery passes', async () => p.stats().recoveryRuns >= runs0 + 3, 20_000);
    expect(await ledger(g)).toEqual([]);
    expect((await p.preparedBranches()).map((b) => b.globalId)).toEqual([g]);
    decision = 'COMMITTED';
    await until('the periodic recovery committed the branch', async () => (await ledger(g)).length === 1, 20_000);
    expect(p.stats()).toMatchObject({ recovered: 1 });
    expect(await p.preparedBranches()).toEqual([]);
    await p.close();
    const after = p.stats().recoveryRuns;
    await new Promise((r) => setTimeout(r, 400));
    expect(p.stats().recoveryRuns).toBe(after); // close() stopped the timer
  });

  it('with the default decision source and no Coordinator reachable, leaves the branch prepared and says why', async () => {
    const [a, b] = [await closedPort(), await closedPort()];
    const p = participant({ name: 'nocoord', coordinator: [`127.0.0.1:${a}`, `127.0.0.1:${b}`], coordinatorTimeoutMs: 2000 });
    const g = newId('nocoord');
    await p.prepare({ globalId: g, branchId: 'b1' });
    const r = await p.recover({ minAgeMs: 0 });
    expect(r).toMatchObject({ examined: 1, committed: 0, aborted: 0, left: 1 });
    expect(r.errors[0]).toMatch(new RegExp(`no Coordinator answered Status\\(${g}\\): 127.0.0.1:${a}: .*; 127.0.0.1:${b}: `));
    expect((await p.preparedBranches()).map((x) => x.globalId)).toEqual([g]);
    expect(await p.abort(g, 'b1')).toBe('aborted');
  });
});
