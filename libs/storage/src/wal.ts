/**
 * Write-ahead log and snapshot files of one Raft node (see docs/storage.md for formats and rules).
 *
 * API (all async):
 *
 *   Wal.open(dir, { segmentBytes?, logger?, fileOps? }) → { wal, recovered }
 *       Creates `dir/wal/` and `dir/snap/` when absent; otherwise recovers: truncates a torn tail of the last
 *       segment (warning with file and offset), throws StorageCorruptionError (naming file and offset) for
 *       damage a crash cannot explain. `recovered` = { hardState, snapshot, entries } where `entries` are
 *       those after the snapshot's index (later records override a conflicting suffix).
 *   wal.save(hardState | undefined, entries, sync)
 *       Appends the entries then the hard state as one write; when `sync`, one fdatasync makes the whole
 *       batch durable before the promise resolves. Calls are applied in call order. An entry at index i
 *       discards every previously saved entry ≥ i; entries must continue the log (index ≤ lastIndex + 1).
 *   wal.saveSnapshot(snap)
 *       Writes `snap/<term>-<index>.snap` atomically, then records a snapshot marker in the WAL (fsync'ed),
 *       then removes WAL segments wholly covered by the snapshot and all but the newest 2 snapshot files.
 *       If the log holds the snapshot's (index, term) the entries after it are kept (a local snapshot);
 *       otherwise the snapshot replaces the whole log (one installed from the leader), as in MemoryStorage.
 *   wal.close()                      flushes (fdatasync) and closes.
 *   toMemoryStorage(recovered)       the MemoryStorage the driver hands to the Raft core on restart.
 *
 * After any I/O error the Wal is failed: every later call rejects (an fsync error cannot be retried safely).
 * `fileOps` injects the low-level file layer (defaults to the real one; tests inject CrashingFileOps).
 */
import { join } from 'node:path';
import { Entry, HardState, MemoryStorage, Snapshot, emptyHardState } from '@app/raft';
import {
  HARD_STATE_RECORD_BYTES,
  RecordType,
  SEGMENT_HEADER_RECORD_BYTES,
  SNAPSHOT_MARKER_RECORD_BYTES,
  decodeRecord,
  encodeEntry,
  encodeHardState,
  encodeSegmentHeader,
  encodeSnapshotMarker,
  entryRecordBytes,
  findRecordSyncedPast,
} from './codec.js';
import { StorageCorruptionError } from './errors.js';
import { FileOps, WritableFile, nodeFileOps } from './fileops.js';
import {
  SNAPSHOT_TMP_SUFFIX,
  decodeSnapshotFile,
  encodeSnapshotFile,
  hex16,
  parseSnapshotFileName,
  snapshotFileName,
} from './snapshot-file.js';

export interface StorageLogger {
  info(m: string): void;
  warn(m: string): void;
}

export interface WalOptions {
  /** Rotate to a new segment once the current one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  logger?: StorageLogger;
  /** The file layer (default: the real file system). */
  fileOps?: FileOps;
}

export interface RecoveredState {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  /** The entries after the snapshot's index (from 1 when there is no snapshot), contiguous. */
  entries: Entry[];
}

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
/** How many snapshot files saveSnapshot keeps (the newest and its predecessor). */
export const SNAPSHOTS_KEPT = 2;

const SEGMENT_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

const defaultLogger: StorageLogger = {
  info: () => {},
  warn: (m) => console.warn(m),
};

interface Segment {
  seq: number;
  firstIndex: number;
  path: string;
  /** Highest entry index recorded in the segment (0 when none): it may go once a snapshot covers it. */
  maxIndex: number;
}

/** A run of consecutive entries with the same term, starting at `index`. */
interface TermRun {
  index: number;
  term: number;
}

export function segmentFileName(seq: number, firstIndex: number): string {
  return `${hex16(seq)}-${hex16(firstIndex)}.wal`;
}

export class Wal {
  private readonly walDir: string;
  private readonly snapDir: string;
  /** Settles after the last queued operation; operations run strictly one at a time, in call order. */
  private queue: Promise<void> = Promise.resolve();
  private failed: Error | undefined;
  private closed = false;

  // State of the log as written (used to validate saves and classify snapshots).
  private hardState: HardState;
  private lastIdx: number;
  private snapIndex: number;
  private snapTerm: number;
  private termRuns: TermRun[];

