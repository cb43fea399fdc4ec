import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Entry, MemoryStorage, Snapshot } from '@app/raft';
import { Wal, toMemoryStorage } from '../src/index.js';
import { captureLogger, ent, ents, hs, show, tempDirs } from './helpers.js';

const dirs = tempDirs();
afterEach(() => dirs.cleanup());

function snap(index: number, term: number, voters = [1, 2, 3], data = `state@${index}`): Snapshot {
  return { metadata: { index, term, confState: { voters, learners: [4] } }, data: new TextEncoder().encode(data) };
}

function walFiles(dir: string): string[] {
  return readdirSync(join(dir, 'wal')).sort();
}

describe('Wal round trip', () => {
  it('creates an empty WAL with a first segment named by sequence and first index', async () => {
    const dir = dirs.make();
    const { wal, recovered } = await Wal.open(join(dir, 'node'), { logger: captureLogger() });
    expect(recovered).toEqual({ hardState: hs(0, 0, 0), snapshot: undefined, entries: [] });
    expect(walFiles(join(dir, 'node'))).toEqual(['0000000000000001-0000000000000001.wal']);
    expect(readdirSync(join(dir, 'node', 'snap'))).toEqual([]);
    await wal.close();
    const again = await Wal.open(join(dir, 'node'), { logger: captureLogger() });
    expect(again.recovered).toEqual({ hardState: hs(0, 0, 0), snapshot: undefined, entries: [] });
    await again.wal.close();
  });

  it('returns the saved hard state and entries after reopening', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { logger: captureLogger() });
    const all: Entry[] = [];
    for (let b = 0; b < 10; b++) {
      const batch = ents(b * 7 + 1, b * 7 + 7, 1 + Math.floor(b / 3));
      batch[0] = { ...batch[0], data: new Uint8Array(0) }; // empty payloads too
      all.push(...batch);
      await wal.save(hs(1 + Math.floor(b / 3), 2, b * 7), batch, true);
    }
    await wal.save(hs(4, 2, 70), [], false); // unsynced, but close() flushes it
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(recovered.hardState).toEqual(hs(4, 2, 70));
    expect(recovered.snapshot).toBeUndefined();
    expect(show(recovered.entries)).toEqual(show(all));
    expect(recovered.entries.every((e) => e.data instanceof Uint8Array && !Buffer.isBuffer(e.data))).toBe(true);
    expect(w2.lastIndex).toBe(70);
    // The reopened log continues where it stopped.
    await w2.save(hs(4, 2, 71), ents(71, 72, 4), true);
    await w2.close();
    const { wal: w3, recovered: r3 } = await Wal.open(dir, { logger: captureLogger() });
    expect(show(r3.entries)).toEqual(show([...all, ...ents(71, 72, 4)]));
    expect(r3.hardState).toEqual(hs(4, 2, 71));
    await w3.close();
  });

  it('keeps what was synced when the process stops without close()', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { logger: captureLogger() });
    await wal.save(hs(1, 1, 0), ents(1, 5, 1), true);
    // No close: a second open sees exactly what is in the files.
    const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(show(recovered.entries)).toEqual(show(ents(1, 5, 1)));
    await w2.close();
    await wal.close();
  });

  it('lets a later entry record discard the conflicting suffix', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { logger: captureLogger() });
    await wal.save(hs(1, 1, 3), ents(1, 10, 1), true);
    await wal.save(hs(2, 2, 3), ents(6, 8, 2), true); // truncates 6..10, rewrites 6..8
    await wal.save(undefined, ents(9, 9, 2, 5), true);
    await wal.save(hs(3, 3, 4), ents(5, 5, 3), true); // truncates 5..9 again
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(show(recovered.entries)).toEqual(show([...ents(1, 4, 1), ent(5, 3)]));
    expect(recovered.hardState).toEqual(hs(3, 3, 4));
    expect(w2.lastIndex).toBe(5);
    await w2.close();
  });

  it('rotates across several small segments and replays them in order, rewrites included', async () => {
    const dir = dirs.make();
    const segmentBytes = 512;
    const { wal } = await Wal.open(dir, { segmentBytes, logger: captureLogger() });
    let model: Entry[] = [];
    for (let b = 0; b < 30; b++) {
      const first = model.length + 1;
      const batch = ents(first, first + 3, 1 + Math.floor(b / 10), undefined, b);
      model = [...model, ...batch];
      await wal.save(hs(1 + Math.floor(b / 10), 1, first), batch, b % 2 === 0);
    }
    // A rewrite of a suffix that lives in earlier segments.
    const rewrite = ents(100, 104, 7);
    model = [...model.slice(0, 99), ...rewrite];
    await wal.save(hs(7, 3, 99), rewrite, true);
    await wal.close();

    const files = walFiles(dir);
    expect(files.length).toBeGreaterThanOrEqual(6);
    files.forEach((name, i) => expect(name.startsWith((i + 1).toString(16).padStart(16, '0') + '-')).toBe(true));
    for (const name of files.slice(0, -1)) {
      // A segment grows past segmentBytes by at most one batch before the next one starts.
      expect(statSync(join(dir, 'wal', name)).size).toBeLessThan(segmentBytes + 1024);
    }
    const { wal: w2, recovered } = await Wal.open(dir, { segmentBytes, logger: captureLogger() });
    expect(show(recovered.entries)).toEqual(show(model));
    expect(recovered.hardState).toEqual(hs(7, 3, 99));
    // The first index in a segment name is the log's next index when the segment was started.
    const firstIndexes = files.map((n) => parseInt(n.slice(17, 33), 16));
    expect(firstIndexes[0]).toBe(1);
    for (let i = 1; i < firstIndexes.length; i++) expect(firstIndexes[i]).toBeGreaterThan(firstIndexes[i - 1]);
    await w2.close();
  });

  it('applies saves in call order even when callers do not await each one', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { segmentBytes: 300, logger: captureLogger() });
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= 40; i++) pending.push(wal.save(hs(1, 1, i - 1), [ent(i, 1)], i % 3 === 0));
    await Promise.all(pending);
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(show(recovered.entries)).toEqual(show(ents(1, 40, 1)));
    expect(recovered.hardState).toEqual(hs(1, 1, 39));
    await w2.close();
  });

  it('rejects gaps and non-contiguous batches without breaking the Wal', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { logger: captureLogger() });
    await wal.save(undefined, ents(1, 3, 1), true);
    await expect(wal.save(undefined, [ent(5, 1)], true)).rejects.toThrow(/gap/);
    await expect(wal.save(undefined, [ent(4, 1), ent(6, 1)], true)).rejects.toThrow(/contiguous/);
    await expect(wal.save(undefined, [{ ...ent(4, 1), term: -1 }], true)).rejects.toThrow(RangeError);
    await wal.save(hs(1, 0, 4), ents(4, 4, 1), true);
    await wal.close();
    await expect(wal.save(undefined, [ent(5, 1)], true)).rejects.toThrow(/closed/);
    await wal.close(); // idempotent
    const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(show(recovered.entries)).toEqual(show(ents(1, 4, 1)));
    await w2.close();
  });
});

