/**
 * A simulated durable disk for one node: what a WAL plus snapshot file would hold.
 *
 * Writes (snapshot from the leader, hard state, entries) are buffered as pending operations and become durable
 * only at `sync()` (the fdatasync after a Ready). `crash()` throws the pending operations away, exactly like a
 * power loss between write and fsync. An application snapshot is written with its own fsync (which also
 * flushes the pending writes), then the log below it is compacted.
 */
import { Entry, HardState, Snapshot, emptyHardState, emptySnapshot } from '@app/raft';

export interface DiskImage {
  snapshot: Snapshot;
  hardState: HardState;
  /** Entries after the compaction point (may start below the snapshot's index; the reader skips those). */
  entries: Entry[];
}

type PendingOp =
  | { kind: 'snapshot'; snapshot: Snapshot }
  | { kind: 'hardState'; hardState: HardState }
  | { kind: 'entries'; entries: Entry[] };

export interface DiskOptions {
  /** Planted bug `forget-vote-on-restart`: the vote is lost whenever the disk is read back after a crash. */
  forgetVoteOnLoad?: boolean;
}

export class SimDisk {
  private durable: DiskImage = { snapshot: emptySnapshot(), hardState: emptyHardState(), entries: [] };
  private pending: PendingOp[] = [];
  /** Number of fsyncs performed (statistics). */
  syncs = 0;

  constructor(private readonly opts: DiskOptions = {}) {}

  writeSnapshot(snapshot: Snapshot): void {
    this.pending.push({ kind: 'snapshot', snapshot });
  }

  writeHardState(hardState: HardState): void {
    this.pending.push({ kind: 'hardState', hardState: { ...hardState } });
  }

  writeEntries(entries: Entry[]): void {
    if (entries.length > 0) this.pending.push({ kind: 'entries', entries: entries.slice() });
  }

  hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** fdatasync: every pending write becomes durable, in order. */
  sync(): void {
    for (const op of this.pending) {
      switch (op.kind) {
        case 'snapshot':
          if (op.snapshot.metadata.index > this.durable.snapshot.metadata.index) {
            this.durable.snapshot = op.snapshot;
            this.durable.entries = [];
          }
          break;
        case 'hardState':
          this.durable.hardState = op.hardState;
          break;
        case 'entries':
          this.durable.entries = appendEntries(this.durable.entries, op.entries, this.durable.snapshot.metadata.index);
          break;
      }
    }
    this.pending = [];
    this.syncs++;
  }

  /** Power loss: unsynced writes are gone. */
  crash(): void {
    this.pending = [];
  }

  /** The application took a snapshot: flush, write the snapshot file (fsynced), drop entries ≤ compactTo. */
  saveAppSnapshot(snapshot: Snapshot, compactTo: number): void {
    this.sync();
    if (snapshot.metadata.index > this.durable.snapshot.metadata.index) this.durable.snapshot = snapshot;
    const cut = Math.min(compactTo, this.durable.snapshot.metadata.index);
    if (cut > 0) this.durable.entries = this.durable.entries.filter((e) => e.index > cut);
  }

  /** The durable hard state (what a restart would read, before any planted bug). */
  durableHardState(): HardState {
    return { ...this.durable.hardState };
  }

  durableLastIndex(): number {
    const ents = this.durable.entries;
    return ents.length > 0 ? ents[ents.length - 1].index : this.durable.snapshot.metadata.index;
  }

  /**
   * Term of durable entry i: undefined when i is covered by the durable snapshot (nothing to compare), 0 when
   * the disk does not hold index i at all.
   */
  durableTerm(i: number): number | undefined {
    const snap = this.durable.snapshot.metadata;
    if (i < snap.index) return undefined;
    if (i === snap.index) return snap.term;
    const ents = this.durable.entries;
    if (ents.length === 0 || i < ents[0].index) return i <= snap.index ? undefined : 0;
    const k = i - ents[0].index;
    return k < ents.length ? ents[k].term : 0;
  }

  /** Read the disk back after a restart. */
  load(): DiskImage {
    const hs = { ...this.durable.hardState };
    if (this.opts.forgetVoteOnLoad) hs.vote = 0;
    return { snapshot: this.durable.snapshot, hardState: hs, entries: this.durable.entries.slice() };
  }
}

/** Append with truncation of a conflicting suffix, as a WAL replay would resolve it. */
function appendEntries(log: Entry[], ents: Entry[], snapIndex: number): Entry[] {
  const first = ents[0].index;
  if (log.length === 0) {
    if (first > snapIndex + 1) throw new Error(`sim disk: gap: appending ${first} after snapshot ${snapIndex}`);
    return ents.filter((e) => e.index > snapIndex);
  }
  const logFirst = log[0].index;
  const logLast = log[log.length - 1].index;
  if (first > logLast + 1) throw new Error(`sim disk: gap: appending ${first} after ${logLast}`);
  if (first <= logFirst) return ents.filter((e) => e.index > snapIndex);
  return log.slice(0, first - logFirst).concat(ents);
}
