/**
 * Binary layout of WAL records (see docs/storage.md). All integers are little-endian; 64-bit fields hold
 * non-negative safe integers (< 2^53) written as two u32 halves.
 *
 * Record = 16-byte header + payload:
 *
 *   off  size  field
 *   0    4     payload length in bytes (excluding the header)
 *   4    4     crc32 over bytes [0,4) then [8, 16 + length)  (zlib.crc32, chained)
 *   8    1     record type (RecordType; 0 is never valid, so a zero-filled tail never parses)
 *   9    1     flags, must be 0 (reserved)
 *   10   6     synced offset (u48): how many bytes of this segment were durable (fdatasync'ed) when the
 *              record was written. Recovery uses it to tell a torn tail from corruption (wal.ts).
 *
 * Payloads:
 *   Entry          term u64 | index u64 | entry type u8 | data (length - 17 bytes)
 *   HardState      term u64 | vote u64 | commit u64
 *   SnapshotMarker index u64 | term u64 | flags u8 (bit 0: the snapshot replaced the whole log)
 *   SegmentHeader  magic "SYNW" | version u16 | 0 u16 | seq u64 | firstIndex u64 |
 *                  hardState (term, vote, commit: 3 x u64) | snapshot index u64 | snapshot term u64
 */
import { crc32 } from 'node:zlib';
import { Entry, EntryType, HardState } from '@app/raft';

export const RECORD_HEADER_BYTES = 16;

export enum RecordType {
  Entry = 1,
  HardState = 2,
  SnapshotMarker = 3,
  SegmentHeader = 4,
}

export const ENTRY_FIXED_BYTES = 17;
export const HARD_STATE_BYTES = 24;
export const SNAPSHOT_MARKER_BYTES = 17;
export const SEGMENT_HEADER_BYTES = 64;
const SEGMENT_MAGIC = 0x574e5953; // "SYNW" little-endian
const SEGMENT_VERSION = 1;
const MAX_U48 = 2 ** 48 - 1;

export type WalRecord =
  | { type: RecordType.Entry; entry: Entry }
  | { type: RecordType.HardState; hardState: HardState }
  | { type: RecordType.SnapshotMarker; index: number; term: number; resetLog: boolean }
  | {
      type: RecordType.SegmentHeader;
      seq: number;
      firstIndex: number;
      hardState: HardState;
      snapIndex: number;
      snapTerm: number;
    };

// ---- integers ----