describe('Wal snapshots', () => {
  it('snapshot + compaction, then reopen: snapshot + remaining entries equal the state before', async () => {
    const dir = dirs.make();
    const logger = captureLogger();
    const segmentBytes = 400;
    const { wal } = await Wal.open(dir, { segmentBytes, logger });
    const mirror = new MemoryStorage(); // what the driver's MemoryStorage holds
    for (let b = 0; b < 25; b++) {
      const batch = ents(b * 4 + 1, b * 4 + 4, 2);
      await wal.save(hs(2, 1, b * 4), batch, true);
      mirror.append(batch);
      mirror.setHardState(hs(2, 1, b * 4));
    }
    const segmentsBefore = walFiles(dir);
    const s60 = mirror.createSnapshot(60, { voters: [1, 2, 3], learners: [] }, new TextEncoder().encode('app@60'));
    mirror.compact(60);
    await wal.saveSnapshot(s60);
    const segmentsAfter = walFiles(dir);
    expect(segmentsAfter.length).toBeLessThan(segmentsBefore.length);
    expect(segmentsAfter).toContain(segmentsBefore[segmentsBefore.length - 1]);
    expect(readdirSync(join(dir, 'snap'))).toEqual(['0000000000000002-000000000000003c.snap']);
    expect(logger.infos.some((m) => m.includes('removed segment'))).toBe(true);

    // Reopen without closing (a crash after the last acknowledged save).
    const { wal: w2, recovered } = await Wal.open(dir, { segmentBytes, logger });
    expect(recovered.snapshot?.metadata).toEqual(s60.metadata);
    expect(Buffer.from(recovered.snapshot!.data).toString()).toBe('app@60');
    expect(show(recovered.entries)).toEqual(show(ents(61, 100, 2)));
    expect(recovered.hardState).toEqual(hs(2, 1, 96));
    const ms = toMemoryStorage(recovered);
    expect(ms.firstIndex()).toBe(mirror.firstIndex());
    expect(ms.lastIndex()).toBe(mirror.lastIndex());
    expect(ms.term(60)).toBe(2);
    expect(show(ms.entries(61, 101, Infinity))).toEqual(show(mirror.entries(61, 101, Infinity)));
    expect(ms.initialState()).toEqual(mirror.initialState());
    expect(ms.snapshot()).toEqual(mirror.snapshot());
    await wal.close();

    // Two more snapshots: only the newest two files stay, and the log keeps going.
    await w2.save(hs(2, 1, 100), ents(101, 120, 2), true);
    await w2.saveSnapshot(snap(90, 2));
    await w2.saveSnapshot(snap(110, 2));
    await w2.saveSnapshot(snap(105, 2)); // older than the newest: ignored
    expect(readdirSync(join(dir, 'snap')).sort()).toEqual([
      '0000000000000002-000000000000005a.snap',
      '0000000000000002-000000000000006e.snap',
    ]);
    await w2.close();
    const { wal: w3, recovered: r3 } = await Wal.open(dir, { segmentBytes, logger });
    expect(r3.snapshot?.metadata.index).toBe(110);
    expect(show(r3.entries)).toEqual(show(ents(111, 120, 2)));
    expect(w3.snapshotIndex).toBe(110);
    await w3.close();
  });

  it('an installed snapshot that does not match the log replaces the whole log', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { logger: captureLogger() });
    await wal.save(hs(1, 1, 5), ents(1, 20, 1), true);
    // Leader's snapshot at 15 with term 3: our entry 15 has term 1, so 16..20 must not survive.
    await wal.saveSnapshot(snap(15, 3));
    expect(wal.lastIndex).toBe(15);
    await wal.save(hs(3, 0, 15), [], true);
    await wal.close();
    let { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(recovered.snapshot?.metadata.index).toBe(15);
    expect(recovered.entries).toEqual([]);
    expect(recovered.hardState).toEqual(hs(3, 0, 15));
    expect(toMemoryStorage(recovered).lastIndex()).toBe(15);

    // A snapshot far beyond the log.
    await w2.save(undefined, ents(16, 18, 3), true);
    await w2.saveSnapshot(snap(40, 4));
    await w2.save(hs(4, 0, 40), ents(41, 42, 4), true);
    await expect(w2.save(undefined, [ent(44, 4)], true)).rejects.toThrow(/gap/);
    await w2.close();
    ({ wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() }));
    expect(recovered.snapshot?.metadata.index).toBe(40);
    expect(show(recovered.entries)).toEqual(show(ents(41, 42, 4)));
    await w2.close();
  });

  it('classifies a snapshot by the term of the entry at its index after rewrites', async () => {
    for (const [term, kept] of [
      [2, [8]], // entry 7 has term 2 after the rewrite: a local snapshot, entry 8 stays
      [1, []], // term 1 was overwritten: the snapshot does not match the log and replaces it
    ] as const) {
      const dir = dirs.make();
      const { wal } = await Wal.open(dir, { logger: captureLogger() });
      await wal.save(undefined, ents(1, 10, 1), true);
      await wal.save(undefined, ents(6, 8, 2), true);
      await wal.saveSnapshot(snap(7, term));
      expect(wal.lastIndex).toBe(kept.length > 0 ? 8 : 7);
      await wal.close();
      const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
      expect(recovered.entries.map((e) => [e.index, e.term])).toEqual(kept.map((i) => [i, 2]));
      await w2.close();
    }
  });

  it('drops entries at or below the snapshot index, as MemoryStorage.append does', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { logger: captureLogger() });
    await wal.save(undefined, ents(1, 10, 1), true);
    await wal.saveSnapshot(snap(8, 1));
    await wal.save(undefined, ents(7, 12, 1), true);
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(show(recovered.entries)).toEqual(show(ents(9, 12, 1)));
    await w2.close();
  });

  it('ignores (and removes) a snapshot file the WAL never recorded', async () => {
    const dir = dirs.make();
    const logger = captureLogger();
    const { wal } = await Wal.open(dir, { logger });
    await wal.save(undefined, ents(1, 10, 1), true);
    await wal.saveSnapshot(snap(5, 1));
    await wal.close();
    // As if a crash hit between writing snapshot 9's file and its WAL marker.
    const { encodeSnapshotFile, snapshotFileName } = await import('../src/index.js');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'snap', snapshotFileName(1, 9)), encodeSnapshotFile(snap(9, 1)));
    writeFileSync(join(dir, 'snap', snapshotFileName(1, 9) + '.tmp'), 'partial');
    const { wal: w2, recovered } = await Wal.open(dir, { logger });
    expect(recovered.snapshot?.metadata.index).toBe(5);
    expect(show(recovered.entries)).toEqual(show(ents(6, 10, 1)));
    expect(readdirSync(join(dir, 'snap'))).toEqual([snapshotFileName(1, 5)]);
    await w2.close();
  });
});
