import { appendFileSync, cpSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Entry, HardState } from '@app/raft';
import { RECORD_HEADER_BYTES, Wal } from '../src/index.js';
import { captureLogger, ent, ents, hs, show, tempDirs } from './helpers.js';

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

/** Deterministic junk (xorshift), never mistaken for records in practice. */
function garbage(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

interface Fixture {
  dir: string;
  segment: string; // file name of the last segment
  acked: Entry[]; // entries before the final batch
  ackedHs: HardState;
  batchStart: number; // offset of the final batch in the last segment
  /** Start offsets of the final batch's records (3 entries, then the hard state), and its end. */
  bounds: number[];
  batch: Entry[];
  /** The last segment's pristine bytes. */
  original: Buffer;
  work?: string;
}

function copyOf(src: string): string {
  const dir = dirs.make();
  cpSync(src, dir, { recursive: true });
  return dir;
}

/**
 * Several segments; the last one holds a few batches and then a final batch of 3 entries + hard state,
 * which the tests treat as unacknowledged (as if the crash hit before its fdatasync returned).
 */
async function buildFixture(): Promise<Fixture> {
  const dir = dirs.make();
  let { wal } = await Wal.open(dir, { segmentBytes: 300, logger: captureLogger() });
  for (let i = 0; i < 6; i++) await wal.save(hs(1, 1, i * 3), ents(i * 3 + 1, i * 3 + 3, 1), true);
  await wal.close();
  ({ wal } = await Wal.open(dir, { segmentBytes: 1 << 20, logger: captureLogger() }));
  await wal.save(hs(2, 1, 18), ents(19, 20, 2), true);
  await wal.save(hs(2, 1, 20), ents(21, 22, 2), true);
  const segs = readdirSync(join(dir, 'wal')).sort();
  expect(segs.length).toBeGreaterThanOrEqual(3);
  const segment = segs[segs.length - 1];
  const batchStart = statSync(join(dir, 'wal', segment)).size;
  const batch = [ent(23, 2, 5), ent(24, 2, 24), ent(25, 2, 0)];
  await wal.save(hs(2, 1, 24), batch, true);
  await wal.close();
  expect(readdirSync(join(dir, 'wal')).sort()).toEqual(segs);
  const bounds = [batchStart];
  for (const e of batch) bounds.push(bounds[bounds.length - 1] + RECORD_HEADER_BYTES + 17 + e.data.length);
  bounds.push(bounds[bounds.length - 1] + RECORD_HEADER_BYTES + 24);
  expect(bounds[bounds.length - 1]).toBe(statSync(join(dir, 'wal', segment)).size);
  const original = readFileSync(join(dir, 'wal', segment));
  return { dir, segment, original, acked: ents(1, 18, 1).concat(ents(19, 22, 2)), ackedHs: hs(2, 1, 20), batchStart, bounds, batch };
}

/** Opens a copy after `damage`, checks it recovered `keep` records of the final batch, and that it goes on. */
async function expectTornRecovery(
  fx: Fixture,
  damage: (segPath: string) => void,
  keep: number,
  checkContinuation = true,
): Promise<void> {
  // One working copy per fixture: recovery only ever changes the last segment, which is restored each time.
  fx.work ??= copyOf(fx.dir);
  const dir = fx.work;
  const segPath = join(dir, 'wal', fx.segment);
  writeFileSync(segPath, fx.original);
  damage(segPath);
  const logger = captureLogger();
  const { wal, recovered } = await Wal.open(dir, { logger });
  try {
    const kept = fx.batch.slice(0, Math.min(keep, 3));
    expect(show(recovered.entries)).toEqual(show([...fx.acked, ...kept]));
    expect(recovered.hardState).toEqual(keep === 4 ? hs(2, 1, 24) : fx.ackedHs);
    const offset = fx.bounds[keep];
    expect(logger.warns).toHaveLength(1);
    expect(logger.warns[0]).toContain(segPath);
    expect(logger.warns[0]).toContain(`offset ${offset}`);
    expect(statSync(segPath).size).toBe(offset);
    if (!checkContinuation) return;
    // The repaired log accepts new writes, which survive the next reopen.
    const next = fx.acked.length + kept.length + 1;
    await wal.save(hs(3, 2, next - 1), [ent(next, 3)], true);
  } finally {
    await wal.close();
  }
  const again = await Wal.open(dir, { logger: captureLogger() });
  expect(again.recovered.entries[again.recovered.entries.length - 1].index).toBe(fx.acked.length + Math.min(keep, 3) + 1);
  expect(again.recovered.hardState.term).toBe(3);
  await again.wal.close();
}

/** How many whole records of the final batch lie before `cut`. */
function recordsBefore(fx: Fixture, cut: number): number {
  let n = 0;
  while (n + 1 < fx.bounds.length && fx.bounds[n + 1] <= cut) n++;
  return n;
}

describe('torn tails', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await buildFixture();
  });

  const variants: Array<[string, (p: string) => void]> = [
    ['truncated', () => {}],
    ['truncated + zeros', (p) => appendFileSync(p, Buffer.alloc(4096))],
    ['truncated + garbage', (p) => appendFileSync(p, garbage(300, statSync(p).size))],
  ];
  for (const [name, tail] of variants) {
    it(`${name}: every cut inside the last batch loses only the records it cut into`, async () => {
      const original = fx.original;
      const end = fx.bounds[fx.bounds.length - 1];
      for (let cut = fx.batchStart + 1; cut < end; cut++) {
        let keep = recordsBefore(fx, cut);
        if (fx.bounds[keep] === cut) continue; // a clean record boundary is not torn (covered below)
        // Zero fill restores a record exactly when the bytes it lost were zeros: then the record is intact.
        if (name.includes('zeros') && original.subarray(cut, fx.bounds[keep + 1]).every((b) => b === 0)) keep++;
        await expectTornRecovery(
          fx,
          (p) => {
            truncateSync(p, cut);
            tail(p);
          },
          keep,
          cut % 8 === 0,
        );
      }
    });
  }

  it('a flipped byte anywhere in the last batch is a torn write (nothing synced follows it)', async () => {
    const end = fx.bounds[fx.bounds.length - 1];
    for (let at = fx.batchStart; at < end; at++) {
      const keep = recordsBefore(fx, at);
      await expectTornRecovery(
        fx,
        (p) => {
          const b = readFileSync(p);
          b[at] ^= 0x5a;
          writeFileSync(p, b);
        },
        keep,
        at % 8 === 0,
      );
    }
  });

  it('a zero or garbage tail after the complete log (e.g. preallocation) is dropped, nothing lost', async () => {
    await expectTornRecovery(fx, (p) => appendFileSync(p, Buffer.alloc(1 << 16)), 4);
    await expectTornRecovery(fx, (p) => appendFileSync(p, garbage(1000, 7)), 4);
    await expectTornRecovery(fx, (p) => appendFileSync(p, Buffer.alloc(5)), 4);
  });

  it('a clean record boundary inside the batch recovers silently', async () => {
    for (let keep = 0; keep < 4; keep++) {
      const dir = copyOf(fx.dir);
      truncateSync(join(dir, 'wal', fx.segment), fx.bounds[keep]);
      const logger = captureLogger();
      const { wal, recovered } = await Wal.open(dir, { logger });
      expect(show(recovered.entries)).toEqual(show([...fx.acked, ...fx.batch.slice(0, keep)]));
      expect(logger.warns).toEqual([]);
      await wal.close();
    }
  });

  it('a segment torn inside its header (crash during rotation) is reset and reused', async () => {
    const base = dirs.make();
    const { wal } = await Wal.open(base, { segmentBytes: 200, logger: captureLogger() });
    for (let i = 0; i < 4; i++) await wal.save(hs(1, 1, i * 4), ents(i * 4 + 1, i * 4 + 4, 1), true);
    await wal.close();
    // The next save rotates: make the rotation's new segment, then tear its header at every length.
    const rot = await Wal.open(base, { segmentBytes: 200, logger: captureLogger() });
    await rot.wal.save(hs(1, 1, 16), ents(17, 17, 1), true);
    await rot.wal.close();
    const segs = readdirSync(join(base, 'wal')).sort();
    const newest = segs[segs.length - 1];
    const headerBytes = RECORD_HEADER_BYTES + 64;
    for (let cut = 0; cut < headerBytes; cut += cut < 20 ? 1 : 7) {
      const dir = copyOf(base);
      truncateSync(join(dir, 'wal', newest), cut);
      const logger = captureLogger();
      const { wal: w, recovered } = await Wal.open(dir, { segmentBytes: 200, logger });
      expect(show(recovered.entries)).toEqual(show(ents(1, 16, 1)));
      expect(recovered.hardState).toEqual(hs(1, 1, 12));
      expect(logger.warns.length).toBe(cut === 0 ? 0 : 1);
      await w.save(hs(2, 1, 16), [ent(17, 2)], true);
      await w.close();
      const again = await Wal.open(dir, { segmentBytes: 200, logger: captureLogger() });
      expect(show(again.recovered.entries)).toEqual(show([...ents(1, 16, 1), ent(17, 2)]));
      expect(again.recovered.hardState).toEqual(hs(2, 1, 16));
      await again.wal.close();
    }
  });
});
