/** Encoding of ConfChange entry payloads. JSON is enough: conf changes are rare and small. */
import { invariant } from './errors.js';
import { ConfChange, ConfChangeType } from './types.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return enc.encode(JSON.stringify({ type: cc.type, nodeId: cc.nodeId, context: cc.context }));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const o = JSON.parse(dec.decode(data)) as ConfChange;
  invariant(Object.values(ConfChangeType).includes(o.type), `bad conf change type ${String(o.type)}`);
  invariant(Number.isInteger(o.nodeId) && o.nodeId > 0, `bad conf change node id ${String(o.nodeId)}`);
  return o.context === undefined ? { type: o.type, nodeId: o.nodeId } : o;
}

/** Bytes → string key, for maps keyed by opaque contexts. */
export function bytesKey(b: Uint8Array | undefined): string {
  if (!b) return '';
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

export function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
