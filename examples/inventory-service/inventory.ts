/**
 * The inventory service's data and business rules: a `stock` table (CHECK stock >= 0) and a `reservations`
 * table, the 2PC branch work (decrement stock inside the prepared transaction, or vote no), and the outbox
 * consumer's handler (decrement stock exactly once per message; out of stock → a rejected reservation).
 */
import type pg from 'pg';
import type { Branch, NoVote } from '@app/participant';
import type { InboxMessage } from '@app/outbox';
import { parseOrderLine } from '../shared/order.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS stock (
  sku   text PRIMARY KEY,
  stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
  order_id   text PRIMARY KEY,
  sku        text NOT NULL,
  qty        integer NOT NULL,
  status     text NOT NULL CHECK (status IN ('reserved', 'rejected')),
  via        text NOT NULL CHECK (via IN ('2pc', 'outbox')),
  message_id text,
  reason     text,
  created_at timestamptz NOT NULL DEFAULT now()
);`;

export async function ensureSchema(pool: pg.Pool): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    // concurrent CREATE TABLE IF NOT EXISTS can collide: serialize schema set-up (two replicas starting together)
    await c.query("SELECT pg_advisory_xact_lock(hashtext('example-inventory-schema'))");
    await c.query(SCHEMA);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** `widget=10,gadget=3` → inserted when the sku is not there yet (existing stock is never overwritten). */
export function parseSeed(spec: string): [string, number][] {
  if (spec.trim() === '') return [];
  return spec.split(',').map((part) => {
    const m = /^\s*([A-Za-z0-9._-]{1,64})=(\d{1,9})\s*$/.exec(part);
    if (!m) throw new Error(`--seed: "${part}" is not sku=quantity`);
    return [m[1], Number(m[2])];
  });
}

export async function seed(pool: pg.Pool, items: [string, number][]): Promise<void> {
  for (const [sku, n] of items) await pool.query('INSERT INTO stock (sku, stock) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING', [sku, n]);
}

/** Phase one of a 2PC order: runs inside the branch's transaction; PREPARE TRANSACTION follows a yes. */
export async function reserveBranch(client: pg.PoolClient, branch: Branch): Promise<void | NoVote> {
  const line = parseOrderLine(branch.payload);
  if (typeof line === 'string') return { vote: 'no', reason: `bad order line: ${line}` };
  const r = await client.query<{ stock: number }>('SELECT stock FROM stock WHERE sku = $1 FOR UPDATE', [line.sku]);
  if (r.rowCount === 0) return { vote: 'no', reason: `unknown sku ${line.sku}` };
  const have = r.rows[0].stock;
  if (have < line.qty) return { vote: 'no', reason: `out of stock: ${line.sku} has ${have}, the order needs ${line.qty}` };
  await client.query('UPDATE stock SET stock = stock - $2 WHERE sku = $1', [line.sku, line.qty]);
  await client.query("INSERT INTO reservations (order_id, sku, qty, status, via) VALUES ($1, $2, $3, 'reserved', '2pc')", [line.orderId, line.sku, line.qty]);
}

/**
 * An outbox message from the order service, applied inside the inbox transaction (InboxConsumer inserted the
 * message id into synod_inbox first; both commit together). It never throws for a business reason: a throw
 * makes the coordinator redeliver the message forever, and "out of stock" will not fix itself. So a message
 * that cannot be honoured becomes a `rejected` reservation with the reason.
 */
export async function applyOrderMessage(client: pg.PoolClient, m: InboxMessage): Promise<'reserved' | 'rejected' | 'seen'> {
  const line = parseOrderLine(m.payload);
  if (typeof line === 'string') {
    await client.query("INSERT INTO reservations (order_id, sku, qty, status, via, message_id, reason) VALUES ($1, '', 0, 'rejected', 'outbox', $2, $3) ON CONFLICT DO NOTHING", [`message:${m.messageId}`, m.messageId, `bad order line: ${line}`]);
    return 'rejected';
  }
  // business-level idempotency on top of the inbox's: one reservation per order, whatever the message id
  const seen = await client.query('SELECT 1 FROM reservations WHERE order_id = $1', [line.orderId]);
  if (seen.rowCount !== 0) return 'seen';
  const upd = await client.query('UPDATE stock SET stock = stock - $2 WHERE sku = $1 AND stock >= $2', [line.sku, line.qty]);
  if (upd.rowCount === 1) {
    await client.query("INSERT INTO reservations (order_id, sku, qty, status, via, message_id) VALUES ($1, $2, $3, 'reserved', 'outbox', $4)", [line.orderId, line.sku, line.qty, m.messageId]);
    return 'reserved';
  }
  const r = await client.query<{ stock: number }>('SELECT stock FROM stock WHERE sku = $1', [line.sku]);
  const reason = r.rowCount === 0 ? `unknown sku ${line.sku}` : `out of stock: ${line.sku} has ${r.rows[0].stock}, the order needs ${line.qty}`;
  await client.query("INSERT INTO reservations (order_id, sku, qty, status, via, message_id, reason) VALUES ($1, $2, $3, 'rejected', 'outbox', $4, $5)", [line.orderId, line.sku, line.qty, m.messageId, reason]);
  return 'rejected';
}
