/**
 * Raft messages (libs/raft/src/types.ts) ↔ the `synod.peer.v1` protobuf shapes, as proto-loader presents them
 * with the shared options (camelCase, numbers for uint64, enum names as strings). The protobuf encoding itself
 * is done by the gRPC method's serializer; this module only maps field by field. Entry data, snapshot data
 * and contexts are bytes on the wire and Uint8Array views (no copy) after decoding.
 */
import { Entry, EntryType, Message, MessageType, Snapshot } from '@app/raft';

export interface WireEntry {
  term: number;
  index: number;
  type: string;
  data: Uint8Array;
}

export interface WireSnapshot {
  metadata: { index: number; term: number; confState: { voters: number[]; learners: number[] } | null } | null;
  data: Uint8Array;
}

export interface WireMessage {
  type: string;
  to: number;
  from: number;
  term: number;
  logTerm: number;
  index: number;
  entries: WireEntry[];
  commit: number;
  snapshot?: WireSnapshot | null;
  reject: boolean;
  rejectHint: number;
  context?: Uint8Array | null;
}

/** `AppResp` → `APP_RESP`: the proto enum name of every core message type. */
function upperSnake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

const TYPE_TO_WIRE = new Map<MessageType, string>(Object.values(MessageType).map((t) => [t, upperSnake(t)]));
const TYPE_FROM_WIRE = new Map<string, MessageType>([...TYPE_TO_WIRE].map(([k, v]) => [v, k]));
const ENTRY_TYPE_TO_WIRE: Record<EntryType, string> = { [EntryType.Normal]: 'NORMAL', [EntryType.ConfChange]: 'CONF_CHANGE' };
const ENTRY_TYPE_FROM_WIRE = new Map<string, EntryType>([
  ['NORMAL', EntryType.Normal],
  ['CONF_CHANGE', EntryType.ConfChange],
]);

/** The proto enum names used for the core's message types (checked against the .proto in the tests). */
export function wireMessageTypeNames(): string[] {
  return [...TYPE_FROM_WIRE.keys()];
}

export class PeerCodecError extends Error {
  override readonly name = 'PeerCodecError';
}

export function entryToWire(e: Entry): WireEntry {
  return { term: e.term, index: e.index, type: ENTRY_TYPE_TO_WIRE[e.type], data: e.data };
}

export function snapshotToWire(s: Snapshot, withData = true): WireSnapshot {
  const cs = s.metadata.confState;
  return {
    metadata: { index: s.metadata.index, term: s.metadata.term, confState: { voters: cs.voters, learners: cs.learners } },
    data: withData ? s.data : new Uint8Array(0),
  };
}

export function messageToWire(m: Message, withSnapshotData = true): WireMessage {
  const w: WireMessage = {
    type: TYPE_TO_WIRE.get(m.type)!,
    to: m.to,
    from: m.from,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map(entryToWire),
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
  };
  if (m.snapshot) w.snapshot = snapshotToWire(m.snapshot, withSnapshotData);
  if (m.context) w.context = m.context;
  return w;
}

/** A Uint8Array view on a decoded Buffer (protobufjs hands out Buffers; the core wants plain Uint8Arrays). */
export function bytes(b: Uint8Array | null | undefined): Uint8Array {
  if (!b) return new Uint8Array(0);
  return Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function entryFromWire(w: WireEntry): Entry {
  const type = ENTRY_TYPE_FROM_WIRE.get(w.type);
  if (type === undefined) throw new PeerCodecError(`unknown entry type ${String(w.type)} in entry ${w.index}`);
  return { term: w.term, index: w.index, type, data: bytes(w.data) };
}

export function snapshotFromWire(w: WireSnapshot, data?: Uint8Array): Snapshot {
  const md = w.metadata;
  const cs = md?.confState;
  return {
    metadata: {
      index: md?.index ?? 0,
      term: md?.term ?? 0,
      confState: { voters: cs ? [...cs.voters] : [], learners: cs ? [...cs.learners] : [] },
    },
    data: data ?? bytes(w.data),
  };
}

export function messageFromWire(w: WireMessage, snapshotData?: Uint8Array): Message {
  const type = TYPE_FROM_WIRE.get(w.type);
  if (type === undefined) throw new PeerCodecError(`unknown message type ${String(w.type)} from ${w.from}`);
  const m: Message = {
    type,
    to: w.to,
    from: w.from,
    term: w.term,
    logTerm: w.logTerm,
    index: w.index,
    entries: w.entries.map(entryFromWire),
    commit: w.commit,
    reject: w.reject,
    rejectHint: w.rejectHint,
  };
  if (w.snapshot) m.snapshot = snapshotFromWire(w.snapshot, snapshotData);
  if (w.context !== undefined && w.context !== null) m.context = bytes(w.context);
  return m;
}

/** Approximate encoded size of a message, to cut batches below the gRPC message size limit. */
export function messageSize(m: Message): number {
  let n = 48 + (m.context?.length ?? 0);
  for (const e of m.entries) n += e.data.length + 24;
  if (m.snapshot) n += m.snapshot.data.length + 16 * (m.snapshot.metadata.confState.voters.length + m.snapshot.metadata.confState.learners.length + 2);
  return n;
}
