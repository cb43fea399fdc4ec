import { readFileSync, readdirSync, renameSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Snapshot } from '@app/raft';
import { RECORD_HEADER_BYTES, StorageCorruptionError, Wal, snapshotFileName } from '../src/index.js';
import { captureLogger, ents, hs, tempDirs } from './helpers.js';

const dirs = tempDirs();
afterEach(() => dirs.cleanup());

const ENTRY_RECORD = (size: number): number => RECORD_HEADER_BYTES + 17 + size;

function flip(path: string, at: number): void {
  const b = readFileSync(path);
  b[at] ^= 0x20;
  writeFileSync(path, b);
}

async function expectCorruption(dir: string, path: string, offset: number): Promise<StorageCorruptionError> {
  const err = await Wal.open(dir, { logger: captureLogger() }).then(
    async ({ wal }) => {
      await wal.close();
      throw new Error('open succeeded on a corrupted WAL');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageCorruptionError);
  const c = err as StorageCorruptionError;
  expect(c.path).toBe(path);
  expect(c.offset).toBe(offset);
  expect(c.message).toContain(path);
  expect(c.message).toContain(`byte offset ${offset}`);
  return c;
}

/** One segment: header, then 6 synced batches of one 20-byte entry each. Returns the record offsets. */
async function singleSegment(): Promise<{ dir: string; seg: string; offsets: number[] }> {
  const dir = dirs.make();
  const { wal } = await Wal.open(dir, { logger: captureLogger() });
  const offsets: number[] = [];
  let off = RECORD_HEADER_BYTES + 64;
  for (let i = 1; i <= 6; i++) {
    offsets.push(off);
    await wal.save(undefined, ents(i, i, 1, 20), true);
    off += ENTRY_RECORD(20);
  }
  await wal.close();
  const seg = join(dir, 'wal', readdirSync(join(dir, 'wal'))[0]);
  expect(statSync(seg).size).toBe(off);
  return { dir, seg, offsets };
}

describe('corruption is refused, naming the file and offset', () => {
  it('a flipped byte in a middle record of the last segment (later records were synced after it)', async () => {
    const { dir, seg, offsets } = await singleSegment();
    const record = offsets[2];
    // Every part of the record: length, crc, type, synced offset, entry fields, data.
    for (const at of [0, 3, 4, 7, 8, 10, 15, 16, 30, 33, 40, ENTRY_RECORD(20) - 1]) {
      flip(seg, record + at);
      const err = await expectCorruption(dir, seg, record);
      expect(err.message).toMatch(/crc mismatch|incomplete|unknown record flags/);
      flip(seg, record + at); // restore
    }
    // And the same WAL opens fine once restored.
    const { wal, recovered } = await Wal.open(dir, { logger: captureLogger() });
    expect(recovered.entries).toHaveLength(6);
    await wal.close();
  });

  it('a flipped byte in the segment header of the last segment', async () => {
    const { dir, seg } = await singleSegment();
    flip(seg, RECORD_HEADER_BYTES + 20);
    await expectCorruption(dir, seg, 0);
  });

  it('a flipped byte or missing tail in an earlier segment', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { segmentBytes: 256, logger: captureLogger() });
    for (let i = 0; i < 12; i++) await wal.save(hs(1, 1, i * 2), ents(i * 2 + 1, i * 2 + 2, 1, 30), true);
    await wal.close();
    const segs = readdirSync(join(dir, 'wal')).sort();
    expect(segs.length).toBeGreaterThanOrEqual(4);
    const first = join(dir, 'wal', segs[0]);
    const second = join(dir, 'wal', segs[1]);
    const firstRecord = RECORD_HEADER_BYTES + 64;

    flip(first, firstRecord + 40); // inside the first entry record after the header
    await expectCorruption(dir, first, firstRecord);
    flip(first, firstRecord + 40);

    // The last record of an earlier segment: no "torn tail" excuse outside the last segment.
    const size = statSync(second).size;
    const secondBytes = readFileSync(second);
    const lastRecord = size - (RECORD_HEADER_BYTES + 24); // each batch ends with its hard state record
    flip(second, size - 1);
    await expectCorruption(dir, second, lastRecord);
    writeFileSync(second, secondBytes);

    truncateSync(second, size - 5);
    const err = await expectCorruption(dir, second, lastRecord);
    expect(err.message).toContain('incomplete');
    writeFileSync(second, secondBytes);

    const { wal: ok } = await Wal.open(dir, { logger: captureLogger() });
    await ok.close();
  });

  it('a missing middle segment', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { segmentBytes: 200, logger: captureLogger() });
    for (let i = 0; i < 8; i++) await wal.save(undefined, ents(i * 2 + 1, i * 2 + 2, 1, 40), true);
    await wal.close();
    const segs = readdirSync(join(dir, 'wal')).sort();
    unlinkSync(join(dir, 'wal', segs[2]));
    const err = await expectCorruption(dir, join(dir, 'wal', segs[3]), 0);
    expect(err.message).toContain('sequence gap');
  });

  it('a segment renamed to another sequence number', async () => {
    const dir = dirs.make();
    const { wal } = await Wal.open(dir, { segmentBytes: 200, logger: captureLogger() });
    for (let i = 0; i < 4; i++) await wal.save(undefined, ents(i * 2 + 1, i * 2 + 2, 1, 40), true);
    await wal.close();
    const segs = readdirSync(join(dir, 'wal')).sort();
    const last = segs[segs.length - 1];
    const renamed = (parseInt(last.slice(0, 16), 16) + 1).toString(16).padStart(16, '0') + last.slice(16);
    renameSync(join(dir, 'wal', segs[segs.length - 2]), join(dir, 'wal', renamed));
    renameSync(join(dir, 'wal', last), join(dir, 'wal', segs[segs.length - 2]));
    await expect(Wal.open(dir, { logger: captureLogger() })).rejects.toThrow(StorageCorruptionError);
  });

  describe('snapshot files', () => {
    const snap: Snapshot = {
      metadata: { index: 10, term: 2, confState: { voters: [1, 2, 3], learners: [] } },
      data: new TextEncoder().encode('the state machine at index 10'),
    };

    async function withSnapshot(): Promise<{ dir: string; file: string }> {
      const dir = dirs.make();
      const { wal } = await Wal.open(dir, { logger: captureLogger() });
      await wal.save(hs(2, 1, 10), ents(1, 12, 2), true);
      await wal.saveSnapshot(snap);
      await wal.close();
      return { dir, file: join(dir, 'snap', snapshotFileName(2, 10)) };
    }

    it('a flipped byte in the data or metadata fails the checksum', async () => {
      const { dir, file } = await withSnapshot();
      const size = statSync(file).size;
      for (const at of [16, 24, 40, size - 1]) {
        flip(file, at);
        const err = await expectCorruption(dir, file, 12);
        expect(err.message).toContain('checksum mismatch');
        flip(file, at);
      }
      const { wal, recovered } = await Wal.open(dir, { logger: captureLogger() });
      expect(recovered.snapshot?.metadata).toEqual(snap.metadata);
      await wal.close();
    });

    it('a damaged header or truncated file', async () => {
      const { dir, file } = await withSnapshot();
      flip(file, 2);
      await expectCorruption(dir, file, 0);
      flip(file, 2);
      flip(file, 12); // the stored checksum itself
      await expectCorruption(dir, file, 12);
      flip(file, 12);
      truncateSync(file, statSync(file).size - 1);
      await expectCorruption(dir, file, 12);
    });

    it('a missing snapshot file that the WAL recorded', async () => {
      const { dir, file } = await withSnapshot();
      unlinkSync(file);
      const err = await expectCorruption(dir, file, 0);
      expect(err.message).toContain('missing');
    });
  });
});
