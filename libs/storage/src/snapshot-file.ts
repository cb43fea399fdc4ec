/**
 * Snapshot files: `snap/<term:016x>-<index:016x>.snap`, written atomically by the WAL (tmp file, fsync,
 * rename, fsync of the directory).
 *
 *   off  size  field
 *   0    8     magic "SYNSNAP1"
 *   8    4     format version (1)
 *   12   4     crc32 of every byte from offset 16 to the end of the file
 *   16   8     term
 *   24   8     index
 *   32   4     voter count V, then V x u64 node ids
 *   ..   4     learner count L, then L x u64 node ids
 *   ..   8     data length D, then D bytes of state-machine data (the file ends there)
 */
import { crc32 } from 'node:zlib';
import { Snapshot } from '@app/raft';
import { readU64, writeU64 } from './codec.js';
import { StorageCorruptionError } from './errors.js';

const MAGIC = Buffer.from('SYNSNAP1', 'latin1');
const VERSION = 1;
const HEADER_BYTES = 16;
const NAME_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
export const SNAPSHOT_TMP_SUFFIX = '.tmp';

export function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}

export function snapshotFileName(term: number, index: number): string {
  return `${hex16(term)}-${hex16(index)}.snap`;
}

export function parseSnapshotFileName(name: string): { term: number; index: number } | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  const term = parseInt(m[1], 16);
  const index = parseInt(m[2], 16);
  if (!Number.isSafeInteger(term) || !Number.isSafeInteger(index)) return undefined;
  return { term, index };
}

export function encodeSnapshotFile(snap: Snapshot): Buffer {
  const { voters, learners } = snap.metadata.confState;
  const size = HEADER_BYTES + 16 + 4 + voters.length * 8 + 4 + learners.length * 8 + 8 + snap.data.length;
  const buf = Buffer.alloc(size);
  MAGIC.copy(buf, 0);
  buf.writeUInt32LE(VERSION, 8);
  let p = HEADER_BYTES;
  writeU64(buf, p, snap.metadata.term);
  writeU64(buf, p + 8, snap.metadata.index);
  p += 16;
  for (const ids of [voters, learners]) {
    buf.writeUInt32LE(ids.length, p);
    p += 4;
    for (const id of ids) {
      writeU64(buf, p, id);
      p += 8;
    }
  }
  writeU64(buf, p, snap.data.length);
  p += 8;
  buf.set(snap.data, p);
  buf.writeUInt32LE(crc32(buf.subarray(HEADER_BYTES)) >>> 0, 12);
  return buf;
}

/** Verifies and decodes a snapshot file; throws StorageCorruptionError naming `path` and the offset. */
export function decodeSnapshotFile(buf: Buffer, path: string): Snapshot {
  const fail = (offset: number, reason: string): never => {
    throw new StorageCorruptionError(path, offset, `snapshot file: ${reason}`);
  };
  if (buf.length < HEADER_BYTES + 16) fail(0, `file too short (${buf.length} bytes)`);
  if (!buf.subarray(0, 8).equals(MAGIC)) fail(0, 'bad magic');
  const version = buf.readUInt32LE(8);
  if (version !== VERSION) fail(8, `unsupported version ${version}`);
  const stored = buf.readUInt32LE(12);
  const actual = crc32(buf.subarray(HEADER_BYTES)) >>> 0;
  if (stored !== actual) {
    fail(
      12,
      `checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)} over bytes ${HEADER_BYTES}..${buf.length})`,
    );
  }
  let p = HEADER_BYTES;
  const need = (n: number): void => {
    if (p + n > buf.length) fail(p, `truncated structure (needs ${n} bytes, ${buf.length - p} left)`);
  };
  const u64 = (): number => {
    need(8);
    const v = readU64(buf, p);
    if (v < 0) fail(p, 'integer out of range');
    p += 8;
    return v;
  };
  const term = u64();
  const index = u64();
  const ids = (): number[] => {
    need(4);
    const n = buf.readUInt32LE(p);
    p += 4;
    need(n * 8);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(u64());
    return out;
  };
  const voters = ids();
  const learners = ids();
  const dataLen = u64();
  need(dataLen);
  if (p + dataLen !== buf.length) fail(p, `${buf.length - p - dataLen} trailing bytes after the data`);
  const data = new Uint8Array(dataLen);
  data.set(buf.subarray(p, p + dataLen));
  return { metadata: { term, index, confState: { voters, learners } }, data };
}
