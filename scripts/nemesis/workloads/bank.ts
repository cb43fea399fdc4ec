/**
 * The bank of the nemesis transaction workload (scripts/nemesis/workloads/txn.ts): per participant database an
 * `accounts` table and a `transfers` table. A branch's payload `{"account": "a1", "delta": -10}` adds delta to
 * that account AND inserts a `transfers(gid, branch_id, account, delta)` row, both inside the prepared
 * transaction, so the check can tell per global transaction whether a branch was applied (a row) or not.
 * A negative balance votes no (and the CHECK constraint would refuse it anyway). Row-lock waits are bounded
 * (lock_timeout: a branch blocked behind an in-doubt prepared transaction votes no instead of hanging).
 */
import type pg from 'pg';
import type { Branch } from '@app/participant';

export async function createBank(pool: pg.Pool, accounts: Record<string, number>): Promise<void> {
  await pool.query('CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))');
  await pool.query('CREATE TABLE IF NOT EXISTS transfers (gid text NOT NULL, branch_id text NOT NULL, account text NOT NULL, delta bigint NOT NULL, PRIMARY KEY (gid, branch_id))');
  for (const [id, balance] of Object.entries(accounts)) await pool.query('INSERT INTO accounts (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET balance = $2', [id, balance]);
}

export async function transferWork(client: pg.PoolClient, b: Branch): Promise<void | { vote: 'no'; reason: string }> {
  const { account, delta } = JSON.parse(b.payload.toString('utf8')) as { account: string; delta: number };
  await client.query("SET LOCAL lock_timeout = '2000ms'");
  await client.query("SET LOCAL statement_timeout = '5000ms'");
  const r = await client.query('SELECT balance FROM accounts WHERE id = $1 FOR UPDATE', [account]);
  if (r.rowCount === 0) return { vote: 'no', reason: `no account ${account}` };
  if (Number(r.rows[0].balance) + delta < 0) return { vote: 'no', reason: `insufficient funds in ${account}` };
  await client.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [account, delta]);
  await client.query('INSERT INTO transfers (gid, branch_id, account, delta) VALUES ($1, $2, $3, $4)', [b.globalId, b.branchId, account, delta]);
}

export async function balances(pool: pg.Pool): Promise<Record<string, number>> {
  const r = await pool.query('SELECT id, balance FROM accounts ORDER BY id');
  return Object.fromEntries(r.rows.map((x: { id: string; balance: string }) => [x.id, Number(x.balance)]));
}

export interface TransferRow {
  gid: string;
  branchId: string;
  account: string;
  delta: number;
}

export async function transferRows(pool: pg.Pool): Promise<TransferRow[]> {
  const r = await pool.query('SELECT gid, branch_id, account, delta FROM transfers');
  return r.rows.map((x: { gid: string; branch_id: string; account: string; delta: string }) => ({ gid: x.gid, branchId: x.branch_id, account: x.account, delta: Number(x.delta) }));
}

/** The PostgreSQL gids of the transactions still prepared in this pool's database. */
export async function preparedGids(pool: pg.Pool): Promise<string[]> {
  const r = await pool.query('SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared');
  return r.rows.map((x: { gid: string }) => x.gid);
}
