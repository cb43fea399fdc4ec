/**
 * The transaction coordinator as users run it: coordinator replicas as real processes (apps/txn) over a real
 * 3-member consensus cluster (the decision log), PostgreSQL participants (libs/participant, real PREPARE
 * TRANSACTION) on two databases, real gRPC; faults by SIGKILL, a blackholing TCP proxy and the coordinator's
 * failpoints (SYNOD_TXN_FAILPOINTS).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { TxnClient } from '@app/client';
import type { TxnInfo } from '@app/client';
import { PostgresParticipant } from '@app/participant';
import { TcpProxy } from '@app/testing';
import { PostgresServer } from '../../../libs/testing/src/servers/postgres.js';
import { ProcessCluster, ROOT, freePort } from '../../consensus/test/harness.js';
import { ServiceProcess, TXN_MAIN, sleep, waitFor } from '../../lock/test/harness.js';
import { balances, bankWork, createAccounts, preparedCount } from './bank.js';

const cluster = new ProcessCluster([1, 2, 3]);
let server: PostgresServer;
let bank1: pg.Pool;
let bank2: pg.Pool;
let consensus = '';
const FLAGS = ['--session-timeout-ms', '1500', '--prepare-timeout-ms', '1500', '--phase-two-attempts', '4', '--phase-two-timeout-ms', '500', '--attention-retry-ms', '1000'];

/** A coordinator pair (two replicas) with its own decision log root, and participants bound to it. */
class Pair {
  replicas: ServiceProcess[] = [];
  client!: TxnClient;
  participants: PostgresParticipant[] = [];
  p1 = '';
  p2 = '';
  constructor(
    readonly root: string,
    readonly env: Record<string, string> = {},
  ) {}

  get endpoints(): string[] {
    return this.replicas.map((r) => r.endpoint);
  }

  async start(): Promise<void> {
    this.replicas = [0, 1].map(() => new ServiceProcess(['--consensus-endpoints', consensus, '--root', this.root, ...FLAGS], TXN_MAIN, this.env));
    for (const r of this.replicas) await r.start();
    this.client = new TxnClient({ endpoints: this.endpoints, deadlineMs: 20_000 });
    const mk = async (pool: pg.Pool, name: string): Promise<string> => {
      const p = new PostgresParticipant({ pool, name, work: bankWork, coordinator: this.endpoints, recoveryIntervalMs: 500, recoverAfterMs: 1000 });
      this.participants.push(p);
      return `127.0.0.1:${await p.listen('127.0.0.1', 0)}`;
    };
    this.p1 = await mk(bank1, `bank1${this.root.replace(/\//g, '-')}`);
    this.p2 = await mk(bank2, `bank2${this.root.replace(/\//g, '-')}`);
  }

  async leader(): Promise<ServiceProcess> {
    return waitFor('a coordinator leader', async () => {
      for (const r of this.replicas) if (r.proc && (await r.metric('synod_txn_is_leader').catch(() => 0)) === 1) return r;
      return undefined;
    }, 20_000);
  }

  async stop(): Promise<void> {
    this.client?.close();
    for (const p of this.participants) await p.close().catch(() => undefined);
    for (const r of this.replicas) await r.stop().catch(() => undefined);
  }
}

let main: Pair;
let fp: Pair;

