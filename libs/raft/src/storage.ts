/**
 * The core's read-only view of the stable log (etcd-io/raft's `Storage`), and an in-memory implementation.
 *
 * The driver owns durability: it writes entries and hard state to the WAL (libs/storage) and then appends
 * them to a MemoryStorage that the core reads. On restart the driver rebuilds the MemoryStorage from the WAL
 * and snapshot before creating the RawNode. MemoryStorage is pure (no I/O) so it may live in the core.
 */
import { CompactedError, UnavailableError, invariant } from './errors.js';
import { ConfState, Entry, HardState, Snapshot, emptyHardState, emptySnapshot } from './types.js';

export interface LogStorage {
  /** Hard state and membership saved on disk (membership from the latest snapshot or conf-change replay). */
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most `maxSize` bytes (at least one entry is returned). */
  entries(lo: number, hi: number, maxSize: number): Entry[];
  /** Term of entry i; i may be firstIndex()-1 (the snapshot's index). Throws CompactedError / UnavailableError. */
  term(i: number): number;
  lastIndex(): number;
  firstIndex(): number;
  snapshot(): Snapshot;
}

export class MemoryStorage implements LogStorage {
  hardState: HardState = emptyHardState();
  private snap: Snapshot = emptySnapshot();
  /** ents[0] is a dummy entry holding the snapshot's index and term. */
  private ents: Entry[] = [{ term: 0, index: 0, type: 0, data: new Uint8Array(0) }];

  /** A storage whose initial membership is `cs` (tests and tools; real clusters use RawNode.bootstrap). */
  static withConfState(cs: ConfState): MemoryStorage {
    const s = new MemoryStorage();
    s.snap = { metadata: { index: 0, term: 0, confState: cloneConfState(cs) }, data: new Uint8Array(0) };
    return s;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): number {
    return this.ents[0].index;
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new CompactedError(lo);
    invariant(hi <= this.lastIndex() + 1, `entries hi ${hi} out of bound, last index ${this.lastIndex()}`);
    if (this.ents.length === 1) throw new UnavailableError(lo);
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSize);
  }

  term(i: number): number {
    const offset = this.offset();
    if (i < offset) throw new CompactedError(i);
    if (i - offset >= this.ents.length) throw new UnavailableError(i);
    return this.ents[i - offset].term;
  }

  lastIndex(): number {
    return this.ents[0].index + this.ents.length - 1;
  }

  firstIndex(): number {
    return this.ents[0].index + 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replace the whole log with a snapshot (a follower installing one, or restart recovery). */
  applySnapshot(snap: Snapshot): void {
    if (this.snap.metadata.index >= snap.metadata.index) return; // out of date
    this.snap = snap;
    this.ents = [{ term: snap.metadata.term, index: snap.metadata.index, type: 0, data: new Uint8Array(0) }];
  }

  /** Record a snapshot taken by the application at index i (must be ≤ last index). Does not compact. */
  createSnapshot(i: number, cs: ConfState | undefined, data: Uint8Array): Snapshot {
    if (i <= this.snap.metadata.index) return this.snap;
    invariant(i <= this.lastIndex(), `snapshot ${i} is beyond last index ${this.lastIndex()}`);
    const offset = this.offset();
    this.snap = {
      metadata: {
        index: i,
        term: this.ents[i - offset].term,
        confState: cs ? cloneConfState(cs) : this.snap.metadata.confState,
      },
      data,
    };
    return this.snap;
  }

  /** Discard entries up to and including compactIndex (which must be ≤ the applied index). */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) return;
    invariant(compactIndex <= this.lastIndex(), `compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`);
    const i = compactIndex - offset;
    const first: Entry = { term: this.ents[i].term, index: this.ents[i].index, type: 0, data: new Uint8Array(0) };
    this.ents = [first, ...this.ents.slice(i + 1)];
  }

  /** Append entries (already durable), truncating any conflicting suffix. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0].index + entries.length - 1;
    if (last < first) return; // all compacted
    if (first > entries[0].index) entries = entries.slice(first - entries[0].index);
    const offset = entries[0].index - this.offset();
    invariant(offset <= this.ents.length, `missing log entry [last: ${this.lastIndex()}, append at: ${entries[0].index}]`);
    if (offset === this.ents.length) {
      for (const e of entries) this.ents.push(e); // the common case: extend in place, no copy of the log
    } else {
      this.ents = this.ents.slice(0, offset).concat(entries);
    }
  }
}

export function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}

export function limitSize(ents: Entry[], maxSize: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = ents[0].data.length + 24;
  let limit = 1;
  for (; limit < ents.length; limit++) {
    size += ents[limit].data.length + 24;
    if (size > maxSize) break;
  }
  return ents.slice(0, limit);
}