export function writeU64(buf: Buffer, off: number, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative safe integer: ${n}`);
  buf.writeUInt32LE(n % 0x100000000, off);
  buf.writeUInt32LE(Math.floor(n / 0x100000000), off + 4);
}

/** Reads a u64; returns -1 when it does not fit a safe integer (the caller reports corruption). */
export function readU64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  if (hi > 0x1fffff) return -1;
  return hi * 0x100000000 + buf.readUInt32LE(off);
}

// ---- encoding ----

export function entryRecordBytes(e: Entry): number {
  return RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES + e.data.length;
}
export const HARD_STATE_RECORD_BYTES = RECORD_HEADER_BYTES + HARD_STATE_BYTES;
export const SNAPSHOT_MARKER_RECORD_BYTES = RECORD_HEADER_BYTES + SNAPSHOT_MARKER_BYTES;
export const SEGMENT_HEADER_RECORD_BYTES = RECORD_HEADER_BYTES + SEGMENT_HEADER_BYTES;

function recordCrc(buf: Buffer, off: number, payloadLen: number): number {
  return crc32(buf.subarray(off + 8, off + RECORD_HEADER_BYTES + payloadLen), crc32(buf.subarray(off, off + 4))) >>> 0;
}

function writeHeader(buf: Buffer, off: number, payloadLen: number, type: RecordType, synced: number): void {
  if (synced > MAX_U48) throw new RangeError(`segment offset ${synced} exceeds 2^48`);
  buf.writeUInt32LE(payloadLen, off);
  buf.writeUInt8(type, off + 8);
  buf.writeUInt8(0, off + 9);
  buf.writeUIntLE(synced, off + 10, 6);
}

/** Fills in the crc of a record whose header and payload are written; returns the offset after it. */
function seal(buf: Buffer, off: number, payloadLen: number): number {
  buf.writeUInt32LE(recordCrc(buf, off, payloadLen), off + 4);
  return off + RECORD_HEADER_BYTES + payloadLen;
}

export function encodeEntry(buf: Buffer, off: number, e: Entry, synced: number): number {
  const len = ENTRY_FIXED_BYTES + e.data.length;
  writeHeader(buf, off, len, RecordType.Entry, synced);
  const p = off + RECORD_HEADER_BYTES;
  writeU64(buf, p, e.term);
  writeU64(buf, p + 8, e.index);
  buf.writeUInt8(e.type, p + 16);
  buf.set(e.data, p + ENTRY_FIXED_BYTES);
  return seal(buf, off, len);
}

function writeHardState(buf: Buffer, p: number, hs: HardState): void {
  writeU64(buf, p, hs.term);
  writeU64(buf, p + 8, hs.vote);
  writeU64(buf, p + 16, hs.commit);
}

export function encodeHardState(buf: Buffer, off: number, hs: HardState, synced: number): number {
  writeHeader(buf, off, HARD_STATE_BYTES, RecordType.HardState, synced);
  writeHardState(buf, off + RECORD_HEADER_BYTES, hs);
  return seal(buf, off, HARD_STATE_BYTES);
}

export function encodeSnapshotMarker(
  buf: Buffer,
  off: number,
  index: number,
  term: number,
  resetLog: boolean,
  synced: number,
): number {
  writeHeader(buf, off, SNAPSHOT_MARKER_BYTES, RecordType.SnapshotMarker, synced);
  const p = off + RECORD_HEADER_BYTES;
  writeU64(buf, p, index);
  writeU64(buf, p + 8, term);
  buf.writeUInt8(resetLog ? 1 : 0, p + 16);
  return seal(buf, off, SNAPSHOT_MARKER_BYTES);
}

export function encodeSegmentHeader(
  buf: Buffer,
  off: number,
  h: { seq: number; firstIndex: number; hardState: HardState; snapIndex: number; snapTerm: number },
  synced: number,
): number {
  writeHeader(buf, off, SEGMENT_HEADER_BYTES, RecordType.SegmentHeader, synced);
  const p = off + RECORD_HEADER_BYTES;
  buf.writeUInt32LE(SEGMENT_MAGIC, p);
  buf.writeUInt16LE(SEGMENT_VERSION, p + 4);
  buf.writeUInt16LE(0, p + 6);
  writeU64(buf, p + 8, h.seq);
  writeU64(buf, p + 16, h.firstIndex);
  writeHardState(buf, p + 24, h.hardState);
  writeU64(buf, p + 48, h.snapIndex);
  writeU64(buf, p + 56, h.snapTerm);
  return seal(buf, off, SEGMENT_HEADER_BYTES);
}

// ---- decoding ----

export type DecodeResult =
  | { ok: true; record: WalRecord; next: number }
  /**
   * `fatal`: the frame is intact (its crc matches) but its content is invalid. A crash cannot produce that,
   * so it is corruption wherever it occurs. Non-fatal failures (short frame, bad crc, zero header) may be a
   * torn write.
   */
  | { ok: false; fatal: boolean; reason: string };

/** Checks framing and crc of the record at `off`; returns its payload length, or a reason it is not valid. */
function checkFrame(buf: Buffer, off: number): { len: number } | { reason: string } {
  const avail = buf.length - off;
  if (avail < RECORD_HEADER_BYTES) return { reason: `incomplete record header (${avail} of ${RECORD_HEADER_BYTES} bytes)` };
  const len = buf.readUInt32LE(off);
  const type = buf[off + 8];
  if (type === 0 && len === 0) return { reason: 'zero-filled record header' };
  if (avail - RECORD_HEADER_BYTES < len) {
    return { reason: `incomplete record payload (${avail - RECORD_HEADER_BYTES} of ${len} bytes)` };
  }
  const stored = buf.readUInt32LE(off + 4);
  const actual = recordCrc(buf, off, len);
  if (stored !== actual) {
    return { reason: `crc mismatch (stored ${hex32(stored)}, computed ${hex32(actual)}) on a ${len}-byte record` };
  }
  return { len };
}

export function decodeRecord(buf: Buffer, off: number): DecodeResult {
  const frame = checkFrame(buf, off);
  if ('reason' in frame) return { ok: false, fatal: false, reason: frame.reason };
  const len = frame.len;
  const type = buf[off + 8] as RecordType;
  const p = off + RECORD_HEADER_BYTES;
  const next = p + len;
  const bad = (reason: string): DecodeResult => ({ ok: false, fatal: true, reason });
  if (buf[off + 9] !== 0) return bad(`unknown record flags ${buf[off + 9]}`);
  switch (type) {
    case RecordType.Entry: {
      if (len < ENTRY_FIXED_BYTES) return bad(`entry record too short (${len} bytes)`);
      const term = readU64(buf, p);
      const index = readU64(buf, p + 8);
      const etype = buf[p + 16];
      if (term < 0 || index <= 0) return bad(`invalid entry term ${term} / index ${index}`);
      if (etype !== EntryType.Normal && etype !== EntryType.ConfChange) return bad(`unknown entry type ${etype}`);
      const data = new Uint8Array(len - ENTRY_FIXED_BYTES);
      data.set(buf.subarray(p + ENTRY_FIXED_BYTES, next));
      return { ok: true, next, record: { type, entry: { term, index, type: etype as EntryType, data } } };
    }
    case RecordType.HardState: {
      if (len !== HARD_STATE_BYTES) return bad(`hard state record has ${len} bytes`);
      const hardState = readHardState(buf, p);
      if (!hardState) return bad('hard state field out of range');
      return { ok: true, next, record: { type, hardState } };
    }
    case RecordType.SnapshotMarker: {
      if (len !== SNAPSHOT_MARKER_BYTES) return bad(`snapshot marker record has ${len} bytes`);
      const index = readU64(buf, p);
      const term = readU64(buf, p + 8);
      const flags = buf[p + 16];
      if (index <= 0 || term < 0 || flags > 1) return bad('snapshot marker field out of range');
      return { ok: true, next, record: { type, index, term, resetLog: flags === 1 } };
    }
    case RecordType.SegmentHeader: {
      if (len !== SEGMENT_HEADER_BYTES) return bad(`segment header record has ${len} bytes`);
      if (buf.readUInt32LE(p) !== SEGMENT_MAGIC) return bad('bad segment header magic');
      const version = buf.readUInt16LE(p + 4);
      if (version !== SEGMENT_VERSION) return bad(`unsupported segment version ${version}`);
      const seq = readU64(buf, p + 8);
      const firstIndex = readU64(buf, p + 16);
      const hardState = readHardState(buf, p + 24);
      const snapIndex = readU64(buf, p + 48);
      const snapTerm = readU64(buf, p + 56);
      if (seq < 0 || firstIndex < 0 || !hardState || snapIndex < 0 || snapTerm < 0) {
        return bad('segment header field out of range');
      }
      return { ok: true, next, record: { type, seq, firstIndex, hardState, snapIndex, snapTerm } };
    }
    default:
      return bad(`unknown record type ${type}`);
  }
}

function readHardState(buf: Buffer, p: number): HardState | undefined {
  const term = readU64(buf, p);
  const vote = readU64(buf, p + 8);
  const commit = readU64(buf, p + 16);
  if (term < 0 || vote < 0 || commit < 0) return undefined;
  return { term, vote, commit };
}

/**
 * Looks for an intact record that starts after `badOffset` and was written after the bytes at `badOffset`
 * had been made durable (its synced offset is beyond `badOffset`). If there is one, the bad record was
 * acknowledged data that later went bad: corruption, not a torn write. Returns its offset, or undefined.
 *
 * Every byte offset is tried (the bad record's length field cannot be trusted); intact records are then
 * followed frame by frame. A zero tail is skipped quickly (a zero header never has a valid crc).
 */
export function findRecordSyncedPast(buf: Buffer, badOffset: number): number | undefined {
  let p = badOffset + 1;
  while (p + RECORD_HEADER_BYTES <= buf.length) {
    const type = buf[p + 8];
    if (type >= RecordType.Entry && type <= RecordType.SegmentHeader && buf[p + 9] === 0) {
      const frame = checkFrame(buf, p);
      if ('len' in frame) {
        if (buf.readUIntLE(p + 10, 6) > badOffset) return p;
        p += RECORD_HEADER_BYTES + frame.len;
        continue;
      }
    }
    p++;
  }
  return undefined;
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
