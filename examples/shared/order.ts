/** The order line both services agree on (the 2PC branch payload and the outbox message payload), and its validation. */
import { HttpError } from './http.js';

export interface OrderLine {
  orderId: string;
  sku: string;
  qty: number;
}

export const SKU_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const MAX_QTY = 1000;
const SHAPE = 'expected a JSON object {"sku": string, "qty": integer}';

/** Validates the body of POST /orders and POST /orders/async; HttpError 400 with a message naming the field. */
export function parseOrderInput(body: unknown): { sku: string; qty: number } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, `request body must be a JSON object: ${SHAPE}`);
  const { sku, qty, ...rest } = body as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new HttpError(400, `unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => `"${k}"`).join(', ')}: ${SHAPE}`);
  if (sku === undefined) throw new HttpError(400, `"sku" is required: ${SHAPE}`);
  if (typeof sku !== 'string' || !SKU_RE.test(sku)) throw new HttpError(400, '"sku" must be a string of 1..64 characters from [A-Za-z0-9._-]');
  if (qty === undefined) throw new HttpError(400, `"qty" is required: ${SHAPE}`);
  if (typeof qty !== 'number' || !Number.isInteger(qty) || qty < 1 || qty > MAX_QTY) throw new HttpError(400, `"qty" must be an integer from 1 to ${MAX_QTY}, got ${JSON.stringify(qty)}`);
  return { sku, qty };
}

/** Parses a payload written by the order service; a string says what is wrong with it. */
export function parseOrderLine(payload: Buffer): OrderLine | string {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    return 'payload is not JSON';
  }
  const o = v as Partial<OrderLine> | null;
  if (typeof o !== 'object' || o === null) return 'payload is not an object';
  if (typeof o.orderId !== 'string' || o.orderId.length === 0 || o.orderId.length > 64) return 'payload has no valid orderId';
  if (typeof o.sku !== 'string' || !SKU_RE.test(o.sku)) return 'payload has no valid sku';
  if (typeof o.qty !== 'number' || !Number.isInteger(o.qty) || o.qty < 1 || o.qty > MAX_QTY) return 'payload has no valid qty';
  return { orderId: o.orderId, sku: o.sku, qty: o.qty };
}
