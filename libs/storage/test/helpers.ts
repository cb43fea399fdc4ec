import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Entry, EntryType, HardState } from '@app/raft';
import { RecoveredState, StorageLogger } from '../src/index.js';

/** A fresh directory under os.tmpdir(); `cleanup()` removes every directory made so far. */
export function tempDirs(): { make(): string; cleanup(): void } {
  const made: string[] = [];
  return {
    make() {
      const d = mkdtempSync(join(tmpdir(), 'synod-storage-'));
      made.push(d);
      return d;
    },
    cleanup() {
      for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}

export interface CapturedLogger extends StorageLogger {
  infos: string[];
  warns: string[];
}

export function captureLogger(): CapturedLogger {
  const infos: string[] = [];
  const warns: string[] = [];
  return { infos, warns, info: (m) => infos.push(m), warn: (m) => warns.push(m) };
}

/** Deterministic entry payload for (index, term, salt): its bytes identify the entry. */
export function payload(index: number, term: number, size?: number, salt = 0): Uint8Array {
  const n = size ?? 8 + ((index * 37 + term * 11 + salt) % 90);
  const d = new Uint8Array(n);
  for (let j = 0; j < n; j++) d[j] = (index * 131 + term * 7 + salt * 3 + j * 29) & 0xff;
  return d;
}

export function ent(index: number, term: number, size?: number, salt = 0): Entry {
  return { index, term, type: index % 17 === 0 ? EntryType.ConfChange : EntryType.Normal, data: payload(index, term, size, salt) };
}

/** Entries [from, to] of one term. */
export function ents(from: number, to: number, term: number, size?: number, salt = 0): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, size, salt));
  return out;
}

export function hs(term: number, vote: number, commit: number): HardState {
  return { term, vote, commit };
}

/** A comparable rendering of entries (Uint8Array contents as hex). */
export function show(entries: Entry[]): Array<[number, number, number, string]> {
  return entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString('hex')]);
}

/** A comparable rendering of a whole recovered state. */
export function showState(r: RecoveredState): string {
  return JSON.stringify({
    hs: r.hardState,
    snap: r.snapshot && {
      index: r.snapshot.metadata.index,
      term: r.snapshot.metadata.term,
      conf: r.snapshot.metadata.confState,
      data: Buffer.from(r.snapshot.data).toString('hex'),
    },
    entries: show(r.entries),
  });
}
