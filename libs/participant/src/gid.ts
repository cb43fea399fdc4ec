/**
 * The PostgreSQL global transaction identifier (gid) of a branch: `PREPARE TRANSACTION '<gid>'`.
 *
 *   synod:<participant name>:<global id>:<branch id>
 *
 * Each part is encoded byte-wise over its UTF-8 form: `A-Z a-z 0-9 . _ -` stay as they are, every other byte
 * becomes `%XX` (upper-case hex). So the separator `:` never occurs inside a part (the split is unambiguous),
 * the encoding is a bijection (decode(encode(s)) = s, two ids never share a gid), and the gid holds no quote,
 * backslash or non-ASCII byte (it can be written as a SQL string literal, which PREPARE TRANSACTION / COMMIT
 * PREPARED / ROLLBACK PREPARED require: they take no bind parameters).
 *
 * PostgreSQL's limit: a gid is shorter than GIDSIZE = 200 bytes, i.e. at most 199. Ids that do not fit are
 * refused (INVALID_ARGUMENT) rather than truncated or hashed: a hashed gid could not be decoded back to the
 * global id that recovery asks the coordinator about.
 */
import { ParticipantError } from './errors.js';

export const GID_PREFIX = 'synod';
/** PostgreSQL's GIDSIZE (200) minus the terminating NUL. */
export const MAX_GID_BYTES = 199;
/** Longest encoded participant name (leaves room for the ids). */
export const MAX_NAME_BYTES = 64;

const PLAIN = /^[A-Za-z0-9._-]$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const ENCODED = /^(?:[A-Za-z0-9._-]|%[0-9A-F]{2})*$/;

/** Encodes one part (see the file comment). Throws INVALID_ARGUMENT for a string that is not valid Unicode. */
export function encodePart(s: string, what = 'id'): string {
  if (LONE_SURROGATE.test(s)) throw new ParticipantError('INVALID_ARGUMENT', `${what} is not valid Unicode (lone surrogate)`);
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && PLAIN.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** Inverse of {@link encodePart}; undefined if `s` is not an encoded part. */
export function decodePart(s: string): string | undefined {
  if (!ENCODED.test(s)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%') {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  const buf = Buffer.from(bytes);
  const text = buf.toString('utf8');
  // Only the canonical form: invalid UTF-8 or needlessly escaped bytes are never produced by encodePart.
  return Buffer.from(text, 'utf8').equals(buf) && encodePart(text) === s ? text : undefined;
}

/** The gid prefix of every branch of participant `name` (`synod:<name>:`). */
export function gidPrefix(name: string): string {
  return `${GID_PREFIX}:${encodePart(name, 'participant name')}:`;
}

/** Validates a participant name (non-empty, encoded at most {@link MAX_NAME_BYTES} bytes). */
export function validateName(name: unknown): string {
  if (typeof name !== 'string' || name === '') throw new ParticipantError('INVALID_ARGUMENT', 'participant name is required');
  const enc = encodePart(name, 'participant name');
  if (enc.length > MAX_NAME_BYTES) throw new ParticipantError('INVALID_ARGUMENT', `participant name "${name}" is too long: ${enc.length} bytes encoded, at most ${MAX_NAME_BYTES}`);
  return name;
}

/**
 * The gid of branch (globalId, branchId) of participant `name`. Throws INVALID_ARGUMENT for a missing id or
 * for ids whose gid would exceed {@link MAX_GID_BYTES}.
 */
export function branchGid(name: string, globalId: string, branchId: string): string {
  if (typeof globalId !== 'string' || globalId === '') throw new ParticipantError('INVALID_ARGUMENT', 'global_id is required');
  if (typeof branchId !== 'string' || branchId === '') throw new ParticipantError('INVALID_ARGUMENT', 'branch_id is required');
  const gid = `${gidPrefix(name)}${encodePart(globalId, 'global_id')}:${encodePart(branchId, 'branch_id')}`;
  if (gid.length > MAX_GID_BYTES)
    throw new ParticipantError(
      'INVALID_ARGUMENT',
      `global_id and branch_id are too long for a PostgreSQL prepared-transaction id: the gid "${gid.slice(0, 60)}..." is ${gid.length} bytes, at most ${MAX_GID_BYTES} ` +
        `(participant "${name}"; characters outside A-Z a-z 0-9 . _ - take 3 bytes per UTF-8 byte)`,
    );
  return gid;
}

export interface ParsedGid {
  name: string;
  globalId: string;
  branchId: string;
}

/** Parses a gid made by {@link branchGid}; undefined for any other string. */
export function parseGid(gid: string): ParsedGid | undefined {
  const parts = gid.split(':');
  if (parts.length !== 4 || parts[0] !== GID_PREFIX) return undefined;
  const [name, globalId, branchId] = parts.slice(1).map(decodePart);
  if (name === undefined || globalId === undefined || branchId === undefined || name === '' || globalId === '' || branchId === '') return undefined;
  return { name, globalId, branchId };
}