beforeAll(async () => {
  [server] = await Promise.all([PostgresServer.start(), cluster.start()]);
  consensus = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`).join(',');
  const admin = new pg.Pool({ connectionString: server.connectionString, max: 1 });
  await admin.query('CREATE DATABASE bank1');
  await admin.query('CREATE DATABASE bank2');
  await admin.end();
  bank1 = new pg.Pool({ connectionString: server.connectionStringFor('bank1'), max: 10 });
  bank2 = new pg.Pool({ connectionString: server.connectionStringFor('bank2'), max: 10 });
  // an idle pooled connection closed by the server (shutdown at the end) must not fail the suite
  for (const pool of [bank1, bank2]) pool.on('error', () => undefined);
  await createAccounts(bank1, { a1: 100, a2: 100, a3: 100, a4: 100 });
  await createAccounts(bank2, { b1: 100, b2: 100, b3: 100, b4: 100 });
  main = new Pair('/txn');
  fp = new Pair('/txn-fp', { SYNOD_TXN_FAILPOINTS: 'before-decision=2500,after-decision=2500' });
  await main.start();
  await fp.start();
}, 120_000);

afterAll(async () => {
  await main?.stop();
  await fp?.stop();
  await bank1?.end();
  await bank2?.end();
  await Promise.allSettled([server?.stop(), cluster.stopAll()]);
});

const body = (account: string, delta: number): string => JSON.stringify({ account, delta });

async function transfer(pair: Pair, from: string, to: string, amount: number, p2 = pair.p2, wait = true): Promise<{ gid: string; state: string; reason: string }> {
  const { globalId } = await pair.client.begin({ timeoutMs: 20_000 });
  await pair.client.registerBranch(globalId, 'debit', pair.p1, body(from, -amount));
  await pair.client.registerBranch(globalId, 'credit', p2, body(to, amount));
  const r = await pair.client.commit(globalId, { wait });
  return { gid: globalId, ...r };
}

const completed = (pair: Pair, gid: string, timeoutMs = 20_000): Promise<TxnInfo> =>
  waitFor(`transaction ${gid} completed`, async () => {
    const s = await pair.client.status(gid);
    return s.completed ? s : undefined;
  }, timeoutMs);

const total = async (): Promise<number> => Object.values({ ...(await balances(bank1)), ...(await balances(bank2)) }).reduce((a, b) => a + b, 0);

describe('transaction coordinator (real processes, PostgreSQL participants)', () => {
  it('commits across two participants: both databases change, the record shows every branch committed', async () => {
    const r = await transfer(main, 'a1', 'b1', 10);
    expect(r.state).toBe('COMMITTED');
    const s = await completed(main, r.gid);
    expect(s.branches.map((b) => [b.branchId, b.vote, b.outcome])).toEqual([
      ['debit', 'YES', 'COMMITTED'],
      ['credit', 'YES', 'COMMITTED'],
    ]);
    expect((await balances(bank1)).a1).toBe(90);
    expect((await balances(bank2)).b1).toBe(110);
    expect(await preparedCount(bank1)).toBe(0);
    expect(await preparedCount(bank2)).toBe(0);
    // a retried Commit answers the decision already made
    expect((await main.client.commit(r.gid)).state).toBe('COMMITTED');
  });

  it('one branch votes no: every branch aborts and nothing changes', async () => {
    const before = { ...(await balances(bank1)), ...(await balances(bank2)) };
    const r = await transfer(main, 'a2', 'b2', 1000);
    expect(r.state).toBe('ABORTED');
    expect(r.reason).toMatch(/debit voted NO: insufficient funds in a2/);
    await completed(main, r.gid);
    expect({ ...(await balances(bank1)), ...(await balances(bank2)) }).toEqual(before);
    expect(await preparedCount(bank2)).toBe(0);
  });

  it('a participant that does not answer Prepare in time (blackholed) makes the transaction abort', async () => {
    const proxy = await TcpProxy.start(main.p2);
    try {
      proxy.setMode('blackhole');
      const before = await total();
      const r = await transfer(main, 'a3', 'b3', 5, proxy.address, false);
      expect(r.state).toBe('ABORTED');
      const s = await main.client.status(r.gid);
      expect(s.branches.find((b) => b.branchId === 'credit')!.vote).toBe('TIMEOUT');
      proxy.setMode('pass');
      await completed(main, r.gid);
      expect(await total()).toBe(before);
      expect((await balances(bank1)).a3).toBe(100);
      await waitFor('no prepared branch left', async () => (await preparedCount(bank1)) + (await preparedCount(bank2)) === 0);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('an ACTIVE transaction past its timeout is aborted (presumed abort); an unknown one reads as aborted', async () => {
    const { globalId } = await main.client.begin({ timeoutMs: 300 });
    await main.client.registerBranch(globalId, 'debit', main.p1, body('a4', -1));
    await sleep(800);
    const s = await main.client.status(globalId);
    expect(s.state).toBe('ABORTED');
    expect(s.reason).toMatch(/timeout/);
    await expect(main.client.registerBranch(globalId, 'late', main.p1, body('a4', -1))).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
    expect((await main.client.status('never-begun')).state).toBe('ABORTED');
  });

  it('SIGKILL of the leading coordinator after the decision, before phase two: the next leader finishes the commit', async () => {
    const leader = await fp.leader();
    const before = (await balances(bank1)).a4;
    const r = await transfer(fp, 'a4', 'b4', 7, fp.p2, false);
    expect(r.state).toBe('COMMITTED'); // durable: Commit returned
    await leader.kill('SIGKILL'); // phase two was 2.5 s away
    const s = await completed(fp, r.gid, 30_000);
    expect(s.branches.every((b) => b.outcome === 'COMMITTED')).toBe(true);
    expect((await balances(bank1)).a4).toBe(before - 7);
    expect((await balances(bank2)).b4).toBe(107);
    await leader.start();
  }, 90_000);

  it('SIGKILL of the leading coordinator before the decision: the transaction aborts and prepared branches roll back', async () => {
    const leader = await fp.leader();
    const before = await total();
    const a1 = (await balances(bank1)).a1;
    const { globalId } = await fp.client.begin({ timeoutMs: 20_000 });
    await fp.client.registerBranch(globalId, 'debit', fp.p1, body('a1', -3));
    await fp.client.registerBranch(globalId, 'credit', fp.p2, body('b1', 3));
    const commit = fp.client.commit(globalId).catch((e: unknown) => e);
    await waitFor('both branches prepared', async () => (await preparedCount(bank1)) === 1 && (await preparedCount(bank2)) === 1, 10_000);
    await leader.kill('SIGKILL'); // it was sleeping before writing the decision
    const outcome = await commit; // retried on the new leader: the decision it finds
    const s = await completed(fp, globalId, 30_000);
    expect(s.decision).toBe('ABORTED');
    expect(s.reason).toMatch(/presumed abort/);
    if (!(outcome instanceof Error)) expect((outcome as { state: string }).state).toBe('ABORTED');
    await waitFor('prepared branches rolled back', async () => (await preparedCount(bank1)) + (await preparedCount(bank2)) === 0, 15_000);
    expect(await total()).toBe(before);
    expect((await balances(bank1)).a1).toBe(a1);
    await leader.start();
  }, 90_000);

  it('a participant killed after it prepared finishes its branch the way the decision says after restart', async () => {
    const port = await freePort();
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const startProc = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'apps/txn/test/bank-participant.ts', server.connectionStringFor('bank2'), 'bank2-proc', String(port), fp.endpoints.join(',')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      const lines: string[] = [];
      createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
      await waitFor('participant process listening', () => lines.some((l) => l.startsWith('LISTENING')), 30_000);
      return child;
    };
    let child = await startProc();
    try {
      const b2 = (await balances(bank2)).b2;
      const r = await transfer(fp, 'a2', 'b2', 11, `127.0.0.1:${port}`, false);
      expect(r.state).toBe('COMMITTED');
      child.kill('SIGKILL'); // prepared, decided, phase two not yet delivered
      await new Promise((res) => child.once('exit', res));
      expect(await preparedCount(bank2)).toBe(1);
      child = await startProc();
      const s = await completed(fp, r.gid, 30_000);
      expect(s.branches.every((b) => b.outcome === 'COMMITTED')).toBe(true);
      await waitFor('the restarted participant committed its branch', async () => (await preparedCount(bank2)) === 0, 15_000);
      expect((await balances(bank2)).b2).toBe(b2 + 11);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);

  it('a participant unreachable in phase two: retries, NEEDS_ATTENTION, then an operator Resolve finishes it', async () => {
    const proxy = await TcpProxy.start(fp.p2);
    try {
      const b3 = (await balances(bank2)).b3;
      const r = await transfer(fp, 'a3', 'b3', 2, proxy.address, false);
      expect(r.state).toBe('COMMITTED');
      proxy.setMode('blackhole'); // before phase two (2.5 s failpoint)
      const stuck = await waitFor('NEEDS_ATTENTION', async () => {
        const s = await fp.client.status(r.gid);
        return s.state === 'NEEDS_ATTENTION' ? s : undefined;
      }, 30_000);
      expect(stuck.decision).toBe('COMMITTED');
      expect(stuck.branches.find((b) => b.branchId === 'credit')!.lastError).toMatch(/Commit on/);
      expect((await fp.client.list(['NEEDS_ATTENTION'])).map((t) => t.globalId)).toContain(r.gid);
      await expect(fp.client.resolve(r.gid, 'ABORTED', 'wrong way')).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
      const resolved = await fp.client.resolve(r.gid, 'COMMITTED', 'participant bank2 checked by hand', 'alice');
      expect(resolved.completed).toBe(true);
      expect(resolved.resolvedBy).toBe('alice: participant bank2 checked by hand');
      // the participant itself still holds the prepared branch; its recovery asks the coordinator and commits it
      await waitFor('participant recovery committed the branch', async () => (await balances(bank2)).b3 === b3 + 2, 20_000);
      expect(await preparedCount(bank2)).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 90_000);

  it('bank invariant: concurrent transfers while the leading coordinator is killed twice; total conserved, nothing left in doubt', async () => {
    const before = await total();
    let stop = false;
    const outcomes = { committed: 0, aborted: 0, failed: 0 };
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; !stop && i < 500; i++) {
        const from = `a${1 + ((w + i) % 4)}`;
        const to = `b${1 + ((w * 3 + i) % 4)}`;
        const [src, dst] = i % 2 === 0 ? [from, to] : [to, from];
        try {
          const { globalId } = await main.client.begin({ timeoutMs: 15_000 });
          await main.client.registerBranch(globalId, 'debit', src.startsWith('a') ? main.p1 : main.p2, body(src, -1));
          await main.client.registerBranch(globalId, 'credit', dst.startsWith('a') ? main.p1 : main.p2, body(dst, 1));
          const r = await main.client.commit(globalId);
          if (r.state === 'COMMITTED') outcomes.committed++;
          else outcomes.aborted++;
        } catch {
          outcomes.failed++;
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    for (let k = 0; k < 2; k++) {
      await sleep(2500);
      const leader = await main.leader();
      await leader.kill('SIGKILL');
      await sleep(500);
      await leader.start();
    }
    await sleep(1500);
    stop = true;
    await Promise.all(workers);
    expect(outcomes.committed).toBeGreaterThan(10);
    try {
      await waitFor('nothing in doubt', async () => (await main.client.list(['PREPARING', 'COMMITTED', 'ABORTED', 'NEEDS_ATTENTION'])).every((t) => t.completed), 60_000);
    } catch (err) {
      const stuck = (await main.client.list()).filter((t) => !t.completed && t.state !== 'ACTIVE');
      throw new Error(`${(err as Error).message}; not completed: ${JSON.stringify(stuck.slice(0, 3).map((t) => ({ ...t, branches: t.branches.map((b) => ({ ...b, payload: undefined })) })))}`);
    }
    await waitFor('no prepared branch left', async () => (await preparedCount(bank1)) + (await preparedCount(bank2)) === 0, 30_000);
    expect(await total()).toBe(before);
  }, 120_000);

  it('completed transactions are garbage-collected after the retention; then they read as presumed aborted', async () => {
    const replica = new ServiceProcess(['--consensus-endpoints', consensus, '--root', '/txn-gc', '--retention-ms', '1000', ...FLAGS], TXN_MAIN);
    await replica.start();
    const c = new TxnClient({ endpoints: [replica.endpoint], deadlineMs: 20_000 });
    try {
      const { globalId } = await c.begin({ timeoutMs: 5000 });
      expect(await c.commit(globalId, { wait: true })).toMatchObject({ state: 'COMMITTED', completed: true });
      expect((await c.list()).map((t) => t.globalId)).toContain(globalId);
      await waitFor('the record collected', async () => !(await c.list()).some((t) => t.globalId === globalId), 15_000);
      expect(await c.status(globalId)).toMatchObject({ state: 'ABORTED', reason: expect.stringMatching(/presumed/) });
    } finally {
      c.close();
      await replica.stop();
    }
  }, 60_000);

  it('bad input gets a clear status and changes nothing', async () => {
    const c = main.client;
    await expect(c.begin({ timeoutMs: 5 })).rejects.toMatchObject({ codeName: 'INVALID_ARGUMENT' });
    await expect(c.begin({ globalId: 'bad id!' })).rejects.toMatchObject({ codeName: 'INVALID_ARGUMENT' });
    const { globalId } = await c.begin({ timeoutMs: 5000 });
    await expect(c.registerBranch(globalId, '', main.p1)).rejects.toMatchObject({ codeName: 'INVALID_ARGUMENT' });
    await expect(c.registerBranch(globalId, 'x', 'not an address')).rejects.toMatchObject({ codeName: 'INVALID_ARGUMENT' });
    await expect(c.registerBranch('no-such-txn', 'x', main.p1)).rejects.toMatchObject({ codeName: 'NOT_FOUND' });
    await c.registerBranch(globalId, 'x', main.p1, body('a1', 0));
    await expect(c.registerBranch(globalId, 'x', main.p2, body('a1', 0))).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
    await expect(c.resolve(globalId, 'COMMITTED', '')).rejects.toMatchObject({ codeName: 'INVALID_ARGUMENT' });
    await expect(c.resolve(globalId, 'COMMITTED', 'no votes yet')).rejects.toMatchObject({ codeName: 'FAILED_PRECONDITION' });
    expect((await c.status(globalId)).state).toBe('ACTIVE');
    await expect(c.list(['BOGUS' as never])).rejects.toMatchObject({ codeName: 'INVALID_ARGUMENT' });
    expect(await c.abort(globalId, 'test done')).toBe('ABORTED');
    await expect(c.commit(globalId)).resolves.toMatchObject({ state: 'ABORTED' });
  });
});
