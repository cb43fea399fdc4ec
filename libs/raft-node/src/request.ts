/**
 * The driver's header on proposed commands. The core does not tell a proposer which index its entry got, so
 * every command carries a request id unique to the proposing node's incarnation: when an entry is applied (on
 * any node) the driver strips the header before calling the state machine and, on the proposer, resolves the
 * waiting promise by request id.
 *
 * Layout (big-endian): magic u8 (0x5e) | nodeId u32 | incarnation u32 | counter u64 (< 2^53) | command…
 * The incarnation is random per start, so a counter restarting at 1 after a restart cannot be confused with a
 * proposal of an earlier run still being committed. ReadIndex contexts use the same 17 bytes without a command.
 */
import { NodeId } from '@app/raft';

export const REQUEST_MAGIC = 0x5e;
export const REQUEST_HEADER_BYTES = 17;

export interface RequestId {
  nodeId: NodeId;
  incarnation: number;
  counter: number;
}

export function encodeRequest(id: RequestId, command: Uint8Array): Uint8Array {
  const out = new Uint8Array(REQUEST_HEADER_BYTES + command.length);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, REQUEST_MAGIC);
  dv.setUint32(1, id.nodeId);
  dv.setUint32(5, id.incarnation);
  dv.setUint32(9, Math.floor(id.counter / 0x1_0000_0000));
  dv.setUint32(13, id.counter >>> 0);
  out.set(command, REQUEST_HEADER_BYTES);
  return out;
}

/** Decodes the header; undefined when `data` is not a framed request. */
export function decodeRequest(data: Uint8Array): { id: RequestId; command: Uint8Array } | undefined {
  if (data.length < REQUEST_HEADER_BYTES || data[0] !== REQUEST_MAGIC) return undefined;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const id: RequestId = {
    nodeId: dv.getUint32(1),
    incarnation: dv.getUint32(5),
    counter: dv.getUint32(9) * 0x1_0000_0000 + dv.getUint32(13),
  };
  return { id, command: data.subarray(REQUEST_HEADER_BYTES) };
}
