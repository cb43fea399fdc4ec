/**
 * The transaction coordinator with its decision log on etcd (`--store etcd`): two coordinator replicas as real
 * processes over a real etcd, PostgreSQL participants (real PREPARE TRANSACTION) on two databases, real gRPC.
 * Commit across two participants, a no vote aborting, and SIGKILL of the leader after the decision (failpoint
 * `after-decision=2500`) with the next leader — elected on etcd once the dead one's lease expired — finishing it.
 */
import pg from 'pg';
import { TxnClient } from '@app/client';
import type { TxnInfo } from '@app/client';
import { PostgresParticipant } from '@app/participant';
import { PostgresServer } from '../../../libs/testing/src/servers/postgres.js';
import { EtcdServer } from '../../../libs/testing/src/servers/etcd.js';
import { ServiceProcess, TXN_MAIN, waitFor } from '../../lock/test/harness.js';
import { balances, bankWork, createAccounts, preparedCount } from './bank.js';

let etcd: EtcdServer;
let server: PostgresServer;
let bank1: pg.Pool;
let bank2: pg.Pool;
let replicas: ServiceProcess[] = [];
let client: TxnClient;
const participants: PostgresParticipant[] = [];
let p1 = '';
let p2 = '';
const FLAGS = ['--session-timeout-ms', '1500', '--prepare-timeout-ms', '1500', '--phase-two-attempts', '4', '--phase-two-timeout-ms', '500', '--attention-retry-ms', '1000'];

beforeAll(async () => {
  [server, etcd] = await Promise.all([PostgresServer.start(), EtcdServer.start()]);
  const admin = new pg.Pool({ connectionString: server.connectionString, max: 1 });
  await admin.query('CREATE DATABASE bank1');
  await admin.query('CREATE DATABASE bank2');
  await admin.end();
  bank1 = new pg.Pool({ connectionString: server.connectionStringFor('bank1'), max: 10 });
  bank2 = new pg.Pool({ connectionString: server.connectionStringFor('bank2'), max: 10 });
  for (const pool of [bank1, bank2]) pool.on('error', () => undefined); // idle connections closed at shutdown
  await createAccounts(bank1, { a1: 100, a2: 100 });
  await createAccounts(bank2, { b1: 100, b2: 100 });
  replicas = [0, 1].map(() => new ServiceProcess(['--store', 'etcd', '--etcd-endpoints', etcd.endpoint, ...FLAGS], TXN_MAIN, { SYNOD_TXN_FAILPOINTS: 'after-decision=2500' }));
  for (const r of replicas) await r.start();
  const endpoints = replicas.map((r) => r.endpoint);
  client = new TxnClient({ endpoints, deadlineMs: 20_000 });
  const mk = async (pool: pg.Pool, name: string): Promise<string> => {
    const p = new PostgresParticipant({ pool, name, work: bankWork, coordinator: endpoints, recoveryIntervalMs: 500, recoverAfterMs: 1000 });
    participants.push(p);
    return `127.0.0.1:${await p.listen('127.0.0.1', 0)}`;
  };
  p1 = await mk(bank1, 'bank1-etcd');
  p2 = await mk(bank2, 'bank2-etcd');
}, 120_000);

afterAll(async () => {
  client?.close();
  for (const p of participants) await p.close().catch(() => undefined);
  for (const r of replicas) await r.stop().catch(() => undefined);
  await bank1?.end();
  await bank2?.end();
  await Promise.allSettled([server?.stop(), etcd?.stop()]);
});

const body = (account: string, delta: number): string => JSON.stringify({ account, delta });

async function transfer(from: string, to: string, amount: number, wait = true): Promise<{ gid: string; state: string; reason: string }> {
  const { globalId } = await client.begin({ timeoutMs: 20_000 });
  await client.registerBranch(globalId, 'debit', p1, body(from, -amount));
  await client.registerBranch(globalId, 'credit', p2, body(to, amount));
  const r = await client.commit(globalId, { wait });
  return { gid: globalId, ...r };
}

const completed = (gid: string, timeoutMs = 20_000): Promise<TxnInfo> =>
  waitFor(`transaction ${gid} completed`, async () => {
    const s = await client.status(gid);
    return s.completed ? s : undefined;
  }, timeoutMs);

const leader = (): Promise<ServiceProcess> =>
  waitFor('a coordinator leader', async () => {
    for (const r of replicas) if (r.proc && (await r.metric('synod_txn_is_leader').catch(() => 0)) === 1) return r;
    return undefined;
  }, 20_000);

describe('transaction coordinator with the decision log on etcd (real processes, PostgreSQL participants)', () => {
  it('commits across two participants: both databases change, the record shows every branch committed', async () => {
    const r = await transfer('a1', 'b1', 10);
    expect(r.state).toBe('COMMITTED');
    const s = await completed(r.gid);
    expect(s.branches.map((b) => [b.branchId, b.vote, b.outcome])).toEqual([
      ['debit', 'YES', 'COMMITTED'],
      ['credit', 'YES', 'COMMITTED'],
    ]);
    expect((await balances(bank1)).a1).toBe(90);
    expect((await balances(bank2)).b1).toBe(110);
    expect(await preparedCount(bank1)).toBe(0);
    expect(await preparedCount(bank2)).toBe(0);
    expect((await client.commit(r.gid)).state).toBe('COMMITTED');
  }, 60_000);

  it('one branch votes no: every branch aborts and nothing changes', async () => {
    const before = { ...(await balances(bank1)), ...(await balances(bank2)) };
    const r = await transfer('a2', 'b2', 1000);
    expect(r.state).toBe('ABORTED');
    expect(r.reason).toMatch(/debit voted NO: insufficient funds in a2/);
    await completed(r.gid);
    expect({ ...(await balances(bank1)), ...(await balances(bank2)) }).toEqual(before);
    expect(await preparedCount(bank1)).toBe(0);
    expect(await preparedCount(bank2)).toBe(0);
  }, 60_000);

  it('SIGKILL of the leading coordinator after the decision, before phase two: the next leader finishes the commit', async () => {
    const lead = await leader();
    const a2 = (await balances(bank1)).a2;
    const b2 = (await balances(bank2)).b2;
    const r = await transfer('a2', 'b2', 7, false);
    expect(r.state).toBe('COMMITTED'); // durable in etcd: Commit returned
    await lead.kill('SIGKILL'); // phase two was 2.5 s away; its election lease is not revoked, it expires
    const next = await leader();
    expect(next).not.toBe(lead);
    const s = await completed(r.gid, 30_000);
    expect(s.decision).toBe('COMMITTED');
    expect(s.branches.every((b) => b.outcome === 'COMMITTED')).toBe(true);
    expect(await next.metric('synod_txn_recovered_total')).toBeGreaterThanOrEqual(1); // it resumed the decided transaction
    expect((await balances(bank1)).a2).toBe(a2 - 7);
    expect((await balances(bank2)).b2).toBe(b2 + 7);
    await waitFor('no prepared branch left', async () => (await preparedCount(bank1)) + (await preparedCount(bank2)) === 0, 15_000);
    await lead.start(); // rejoins as a standby
    expect(await leader()).toBe(next);
  }, 90_000);
});
