/**
 * The order service's data and its two ways of placing an order:
 * - `placeTwoPhase`: one global transaction (Begin → RegisterBranch order → RegisterBranch stock → Commit); the
 *   order row is written by this service's own participant branch (`orderBranch`), the stock decrement by the
 *   inventory service's branch; both commit or neither does.
 * - `placeAsync`: the local message table: the order row and an outbox message (topic `orders`, key = sku) in
 *   one local transaction; the OutboxRelay forwards it, the inventory service applies it exactly once.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { TxnClient } from '@app/client';
import type { Outbox } from '@app/outbox';
import type { Branch, NoVote } from '@app/participant';
import { HttpError, Reply } from '../shared/http.js';
import { parseOrderLine } from '../shared/order.js';
import type { Logger } from '../shared/config.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS orders (
  id         uuid PRIMARY KEY,
  sku        text NOT NULL,
  qty        integer NOT NULL CHECK (qty > 0),
  mode       text NOT NULL CHECK (mode IN ('2pc', 'async')),
  global_id  text,          -- 2pc: the coordinator's transaction id
  message_id uuid,          -- async: the outbox message id
  created_at timestamptz NOT NULL DEFAULT now()
);`;

export async function ensureSchema(pool: pg.Pool): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query("SELECT pg_advisory_xact_lock(hashtext('example-orders-schema'))");
    await c.query(SCHEMA);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** Phase one of the order branch: the order row, inside the prepared transaction. */
export async function orderBranch(client: pg.PoolClient, branch: Branch): Promise<void | NoVote> {
  const line = parseOrderLine(branch.payload);
  if (typeof line === 'string') return { vote: 'no', reason: `bad order line: ${line}` };
  await client.query("INSERT INTO orders (id, sku, qty, mode, global_id) VALUES ($1, $2, $3, '2pc', $4)", [line.orderId, line.sku, line.qty, branch.globalId]);
}

export interface OrderDeps {
  pool: pg.Pool;
  txn: TxnClient;
  outbox: Outbox;
  /** host:port of this service's participant, as the coordinator reaches it. */
  self: string;
  /** host:port of the inventory service's participant. */
  inventory: string;
  txnTimeoutMs: number;
  commitWaitMs: number;
  log: Logger;
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export async function placeTwoPhase(d: OrderDeps, sku: string, qty: number): Promise<Reply> {
  const orderId = randomUUID();
  const line = JSON.stringify({ orderId, sku, qty });
  let globalId: string;
  try {
    ({ globalId } = await d.txn.begin({ timeoutMs: d.txnTimeoutMs }));
  } catch (err) {
    throw new HttpError(503, `transaction coordinator unavailable: ${messageOf(err)}`);
  }
  try {
    await d.txn.registerBranch(globalId, 'order', d.self, line);
    await d.txn.registerBranch(globalId, 'stock', d.inventory, line);
  } catch (err) {
    await d.txn.abort(globalId, `order service: registering branches failed: ${messageOf(err)}`).catch(() => undefined);
    throw new HttpError(503, `could not register the branches of transaction ${globalId}: ${messageOf(err)}`);
  }
  let state: string;
  let reason = '';
  let completed = false;
  try {
    // wait: the answer comes once phase two reached both services, so the order and the stock are visible
    ({ state, reason, completed } = await d.txn.commit(globalId, { wait: true, deadlineMs: d.commitWaitMs }));
  } catch (err) {
    // no answer in time: the decision may still have been made; ask for it
    const s = await d.txn.status(globalId).catch(() => undefined);
    const decided = s?.state === 'NEEDS_ATTENTION' ? s.decision : s?.state;
    if (decided !== 'COMMITTED' && decided !== 'ABORTED') throw new HttpError(503, `outcome of transaction ${globalId} not known yet (${messageOf(err)}); it will be committed or aborted by the coordinator`);
    state = decided;
    reason = s!.reason;
  }
  d.log.info(`order ${orderId} (${qty} × ${sku}) via 2PC ${globalId}: ${state}${reason ? ` (${reason})` : ''}`);
  if (state === 'COMMITTED') return { status: 201, body: { orderId, sku, qty, globalId, state, completed } };
  return { status: 409, body: { error: reason || `transaction ${state}`, orderId, globalId, state } };
}

export async function placeAsync(d: OrderDeps, sku: string, qty: number): Promise<Reply> {
  const orderId = randomUUID();
  const c = await d.pool.connect();
  let messageId: string;
  try {
    await c.query('BEGIN');
    // one local transaction: the message exists if and only if the order does
    messageId = await d.outbox.add(c, { topic: 'orders', key: sku, payload: JSON.stringify({ orderId, sku, qty }), headers: { 'order-id': orderId } });
    await c.query("INSERT INTO orders (id, sku, qty, mode, message_id) VALUES ($1, $2, $3, 'async', $4)", [orderId, sku, qty, messageId]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
  d.log.info(`order ${orderId} (${qty} × ${sku}) via outbox message ${messageId}: accepted`);
  return { status: 202, body: { orderId, sku, qty, messageId, state: 'ACCEPTED' } };
}
