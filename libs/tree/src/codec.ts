/**
 * Encoding of commands (Raft log entries) and snapshots.
 *
 * Choice: a versioned binary envelope around JSON, with node data carried as raw bytes after the JSON (no base64):
 *
 *   byte 0      kind: 0x43 'C' command, 0x53 'S' snapshot
 *   byte 1      format version (1)
 *   bytes 2..5  length L of the JSON header, u32 big-endian
 *   L bytes     UTF-8 JSON: the command (or state) with every `data` field replaced by its byte length
 *   rest        the data blobs, concatenated in the order they appear in the JSON
 *
 * JSON.parse/stringify are native and fast for the small headers; data bytes are copied once, never inflated.
 * A command from a newer format version cannot be applied by this node: that throws TreeInvariantError (the
 * node must be upgraded) instead of returning an error other nodes would not return.
 */
import { TreeInvariantError } from './errors.js';
import { Command } from './types.js';

export const COMMAND_KIND = 0x43;
export const SNAPSHOT_KIND = 0x53;
export const FORMAT_VERSION = 1;
const HEADER = 6;

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** The bytes are not a well-formed command (deterministic: every node sees the same bytes). */
export class CommandDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandDecodeError';
  }
}

/** Frame a JSON-able header and blobs. */
export function frame(kind: number, header: unknown, blobs: readonly Uint8Array[]): Uint8Array {
  const json = enc.encode(JSON.stringify(header));
  let total = HEADER + json.length;
  for (const b of blobs) total += b.length;
  const out = new Uint8Array(total);
  out[0] = kind;
  out[1] = FORMAT_VERSION;
  new DataView(out.buffer).setUint32(2, json.length);
  out.set(json, HEADER);
  let at = HEADER + json.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** Reads blobs in order after the header; `take(n)` copies (never aliases the input buffer). */
export class BlobReader {
  private at: number;
  constructor(private readonly bytes: Uint8Array, start: number) {
    this.at = start;
  }
  take(n: unknown): Uint8Array {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || this.at + n > this.bytes.length) {
      throw new CommandDecodeError(`bad data length ${JSON.stringify(n)} at byte ${this.at} of ${this.bytes.length}`);
    }
    const b = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return b;
  }
  end(): void {
    if (this.at !== this.bytes.length) throw new CommandDecodeError(`${this.bytes.length - this.at} trailing bytes`);
  }
}

/** Parse a frame: returns the JSON header and a reader for the blobs. */
export function unframe(kind: number, bytes: Uint8Array, what: string): { header: unknown; blobs: BlobReader } {
  if (bytes.length < HEADER) throw new CommandDecodeError(`${what} too short (${bytes.length} bytes)`);
  if (bytes[0] !== kind) {
    throw new CommandDecodeError(`not a ${what}: first byte 0x${bytes[0].toString(16)} (expected 0x${kind.toString(16)})`);
  }
  if (bytes[1] !== FORMAT_VERSION) {
    throw new TreeInvariantError(
      `${what} format version ${bytes[1]} is not understood by this node (it understands ${FORMAT_VERSION}): upgrade this node`,
    );
  }
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(2);
  if (HEADER + len > bytes.length) throw new CommandDecodeError(`${what} header length ${len} exceeds ${bytes.length} bytes`);
  let header: unknown;
  try {
    header = JSON.parse(dec.decode(bytes.subarray(HEADER, HEADER + len)));
  } catch (e) {
    throw new CommandDecodeError(`${what} header is not valid JSON: ${(e as Error).message}`);
  }
  return { header, blobs: new BlobReader(bytes, HEADER + len) };
}

function dataLen(d: unknown, where: string): number {
  if (!(d instanceof Uint8Array)) throw new TypeError(`${where}: data must be a Uint8Array`);
  return d.length;
}

/** Encode a command for the Raft log. Throws TypeError only if `data` is not bytes (a programming error). */
export function encodeCommand(cmd: Command): Uint8Array {
  const blobs: Uint8Array[] = [];
  let header: unknown = cmd;
  if (cmd.op === 'create' || cmd.op === 'setData') {
    blobs.push(cmd.data);
    header = { ...cmd, data: dataLen(cmd.data, cmd.op) };
  } else if (cmd.op === 'multi' && Array.isArray(cmd.ops)) {
    header = {
      ...cmd,
      ops: cmd.ops.map((o, i) => {
        if (o && (o.op === 'create' || o.op === 'setData')) {
          blobs.push(o.data);
          return { ...o, data: dataLen(o.data, `multi op ${i} (${o.op})`) };
        }
        return o;
      }),
    };
  }
  return frame(COMMAND_KIND, header, blobs);
}

/**
 * Decode a command. Throws CommandDecodeError for malformed bytes, TreeInvariantError for a newer format.
 * Field values are not validated here (apply does that, see `validateCommand`).
 */
export function decodeCommand(bytes: Uint8Array): Command {
  const { header, blobs } = unframe(COMMAND_KIND, bytes, 'command');
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new CommandDecodeError('command header is not an object');
  }
  const c = header as Record<string, unknown>;
  if (c.op === 'create' || c.op === 'setData') c.data = blobs.take(c.data);
  else if (c.op === 'multi' && Array.isArray(c.ops)) {
    for (const o of c.ops as Array<Record<string, unknown>>) {
      if (o && typeof o === 'object' && (o.op === 'create' || o.op === 'setData')) o.data = blobs.take(o.data);
    }
  }
  blobs.end();
  return c as unknown as Command;
}