  // The segment being appended to.
  private file: WritableFile;
  private size: number;
  private synced: number;
  private dirDirty = false;

  private constructor(
    private readonly dir: string,
    private readonly fops: FileOps,
    private readonly segmentBytes: number,
    private readonly logger: StorageLogger,
    private readonly segments: Segment[],
    init: {
      file: WritableFile;
      size: number;
      hardState: HardState;
      lastIndex: number;
      snapIndex: number;
      snapTerm: number;
      entries: Entry[];
    },
  ) {
    this.walDir = join(dir, 'wal');
    this.snapDir = join(dir, 'snap');
    this.file = init.file;
    this.size = init.size;
    this.synced = init.size;
    this.hardState = { ...init.hardState };
    this.lastIdx = init.lastIndex;
    this.snapIndex = init.snapIndex;
    this.snapTerm = init.snapTerm;
    this.termRuns = [];
    this.appendTerms(init.entries);
  }

  /** Opens (creating or recovering) the WAL in `dir`. */
  static async open(dir: string, opts: WalOptions = {}): Promise<{ wal: Wal; recovered: RecoveredState }> {
    const fops = opts.fileOps ?? nodeFileOps;
    const logger = opts.logger ?? defaultLogger;
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) throw new RangeError(`bad segmentBytes ${segmentBytes}`);
    return Wal.recover(dir, fops, logger, segmentBytes);
  }

  /** Index of the last entry written (the snapshot's index when the log after it is empty). */
  get lastIndex(): number {
    return this.lastIdx;
  }

  /** Index of the newest snapshot recorded (0 when none). */
  get snapshotIndex(): number {
    return this.snapIndex;
  }

  /** Appends `entries` then `hardState` in one write; with `sync`, one fdatasync before resolving. */
  save(hardState: HardState | undefined, entries: Entry[], sync: boolean): Promise<void> {
    return this.enqueue(() => this.doSave(hardState, entries, sync));
  }

  /** Writes the snapshot file atomically, records it in the WAL (durably), then compacts. */
  saveSnapshot(snap: Snapshot): Promise<void> {
    return this.enqueue(() => this.doSaveSnapshot(snap));
  }

  /** Makes everything written durable and closes the segment; later calls reject. Idempotent; on a failed
   * Wal it only releases the file handle. */
  close(): Promise<void> {
    const p = this.queue.then(async () => {
      if (this.closed) return;
      this.closed = true;
      try {
        if (!this.failed) await this.syncNow();
      } finally {
        await this.file.close();
      }
    });
    this.queue = p.catch(() => {});
    return p;
  }

  // ---- internals ----

  private enqueue(op: () => Promise<void>): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.failed) throw new Error(`wal ${this.dir} failed earlier: ${this.failed.message}`);
      if (this.closed) throw new Error(`wal ${this.dir} is closed`);
      await op();
    };
    const p = this.queue.then(run);
    this.queue = p.catch(() => {});
    return p;
  }

  /** Runs an I/O step; any error fails the Wal for good (the file state is unknown after it). */
  private async io<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (err) {
      this.failed ??= err instanceof Error ? err : new Error(String(err));
      throw err;
    }
  }

  private async doSave(hardState: HardState | undefined, entries: Entry[], sync: boolean): Promise<void> {
    // Validation first: a rejected call leaves the Wal usable.
    if (entries.length > 0) {
      for (let i = 1; i < entries.length; i++) {
        if (entries[i].index !== entries[i - 1].index + 1) {
          throw new Error(`wal.save: entries not contiguous at ${entries[i - 1].index} -> ${entries[i].index}`);
        }
      }
      if (entries[0].index > this.lastIdx + 1) {
        throw new Error(`wal.save: entry ${entries[0].index} leaves a gap after last index ${this.lastIdx}`);
      }
      // Entries already covered by the snapshot are dropped, as MemoryStorage.append does.
      if (entries[0].index <= this.snapIndex) entries = entries.slice(this.snapIndex + 1 - entries[0].index);
    }
    if (!hardState && entries.length === 0) {
      if (sync) await this.io(() => this.syncNow());
      return;
    }
    if (this.size >= this.segmentBytes) await this.io(() => this.rotate());
    const buf = this.encodeBatch(hardState, entries); // throws (leaving the Wal usable) on out-of-range fields
    await this.io(async () => {
      await this.file.write(buf, this.size);
      this.size += buf.length;
      if (entries.length > 0) {
        this.appendTerms(entries);
        this.lastIdx = entries[entries.length - 1].index;
        const seg = this.segments[this.segments.length - 1];
        seg.maxIndex = Math.max(seg.maxIndex, this.lastIdx);
      }
      if (hardState) this.hardState = { ...hardState };
      if (sync) await this.syncNow();
    });
  }

  /** One buffer holding the entries then the hard state, each record stamped with the current synced offset. */
  private encodeBatch(hardState: HardState | undefined, entries: Entry[]): Buffer {
    let total = hardState ? HARD_STATE_RECORD_BYTES : 0;
    for (const e of entries) total += entryRecordBytes(e);
    const buf = Buffer.allocUnsafe(total);
    let off = 0;
    // Entries before the hard state: a torn batch never keeps a commit index beyond its entries.
    for (const e of entries) off = encodeEntry(buf, off, e, this.synced);
    if (hardState) encodeHardState(buf, off, hardState, this.synced);
    return buf;
  }

  private async doSaveSnapshot(snap: Snapshot): Promise<void> {
    const { index, term } = snap.metadata;
    if (index <= this.snapIndex) return; // not newer than what we have: nothing to record
    await this.io(async () => {
      // 1. The snapshot file, atomically and durably, before anything refers to it.
      const finalPath = join(this.snapDir, snapshotFileName(term, index));
      const tmpPath = finalPath + SNAPSHOT_TMP_SUFFIX;
      const f = await this.fops.create(tmpPath, false);
      try {
        await f.write(encodeSnapshotFile(snap), 0);
        await f.sync();
      } finally {
        await f.close();
      }
      await this.fops.rename(tmpPath, finalPath);
      await this.fops.syncDir(this.snapDir);

      // 2. The marker. A snapshot that matches the log at its index compacts it (the entries after it stay);
      // any other replaces the whole log, exactly like MemoryStorage.applySnapshot.
      const resetLog = this.termAt(index) !== term;
      if (this.size >= this.segmentBytes) await this.rotate();
      const buf = Buffer.allocUnsafe(SNAPSHOT_MARKER_RECORD_BYTES);
      encodeSnapshotMarker(buf, 0, index, term, resetLog, this.synced);
      await this.file.write(buf, this.size);
      this.size += buf.length;
      await this.syncNow();
      this.snapIndex = index;
      this.snapTerm = term;
      if (resetLog) {
        this.lastIdx = index;
        this.termRuns = [];
      } else {
        while (this.termRuns.length > 1 && this.termRuns[1].index <= index + 1) this.termRuns.shift();
      }
      this.logger.info(`wal: snapshot at index ${index} term ${term} recorded${resetLog ? ' (replaces the log)' : ''}`);

      // 3. Compaction: whole segments whose entries the snapshot covers (never the open one), oldest first,
      // each removal made durable before the next so the directory always holds a contiguous run.
      while (this.segments.length > 1 && this.segments[0].maxIndex <= index) {
        const seg = this.segments[0];
        await this.fops.unlink(seg.path);
        await this.fops.syncDir(this.walDir);
        this.segments.shift();
        this.logger.info(`wal: removed segment ${seg.path} (entries up to ${seg.maxIndex} covered by snapshot ${index})`);
      }
      const snaps = (await this.fops.readdir(this.snapDir))
        .map((name) => ({ name, parsed: parseSnapshotFileName(name) }))
        .filter((s) => s.parsed !== undefined)
        .sort((a, b) => b.parsed!.index - a.parsed!.index);
      let removed = false;
      for (const s of snaps.slice(SNAPSHOTS_KEPT)) {
        await this.fops.unlink(join(this.snapDir, s.name));
        removed = true;
      }
      if (removed) await this.fops.syncDir(this.snapDir);
    });
  }

  /** Starts a new segment. The old one is made durable first: only the last segment may have a torn tail. */
  private async rotate(): Promise<void> {
    await this.syncNow();
    const last = this.segments[this.segments.length - 1];
    const seg: Segment = {
      seq: last.seq + 1,
      firstIndex: this.lastIdx + 1,
      path: join(this.walDir, segmentFileName(last.seq + 1, this.lastIdx + 1)),
      maxIndex: 0,
    };
    const file = await this.fops.create(seg.path, true);
    await this.file.close();
    this.file = file;
    this.segments.push(seg);
    this.size = 0;
    this.synced = 0;
    this.dirDirty = true;
    const buf = Buffer.allocUnsafe(SEGMENT_HEADER_RECORD_BYTES);
    encodeSegmentHeader(buf, 0, this.headerFields(seg), 0);
    await this.file.write(buf, 0);
    this.size = buf.length;
    this.logger.info(`wal: rotated to segment ${seg.path}`);
  }

  private headerFields(seg: Segment): Parameters<typeof encodeSegmentHeader>[2] {
    return {
      seq: seg.seq,
      firstIndex: seg.firstIndex,
      hardState: this.hardState,
      snapIndex: this.snapIndex,
      snapTerm: this.snapTerm,
    };
  }

  private async syncNow(): Promise<void> {
    if (this.synced < this.size) {
      await this.file.datasync();
      this.synced = this.size;
    }
    if (this.dirDirty) {
      await this.fops.syncDir(this.walDir);
      this.dirDirty = false;
    }
  }

  private appendTerms(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    while (this.termRuns.length > 0 && this.termRuns[this.termRuns.length - 1].index >= first) this.termRuns.pop();
    for (const e of entries) {
      const lastRun = this.termRuns[this.termRuns.length - 1];
      if (!lastRun || lastRun.term !== e.term) this.termRuns.push({ index: e.index, term: e.term });
    }
  }

  /** Term of entry i as written, if known (the snapshot's own index counts). */
  private termAt(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapTerm;
    if (i < this.snapIndex || i > this.lastIdx) return undefined;
    let lo = 0;
    let hi = this.termRuns.length - 1;
    let found: TermRun | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.termRuns[mid].index <= i) {
        found = this.termRuns[mid];
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found?.term;
  }

  /** Writes the header of an empty last segment (recovery). */
  private async initSegment(seg: Segment): Promise<void> {
    const buf = Buffer.allocUnsafe(SEGMENT_HEADER_RECORD_BYTES);
    encodeSegmentHeader(buf, 0, this.headerFields(seg), 0);
    await this.file.write(buf, this.size);
    this.size += buf.length;
    this.dirDirty = true;
    await this.syncNow();
  }

  // ---- recovery ----

  private static async recover(
    dir: string,
    fops: FileOps,
    logger: StorageLogger,
    segmentBytes: number,
  ): Promise<{ wal: Wal; recovered: RecoveredState }> {
    const walDir = join(dir, 'wal');
    const snapDir = join(dir, 'snap');
    const createdWal = await fops.mkdirp(walDir);
    const createdSnap = await fops.mkdirp(snapDir);
    const created = createdWal || createdSnap;
    if (created) {
      await fops.syncDir(dir);
      await fops.syncDir(join(dir, '..'));
    }

    const segments: Segment[] = [];
    for (const name of await fops.readdir(walDir)) {
      const m = SEGMENT_RE.exec(name);
      if (!m) {
        logger.warn(`wal: ignoring unexpected file ${join(walDir, name)}`);
        continue;
      }
      segments.push({ seq: parseInt(m[1], 16), firstIndex: parseInt(m[2], 16), path: join(walDir, name), maxIndex: 0 });
    }
    segments.sort((a, b) => a.seq - b.seq);
    const snapFiles: Array<{ name: string; term: number; index: number }> = [];
    const tmpFiles: string[] = [];
    for (const name of await fops.readdir(snapDir)) {
      const parsed = parseSnapshotFileName(name);
      if (parsed) snapFiles.push({ name, ...parsed });
      else if (name.endsWith(SNAPSHOT_TMP_SUFFIX)) tmpFiles.push(name);
      else logger.warn(`wal: ignoring unexpected file ${join(snapDir, name)}`);
    }

    if (segments.length === 0) {
      if (snapFiles.length > 0) {
        throw new StorageCorruptionError(walDir, 0, `no WAL segment, but ${snapFiles.length} snapshot file(s) in ${snapDir}`);
      }
      const seg: Segment = { seq: 1, firstIndex: 1, path: join(walDir, segmentFileName(1, 1)), maxIndex: 0 };
      const file = await fops.create(seg.path, true);
      const wal = new Wal(dir, fops, segmentBytes, logger, [seg], {
        file,
        size: 0,
        hardState: emptyHardState(),
        lastIndex: 0,
        snapIndex: 0,
        snapTerm: 0,
        entries: [],
      });
      try {
        await wal.initSegment(seg);
      } catch (err) {
        await file.close().catch(() => {});
        throw err;
      }
      logger.info(`wal: created ${dir}`);
      return { wal, recovered: { hardState: emptyHardState(), snapshot: undefined, entries: [] } };
    }

    for (let i = 1; i < segments.length; i++) {
      if (segments[i].seq !== segments[i - 1].seq + 1) {
        throw new StorageCorruptionError(segments[i].path, 0, `segment sequence gap: expected seq ${segments[i - 1].seq + 1}`);
      }
    }

    const { hardState, ents, snapIndex, snapTerm, validEnd, torn } = await replay(segments, fops);

    // The snapshot: the newest one the WAL's markers name. Its file was durable before the marker was written.
    let snapshot: Snapshot | undefined;
    if (snapIndex > 0) {
      const path = join(snapDir, snapshotFileName(snapTerm, snapIndex));
      if (!snapFiles.some((f) => f.index === snapIndex && f.term === snapTerm)) {
        throw new StorageCorruptionError(path, 0, `snapshot file named by the WAL (index ${snapIndex}, term ${snapTerm}) is missing`);
      }
      snapshot = decodeSnapshotFile(await fops.readFile(path), path);
      if (snapshot.metadata.index !== snapIndex || snapshot.metadata.term !== snapTerm) {
        throw new StorageCorruptionError(path, 16, `snapshot header says index ${snapshot.metadata.index} term ${snapshot.metadata.term}`);
      }
    }
    // Entries after the snapshot must follow it without a gap.
    let entries = ents;
    if (entries.length > 0 && entries[0].index <= snapIndex) entries = entries.slice(snapIndex + 1 - entries[0].index);
    if (entries.length > 0 && entries[0].index !== snapIndex + 1) {
      throw new StorageCorruptionError(walDir, 0, `log starts at ${entries[0].index}, but the snapshot ends at ${snapIndex}`);
    }

    // Repairs, now that nothing can throw for corruption any more.
    const last = segments[segments.length - 1];
    const file = await fops.openWrite(last.path);
    try {
      return await Wal.finishRecovery(dir, fops, logger, segmentBytes, segments, file, {
        torn,
        validEnd,
        snapFiles,
        tmpFiles,
        hardState,
        snapIndex,
        snapTerm,
        snapshot,
        entries,
      });
    } catch (err) {
      await file.close().catch(() => {});
      throw err;
    }
  }

  private static async finishRecovery(
    dir: string,
    fops: FileOps,
    logger: StorageLogger,
    segmentBytes: number,
    segments: Segment[],
    file: WritableFile,
    r: {
      torn: { offset: number; reason: string; size: number } | undefined;
      validEnd: number;
      snapFiles: Array<{ name: string; term: number; index: number }>;
      tmpFiles: string[];
      hardState: HardState;
      snapIndex: number;
      snapTerm: number;
      snapshot: Snapshot | undefined;
      entries: Entry[];
    },
  ): Promise<{ wal: Wal; recovered: RecoveredState }> {
    const { torn, validEnd, snapFiles, tmpFiles, hardState, snapIndex, snapTerm, snapshot, entries } = r;
    const snapDir = join(dir, 'snap');
    const last = segments[segments.length - 1];
    if (torn) {
      logger.warn(
        `wal: torn tail in ${last.path} at offset ${torn.offset} (${torn.reason}); truncating ${torn.size - torn.offset} bytes`,
      );
      await file.truncate(torn.offset);
    }
    await file.datasync(); // what we read may only have been in the page cache of a killed process
    let dirtySnapDir = false;
    for (const f of snapFiles) {
      if (f.index > snapIndex || (f.index === snapIndex && f.term !== snapTerm)) {
        logger.info(`wal: removing snapshot ${join(snapDir, f.name)} that the WAL never recorded`);
        await fops.unlink(join(snapDir, f.name));
        dirtySnapDir = true;
      }
    }
    for (const name of tmpFiles) {
      await fops.unlink(join(snapDir, name));
      dirtySnapDir = true;
    }
    if (dirtySnapDir) await fops.syncDir(snapDir);

    const lastIndex = entries.length > 0 ? entries[entries.length - 1].index : snapIndex;
    const wal = new Wal(dir, fops, segmentBytes, logger, segments, {
      file,
      size: validEnd,
      hardState,
      lastIndex,
      snapIndex,
      snapTerm,
      entries,
    });
    if (validEnd === 0) await wal.initSegment(last);
    logger.info(
      `wal: recovered ${dir}: ${segments.length} segment(s), snapshot ${snapIndex}, entries ${entries.length > 0 ? `${entries[0].index}..${lastIndex}` : 'none'}, ` +
        `hard state term ${hardState.term} vote ${hardState.vote} commit ${hardState.commit}`,
    );
    return { wal, recovered: { hardState: { ...hardState }, snapshot, entries } };
  }
}

