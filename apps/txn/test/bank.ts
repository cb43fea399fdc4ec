/** The bank used by the coordinator's tests: an `accounts` table per participant database, and the branch work. */
import type pg from 'pg';
import type { Branch } from '@app/participant';

export async function createAccounts(pool: pg.Pool, accounts: Record<string, number>): Promise<void> {
  await pool.query('CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))');
  for (const [id, balance] of Object.entries(accounts)) await pool.query('INSERT INTO accounts (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET balance = $2', [id, balance]);
}

export async function bankWork(client: pg.PoolClient, b: Branch): Promise<void | { vote: 'no'; reason: string }> {
  const { account, delta } = JSON.parse(b.payload.toString('utf8')) as { account: string; delta: number };
  const r = await client.query('SELECT balance FROM accounts WHERE id = $1 FOR UPDATE', [account]);
  if (r.rowCount === 0) return { vote: 'no', reason: `no account ${account}` };
  if (Number(r.rows[0].balance) + delta < 0) return { vote: 'no', reason: `insufficient funds in ${account}` };
  await client.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [account, delta]);
}

export async function balances(pool: pg.Pool): Promise<Record<string, number>> {
  const r = await pool.query('SELECT id, balance FROM accounts ORDER BY id');
  return Object.fromEntries(r.rows.map((x: { id: string; balance: string }) => [x.id, Number(x.balance)]));
}

export async function preparedCount(pool: pg.Pool): Promise<number> {
  const r = await pool.query("SELECT count(*)::int AS n FROM pg_prepared_xacts WHERE database = current_database()");
  return r.rows[0].n as number;
}