interface Replayed {
  hardState: HardState;
  /** Every entry the log holds, contiguous (it may start at or before the snapshot). */
  ents: Entry[];
  /** The newest snapshot the WAL names (0 when none). */
  snapIndex: number;
  snapTerm: number;
  /** Where the intact records of the last segment end. */
  validEnd: number;
  torn: { offset: number; reason: string; size: number } | undefined;
}

/**
 * Replays every record of every segment in order (also filling in each segment's maxIndex). A bad record
 * throws StorageCorruptionError, except at the tail of the last segment where a crash explains it.
 */
async function replay(segments: Segment[], fops: FileOps): Promise<Replayed> {
  let hardState = emptyHardState();
  let ents: Entry[] = []; // contiguous
  let snapIndex = 0;
  let snapTerm = 0;
  let validEnd = 0;
  let torn: { offset: number; reason: string; size: number } | undefined;
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s];
    const isLast = s === segments.length - 1;
    const buf = await fops.readFile(seg.path);
    let off = 0;
    while (off < buf.length) {
      const r = decodeRecord(buf, off);
      if (!r.ok) {
        if (r.fatal || !isLast) throw new StorageCorruptionError(seg.path, off, r.reason);
        // In the last segment a bad record is a torn write unless something written after it had been
        // synced (its synced offset is past this record), which proves the record was durable once.
        const later = findRecordSyncedPast(buf, off);
        if (later !== undefined) {
          throw new StorageCorruptionError(
            seg.path,
            off,
            `${r.reason}; the intact record at offset ${later} was written after this one was made durable`,
          );
        }
        torn = { offset: off, reason: r.reason, size: buf.length };
        break;
      }
      const rec = r.record;
      if ((off === 0) !== (rec.type === RecordType.SegmentHeader)) {
        throw new StorageCorruptionError(seg.path, off, off === 0 ? 'segment does not start with a header' : 'segment header in the middle of a segment');
      }
      switch (rec.type) {
        case RecordType.SegmentHeader:
          if (rec.seq !== seg.seq) throw new StorageCorruptionError(seg.path, off, `header names seq ${rec.seq}, file name ${seg.seq}`);
          hardState = rec.hardState;
          if (rec.snapIndex > snapIndex) {
            snapIndex = rec.snapIndex;
            snapTerm = rec.snapTerm;
          }
          break;
        case RecordType.HardState:
          hardState = rec.hardState;
          break;
        case RecordType.SnapshotMarker:
          if (rec.index > snapIndex) {
            snapIndex = rec.index;
            snapTerm = rec.term;
          }
          if (rec.resetLog) ents = [];
          break;
        case RecordType.Entry: {
          const e = rec.entry;
          seg.maxIndex = Math.max(seg.maxIndex, e.index);
          if (ents.length === 0 || e.index < ents[0].index) {
            ents = [e];
          } else {
            const last = ents[0].index + ents.length - 1;
            if (e.index > last + 1) throw new StorageCorruptionError(seg.path, off, `entry ${e.index} leaves a gap after ${last}`);
            ents.length = e.index - ents[0].index;
            ents.push(e);
          }
          break;
        }
      }
      off = r.next;
    }
    if (isLast) validEnd = off;
  }
  return { hardState, ents, snapIndex, snapTerm, validEnd, torn };
}

/** Builds the MemoryStorage the Raft core reads, from what recovery returned. */
export function toMemoryStorage(recovered: RecoveredState): MemoryStorage {
  const ms = new MemoryStorage();
  if (recovered.snapshot) ms.applySnapshot(recovered.snapshot);
  ms.setHardState(recovered.hardState);
  ms.append(recovered.entries);
  return ms;
}

