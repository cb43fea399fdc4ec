/**
 * Property tests for the Raft log (libs/raft/src/log.ts) and MemoryStorage / limitSize (storage.ts), against a
 * deliberately naive model: the log is a plain array of entries after a snapshot point, and every query is
 * answered by indexing or scanning that array.
 *
 * Random operation sequences are generated as raw numbers and interpreted against the current model state, so
 * that every call respects its documented precondition (never conflict at or below the commit index, append
 * after the commit index, apply only committed entries, compact only applied and persisted entries).
 */
import fc from 'fast-check';
import {
  CompactedError,
  Entry,
  EntryType,
  MemoryStorage,
  NO_LIMIT,
  RaftInvariantError,
  RaftLog,
  Snapshot,
  UnavailableError,
  limitSize,
} from '@app/raft';

/** limitSize's cost of one entry (storage.ts): its payload plus a fixed 24-byte overhead. */
const ENTRY_OVERHEAD = 24;
const entSize = (e: Entry): number => e.data.length + ENTRY_OVERHEAD;

/** Naive size limit: the longest prefix within maxSize bytes, but never less than one entry. */
function naiveLimit(ents: Entry[], maxSize: number): Entry[] {
  const out: Entry[] = [];
  let total = 0;
  for (const e of ents) {
    if (out.length > 0 && total + entSize(e) > maxSize) break;
    out.push(e);
    total += entSize(e);
  }
  return out;
}

/** Comparable form of entries: index, term and payload. */
const proj = (ents: Entry[]): string[] => ents.map((e) => `${e.index}/${e.term}/${Array.from(e.data).join(',')}`);

const range = (lo: number, hi: number): number[] => Array.from({ length: Math.max(0, hi - lo) }, (_, k) => lo + k);

/** A term ≥ 1 that differs from `ours`. */
function otherTerm(ours: number, x: number): number {
  if (ours === 0) return 1 + (x % 4);
  if (x % 3 === 0 && ours > 1) return ours - 1;
  return ours + 1 + (x % 3);
}

/** Deep equality, cheap on success (many checks per run); falls back to expect() for a readable diff. */
function same(actual: unknown, expected: unknown): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) expect(actual).toEqual(expected);
}

/** expect(f).toThrow(cls), cheap on success. */
function throws(f: () => unknown, cls: new (...args: never[]) => Error): void {
  if (!(errorOf(f) instanceof cls)) expect(f).toThrow(cls);
}

function errorOf(f: () => unknown): unknown {
  try {
    f();
    return undefined;
  } catch (e) {
    return e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The naive model.

interface Model {
  /** The dummy entry (snapshot point): firstIndex - 1 and its term. */
  snapIndex: number;
  snapTerm: number;
  /** The whole log after the snapshot point: ents[k].index === snapIndex + 1 + k. */
  ents: Entry[];
  committed: number;
  applied: number;
  /** Entries ≤ stable are persisted in the storage (and equal to the log's). */
  stable: number;
  /** A snapshot received (RaftLog.restore) and not yet written to the storage. */
  pending: boolean;
  /** The MemoryStorage: its dummy entry, and its entries (may hold a stale suffix beyond `stable`). */
  sDummy: number;
  sDummyTerm: number;
  sEnts: Entry[];
}

const lastOf = (m: Model): number => m.snapIndex + m.ents.length;

/** Term at i: the dummy's term at snapIndex, the entry's term inside the log, 0 outside it. */
function mTerm(m: Model, i: number): number {
  if (i === m.snapIndex) return m.snapTerm;
  if (i > m.snapIndex && i <= lastOf(m)) return m.ents[i - m.snapIndex - 1].term;
  return 0;
}

const mRange = (m: Model, lo: number, hi: number): Entry[] => m.ents.slice(lo - m.snapIndex - 1, hi - m.snapIndex - 1);

/** Keep entries before newEnts[0].index (arr[k].index === base + 1 + k), then newEnts. */
const truncAppend = (base: number, arr: Entry[], newEnts: Entry[]): Entry[] =>
  arr.slice(0, newEnts[0].index - base - 1).concat(newEnts);

/** Naive fast back-off: scan down from index for the first entry of term ≤ term (unknown terms count as 0). */
function naiveFindConflictByTerm(m: Model, index: number, term: number): { index: number; term: number } {
  for (let j = index; j > 0; j--) {
    if (j < m.snapIndex) return { index: j, term: 0 }; // compacted: the term is unknown
    const t = mTerm(m, j);
    if (t <= term) return { index: j, term: t };
  }
  return { index: 0, term: 0 };
}

/** Raft §5.4.1: a log ending at (lasti, term) is at least as up to date as ours. */
function naiveUpToDate(m: Model, lasti: number, term: number): boolean {
  const ourLast = lastOf(m);
  const ourTerm = mTerm(m, ourLast);
  if (term !== ourTerm) return term > ourTerm;
  return lasti >= ourLast;
}

// ---------------------------------------------------------------------------------------------------------------
// Generators.

const KINDS = [
  'maybeAppend',
  'maybeAppend',
  'maybeAppend',
  'append',
  'append',
  'commitTo',
  'commitBeyond',
  'appliedTo',
  'appliedBad',
  'stabilise',
  'stabilise',
  'staleStableTo',
  'compact',
  'restore',
] as const;
type Kind = (typeof KINDS)[number];

interface Op {
  kind: Kind;
  a: number;
  b: number;
  c: number;
  d: number;
  n: number;
  sizes: number[];
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom(...KINDS),
  a: fc.nat(),
  b: fc.nat(),
  c: fc.nat(),
  d: fc.nat(),
  n: fc.nat({ max: 6 }),
  sizes: fc.array(fc.nat({ max: 40 }), { minLength: 6, maxLength: 6 }),
});

interface Probe {
  p1: number;
  p2: number;
  p3: number;
  p4: number;
  p5: number;
}

const probeArb: fc.Arbitrary<Probe> = fc.record({ p1: fc.nat(), p2: fc.nat(), p3: fc.nat(), p4: fc.nat(), p5: fc.nat() });

interface Init {
  snapIndex: number;
  snapTerm: number;
  termSteps: number[];
  sizes: number[];
  maxNext: number;
}

const initArb: fc.Arbitrary<Init> = fc.record({
  snapIndex: fc.nat({ max: 20 }),
  snapTerm: fc.integer({ min: 1, max: 3 }),
  termSteps: fc.array(fc.nat({ max: 2 }), { maxLength: 8 }),
  sizes: fc.array(fc.nat({ max: 40 }), { minLength: 8, maxLength: 8 }),
  maxNext: fc.oneof(fc.constant(NO_LIMIT), fc.nat({ max: 150 })),
});

// ---------------------------------------------------------------------------------------------------------------
// Harness: build a RaftLog over a MemoryStorage and its model, apply interpreted ops, compare.

class Fresh {
  private id = 1;
  entry(index: number, term: number, len: number): Entry {
    const id = this.id++;
    return { index, term, type: EntryType.Normal, data: Uint8Array.from(range(0, len), (k) => (id * 7 + k) & 0xff) };
  }
}

function setup(init: Init, fresh: Fresh): { storage: MemoryStorage; log: RaftLog; m: Model } {
  const storage = new MemoryStorage();
  const snapIndex = init.snapIndex;
  const snapTerm = snapIndex === 0 ? 0 : init.snapTerm;
  if (snapIndex > 0) {
    const snap: Snapshot = {
      metadata: { index: snapIndex, term: snapTerm, confState: { voters: [1], learners: [] } },
      data: new Uint8Array(0),
    };
    storage.applySnapshot(snap);
  }
  const ents: Entry[] = [];
  let term = Math.max(1, snapTerm);
  init.termSteps.forEach((step, k) => {
    term += step;
    ents.push(fresh.entry(snapIndex + 1 + k, term, init.sizes[k]));
  });
  storage.append(ents);
  const log = new RaftLog(storage, init.maxNext);
  const m: Model = {
    snapIndex,
    snapTerm,
    ents: ents.slice(),
    committed: snapIndex,
    applied: snapIndex,
    stable: snapIndex + ents.length,
    pending: false,
    sDummy: snapIndex,
    sDummyTerm: snapTerm,
    sEnts: ents.slice(),
  };
  return { storage, log, m };
}

/** Leader-like entries after (index): a matching prefix (copied), then maybe one conflict, then new entries. */
function appendEntries(m: Model, op: Op, index: number, fresh: Fresh): Entry[] {
  const last = lastOf(m);
  const n = op.n;
  let cpos = op.d % (n + 2); // ≥ n: no deliberate conflict
  // Precondition: the conflicting entry must be above the commit index.
  if (index + 1 + cpos <= m.committed) cpos = m.committed - index;
  const ents: Entry[] = [];
  let prevTerm = Math.max(1, mTerm(m, index));
  for (let j = 0; j < n; j++) {
    const idx = index + 1 + j;
    let e: Entry;
    const ours = idx > m.snapIndex && idx <= last; // an entry we hold (not compacted)
    if (j < cpos && ours) e = m.ents[idx - m.snapIndex - 1]; // the leader has the same entry
    else if (j === cpos && ours) e = fresh.entry(idx, otherTerm(mTerm(m, idx), op.c >> 3), op.sizes[j]);
    else e = fresh.entry(idx, prevTerm + (op.sizes[j] % 3 === 0 ? 1 : 0), op.sizes[j]);
    ents.push(e);
    prevTerm = e.term;
  }
  return ents;
}

function applyOp(log: RaftLog, storage: MemoryStorage, m: Model, op: Op, fresh: Fresh): void {
  const last = lastOf(m);
  const dummy = m.snapIndex;
  switch (op.kind) {
    case 'maybeAppend': {
      let index: number;
      let logTerm: number;
      if (op.b % 8 === 0 && dummy >= 2) {
        index = 1 + (op.a % (dummy - 1)); // a stale append whose previous entry was compacted
        logTerm = 1 + (op.c % 5);
      } else {
        index = dummy + (op.a % (last - dummy + 2)); // [dummy, last + 1]
        const ours = mTerm(m, index);
        const match = op.b % 4 !== 0 && (index === 0 || ours > 0);
        logTerm = match ? ours : otherTerm(ours, op.c);
      }
      const ents = appendEntries(m, op, index, fresh);
      const lastNew = index + ents.length;
      const committedArg = op.c % (lastNew + 4);
      const got = log.maybeAppend(index, logTerm, committedArg, ents);
      if (index < dummy || mTerm(m, index) !== logTerm) {
        if (got !== undefined) expect(got).toBeUndefined();
        return;
      }
      same(got, lastNew);
      const conflict = ents.find((e) => mTerm(m, e.index) !== e.term);
      if (conflict) {
        m.ents = truncAppend(m.snapIndex, m.ents, ents.slice(conflict.index - index - 1));
        m.stable = Math.min(m.stable, conflict.index - 1);
      }
      m.committed = Math.max(m.committed, Math.min(committedArg, lastNew));
      return;
    }
    case 'append': {
      const start = m.committed + 1 + (op.a % (last - m.committed + 1)); // [committed + 1, last + 1]
      const ents = range(0, op.n).map((j) => fresh.entry(start + j, 1 + ((op.sizes[j] + op.c) % 6), op.sizes[j]));
      const got = log.append(ents);
      if (ents.length > 0) {
        m.ents = truncAppend(m.snapIndex, m.ents, ents);
        m.stable = Math.min(m.stable, start - 1);
      }
      same(got, lastOf(m));
      return;
    }
    case 'commitTo': {
      // Mostly forward (from the commit index up to the last index), sometimes anywhere (a no-op below).
      const c = op.b % 4 === 0 ? op.a % (last + 1) : m.committed + (op.a % (last - m.committed + 1));
      log.commitTo(c);
      m.committed = Math.max(m.committed, c);
      return;
    }
    case 'commitBeyond': {
      throws(() => log.commitTo(last + 1 + (op.a % 3)), RaftInvariantError);
      return;
    }
    case 'appliedTo': {
      const i = m.applied + (op.a % (m.committed - m.applied + 1));
      log.appliedTo(i);
      if (i !== 0) m.applied = i;
      return;
    }
    case 'appliedBad': {
      // Above the commit index, or (when possible) below the applied index: rejected, nothing changes.
      const i = op.b % 2 === 0 || m.applied < 2 ? m.committed + 1 + (op.a % 3) : 1 + (op.a % (m.applied - 1));
      throws(() => log.appliedTo(i), RaftInvariantError);
      return;
    }
    case 'stabilise': {
      if (m.pending) {
        // As the driver does with a Ready: the snapshot is written first, then it counts as applied.
        storage.applySnapshot({
          metadata: { index: dummy, term: m.snapTerm, confState: { voters: [1], learners: [] } },
          data: new Uint8Array(0),
        });
        log.stableSnapTo(dummy);
        if (m.applied < dummy) log.appliedTo(dummy);
        m.pending = false;
        m.applied = Math.max(m.applied, dummy);
        m.sDummy = dummy;
        m.sDummyTerm = m.snapTerm;
        m.sEnts = [];
      }
      if (m.stable >= last) return;
      const k = m.stable + 1 + (op.a % (last - m.stable));
      const toWrite = log.unstableEntries().filter((e) => e.index <= k);
      storage.append(toWrite);
      log.stableTo(k, mTerm(m, k));
      m.sEnts = truncAppend(m.sDummy, m.sEnts, mRange(m, m.stable + 1, k + 1));
      m.stable = k;
      return;
    }
    case 'staleStableTo': {
      // An acknowledgment that no longer applies: already stable, replaced (term differs) or beyond the log.
      const v = op.b % 3;
      if (v === 0) {
        const i = dummy + (op.a % (m.stable - dummy + 1));
        log.stableTo(i, mTerm(m, i));
      } else if (v === 1 && m.stable < last) {
        const i = m.stable + 1 + (op.a % (last - m.stable));
        log.stableTo(i, otherTerm(mTerm(m, i), op.c));
      } else {
        log.stableTo(last + 1 + (op.a % 3), 1 + (op.c % 5));
      }
      return;
    }
    case 'compact': {
      if (op.b % 5 === 0) {
        storage.compact(op.a % (m.sDummy + 1)); // at or below the storage's snapshot point: no-op
        return;
      }
      const maxK = Math.min(m.applied, m.stable);
      if (maxK <= dummy || m.pending) return;
      const k = dummy + 1 + (op.a % (maxK - dummy));
      storage.compact(k);
      m.snapTerm = mTerm(m, k);
      m.ents = m.ents.slice(k - dummy);
      m.sEnts = m.sEnts.slice(k - dummy);
      m.snapIndex = m.sDummy = k;
      m.sDummyTerm = m.snapTerm;
      return;
    }
    case 'restore': {
      // A snapshot from the leader beyond our commit index that our log does not already contain (otherwise
      // raft.ts only fast-forwards the commit index).
      const s = m.committed + 1 + (op.a % (last - m.committed + 5));
      const t = otherTerm(mTerm(m, s), op.c);
      log.restore({ metadata: { index: s, term: t, confState: { voters: [1], learners: [] } }, data: new Uint8Array(0) });
      m.snapIndex = s;
      m.snapTerm = t;
      m.ents = [];
      m.committed = s;
      m.stable = s;
      m.pending = true;
      return;
    }
  }
}

function check(log: RaftLog, storage: MemoryStorage, m: Model, maxNext: number, pr: Probe): void {
  const last = lastOf(m);
  const dummy = m.snapIndex;
  const first = dummy + 1;
  const lastTerm = mTerm(m, last);
  same({
    first: log.firstIndex(),
    last: log.lastIndex(),
    lastTerm: log.lastTerm(),
    committed: log.committed,
    applied: log.applied,
  }, { first, last, lastTerm, committed: m.committed, applied: m.applied });

  // term(i) over the whole range [dummy, last + 2] (0 beyond the end).
  const inRange = range(dummy, last + 3);
  same(inRange.map((i) => [i, log.term(i)]), inRange.map((i) => [i, mTerm(m, i)]));
  // Compacted indexes: term is 0 or CompactedError, and never matches a real (≥ 1) term.
  for (const i of range(0, dummy)) {
    let t: unknown;
    try {
      t = log.term(i);
    } catch (e) {
      t = e instanceof CompactedError ? 0 : e;
    }
    if (t !== 0) expect([i, t]).toEqual([i, 0]);
  }
  const compacted = range(0, dummy);
  same(compacted.map((i) => log.matchTerm(i, 1 + (pr.p4 % 6))), compacted.map(() => false));

  // matchTerm: within the log the right term matches and a different one does not; an index beyond the
  // last one never matches (so a follower can never acknowledge entries it does not have).
  same(
    inRange.map((i) => [i, log.matchTerm(i, mTerm(m, i)), log.matchTerm(i, otherTerm(mTerm(m, i), pr.p1))]),
    inRange.map((i) => [i, i <= last, false]),
  );

  // Contents: everything, the unstable tail, and the storage.
  same(proj(log.allEntries()), proj(m.ents));
  same(proj(log.unstableEntries()), proj(m.ents.filter((e) => e.index > m.stable)));
  const sLast = m.sDummy + m.sEnts.length;
  same([storage.firstIndex(), storage.lastIndex()], [m.sDummy + 1, sLast]);
  const sRange = range(m.sDummy, sLast + 1);
  same(
    sRange.map((i) => storage.term(i)),
    [m.sDummyTerm, ...m.sEnts.map((e) => e.term)],
  );
  const snapIdx = m.pending ? dummy : storage.snapshot().metadata.index;
  same([log.hasPendingSnapshot(), log.snapshot().metadata.index], [m.pending, snapIdx]);

  // slice / entries with a size limit.
  const lo = first + (pr.p1 % (last - first + 2)); // [first, last + 1]
  const hi = lo + (pr.p2 % (last + 2 - lo)); // [lo, last + 1]
  const maxSize = pr.p3 % 3 === 0 ? NO_LIMIT : pr.p4 % 200;
  same(proj(log.slice(lo, hi, maxSize)), proj(naiveLimit(mRange(m, lo, hi), maxSize)));
  same(proj(log.entries(lo, maxSize)), proj(naiveLimit(mRange(m, lo, last + 1), maxSize)));
  same(log.entries(last + 1 + (pr.p5 % 3), maxSize), []);
  throws(() => log.slice(first - 1, first, NO_LIMIT), CompactedError);

  // Committed entries to apply.
  const off = Math.max(m.applied + 1, first);
  const next = m.committed + 1 > off ? naiveLimit(mRange(m, off, m.committed + 1), maxNext) : [];
  same(proj(log.nextEnts()), proj(next));
  same(log.hasNextEnts(), next.length > 0);

  // isUpToDate (§5.4.1) on a grid around our last entry, plus a random point.
  const lastis = [last - 1, last, last + 1, pr.p2 % (last + 3)];
  const terms = [lastTerm - 1, lastTerm, lastTerm + 1, pr.p3 % 8];
  const grid = lastis.flatMap((li) => terms.map((t) => [li, t]));
  same(grid.map(([li, t]) => [li, t, log.isUpToDate(li, t)]), 
    grid.map(([li, t]) => [li, t, naiveUpToDate(m, li, t)]),
  );

  // findConflict on a probe: entries from s, copying our terms except maybe one.
  const s = first + (pr.p3 % (last - first + 2));
  const len = pr.p4 % 5;
  const flip = pr.p5 % 6;
  const probeEnts = range(0, len).map((k) => {
    const idx = s + k;
    const ours = mTerm(m, idx);
    const t = k === flip || ours === 0 ? otherTerm(ours, pr.p1 + k) : ours;
    return { index: idx, term: t, type: EntryType.Normal, data: new Uint8Array(0) };
  });
  const naiveConflict = probeEnts.find((e) => mTerm(m, e.index) !== e.term)?.index ?? 0;
  same(log.findConflict(probeEnts), naiveConflict);

  // findConflictByTerm for every index, against a backwards scan.
  const fcTerm = pr.p5 % (Math.max(lastTerm, m.snapTerm) + 2);
  const fcIdx = range(0, last + 3);
  same(fcIdx.map((i) => [i, log.findConflictByTerm(i, fcTerm)]), 
    fcIdx.map((i) => [i, naiveFindConflictByTerm(m, i, fcTerm)]),
  );
}

const opsArb = fc.array(fc.tuple(opArb, probeArb), { minLength: 10, maxLength: 40, size: 'max' });

describe('RaftLog over MemoryStorage vs a naive array model', () => {
  test('random maybeAppend / append / commit / apply / stabilise / compact / restore sequences', () => {
    fc.assert(
      fc.property(initArb, probeArb, opsArb, (init, pr0, ops) => {
        const fresh = new Fresh();
        const { storage, log, m } = setup(init, fresh);
        check(log, storage, m, init.maxNext, pr0);
        for (const [op, pr] of ops) {
          applyOp(log, storage, m, op, fresh);
          check(log, storage, m, init.maxNext, pr);
        }
      }),
      { numRuns: 250 },
    );
  });

  /*
   * The log must stay contiguous (Unstable: "entries[i].index === offset + i"). An append that would leave a
   * hole must be refused (etcd panics there: unstable.truncateAndAppend → u.slice bounds check), and an append
   * message whose previous entry (index > lastIndex, logTerm 0) lies beyond our log must not match: we hold no
   * entry there, whatever term(i) reports for out-of-range indexes.
   */
  function holeProperty(viaMaybeAppend: boolean): fc.IPropertyWithHooks<[Init, Op[], number]> {
    return fc.property(initArb, fc.array(opArb, { maxLength: 20 }), fc.integer({ min: 1, max: 3 }), (init, ops, gap) => {
      const fresh = new Fresh();
      const { storage, log, m } = setup(init, fresh);
      for (const op of ops) applyOp(log, storage, m, op, fresh);
      const last = lastOf(m);
      const before = proj(log.allEntries());
      const ent = fresh.entry(last + 1 + gap, Math.max(1, mTerm(m, last)), 1);
      const err = viaMaybeAppend
        ? errorOf(() => expect(log.maybeAppend(last + gap, 0, m.committed, [ent])).toBeUndefined())
        : errorOf(() => log.append([ent]));
      if (err !== undefined && !(err instanceof RaftInvariantError)) throw err;
      const after = log.allEntries();
      expect(after.map((e) => e.index)).toEqual(range(log.firstIndex(), log.lastIndex() + 1));
      expect(proj(after)).toEqual(before);
    });
  }

  test('the log never gets a hole: append() past lastIndex + 1 is refused', () => {
    fc.assert(holeProperty(false), { numRuns: 100 });
  });

  test('the log never gets a hole: maybeAppend() with a previous entry (index > lastIndex, term 0) does not match', () => {
    fc.assert(holeProperty(true), { numRuns: 100 });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// MemoryStorage alone.

interface SModel {
  dummy: number;
  dummyTerm: number;
  ents: Entry[];
  snapIndex: number;
  snapTerm: number;
}

const sLast = (s: SModel): number => s.dummy + s.ents.length;
function sTerm(s: SModel, i: number): number {
  return i === s.dummy ? s.dummyTerm : s.ents[i - s.dummy - 1].term;
}

const SKINDS = ['append', 'append', 'append', 'appendGap', 'compact', 'compactBeyond', 'createSnapshot', 'applySnapshot'] as const;

function checkStorage(st: MemoryStorage, s: SModel, pr: Probe): void {
  const last = sLast(s);
  same([st.firstIndex(), st.lastIndex()], [s.dummy + 1, last]);
  same([st.snapshot().metadata.index, st.snapshot().metadata.term], [s.snapIndex, s.snapTerm]);
  // term: CompactedError below the dummy, UnavailableError beyond the end.
  const outcome = (i: number): unknown => {
    try {
      return st.term(i);
    } catch (e) {
      return e instanceof CompactedError ? 'compacted' : e instanceof UnavailableError ? 'unavailable' : e;
    }
  };
  const idxs = range(Math.max(0, s.dummy - 2), last + 3);
  same(
    idxs.map((i) => [i, outcome(i)]),
    idxs.map((i) => [i, i < s.dummy ? 'compacted' : i > last ? 'unavailable' : sTerm(s, i)]),
  );
  // entries(lo, hi, maxSize)
  const lo = Math.max(0, s.dummy - 1) + (pr.p1 % (last - s.dummy + 3)); // [dummy - 1, last + 1]
  const hi = lo + (pr.p2 % (last + 3 - lo)); // [lo, last + 2]
  const maxSize = pr.p3 % 4 === 0 ? NO_LIMIT : pr.p4 % 200;
  const got = errorOf(() => st.entries(lo, hi, maxSize));
  const kind = (e: unknown): string => (e instanceof Error ? e.constructor.name : 'ok');
  if (lo <= s.dummy) {
    same(kind(got), 'CompactedError');
  } else if (hi > last + 1) {
    same(kind(got), 'RaftInvariantError');
  } else if (s.ents.length === 0) {
    same(kind(got), 'UnavailableError');
  } else {
    const res = st.entries(lo, hi, maxSize);
    const want = s.ents.slice(lo - s.dummy - 1, hi - s.dummy - 1);
    same(proj(res), proj(naiveLimit(want, maxSize)));
    // Size limit, stated directly: at least one entry, within the limit unless there is just one, maximal.
    const bytes = res.reduce((acc, e) => acc + entSize(e), 0);
    if (hi > lo && res.length < 1) expect(res.length).toBeGreaterThanOrEqual(1);
    if (res.length > 1 && bytes > maxSize) expect(bytes).toBeLessThanOrEqual(maxSize);
    if (res.length < want.length && bytes + entSize(want[res.length]) <= maxSize) {
      expect(bytes + entSize(want[res.length])).toBeGreaterThan(maxSize);
    }
  }
}

describe('MemoryStorage vs a naive array model', () => {
  test('append with overlap / truncation / compacted prefix, compact, snapshots, entries with size limits', () => {
    const sopArb = fc.record({
      kind: fc.constantFrom(...SKINDS),
      a: fc.nat(),
      b: fc.nat(),
      n: fc.nat({ max: 6 }),
      sizes: fc.array(fc.nat({ max: 40 }), { minLength: 6, maxLength: 6 }),
    });
    fc.assert(
      fc.property(fc.array(fc.tuple(sopArb, probeArb), { minLength: 5, maxLength: 40, size: 'max' }), (ops) => {
        const fresh = new Fresh();
        const st = new MemoryStorage();
        const s: SModel = { dummy: 0, dummyTerm: 0, ents: [], snapIndex: 0, snapTerm: 0 };
        for (const [op, pr] of ops) {
          const last = sLast(s);
          switch (op.kind) {
            case 'append': {
              // Start anywhere from a little below the first index (partly compacted) to last + 1.
              const lowest = Math.max(1, s.dummy - 3);
              const start = lowest + (op.a % (last + 2 - lowest));
              const ents = range(0, op.n).map((j) => fresh.entry(start + j, 1 + ((op.b + j) % 5), op.sizes[j]));
              st.append(ents);
              const kept = ents.filter((e) => e.index > s.dummy);
              if (kept.length > 0) s.ents = s.ents.slice(0, kept[0].index - s.dummy - 1).concat(kept);
              break;
            }
            case 'appendGap': {
              const ents = [fresh.entry(last + 2 + (op.a % 3), 1, op.sizes[0])];
              throws(() => st.append(ents), RaftInvariantError);
              break;
            }
            case 'compact': {
              const k = op.a % (last + 1); // ≤ dummy: no-op
              st.compact(k);
              if (k > s.dummy) {
                s.dummyTerm = sTerm(s, k);
                s.ents = s.ents.slice(k - s.dummy);
                s.dummy = k;
              }
              break;
            }
            case 'compactBeyond': {
              throws(() => st.compact(last + 1 + (op.a % 3)), RaftInvariantError);
              break;
            }
            case 'createSnapshot': {
              // At or below the current snapshot: unchanged; otherwise an index still in the log.
              const lowest = Math.max(s.dummy, s.snapIndex + 1);
              const i = op.b % 4 === 0 || lowest > last ? op.a % (s.snapIndex + 1) : lowest + (op.a % (last - lowest + 1));
              const snap = st.createSnapshot(i, undefined, new Uint8Array(0));
              if (i > s.snapIndex) {
                s.snapIndex = i;
                s.snapTerm = sTerm(s, i);
              }
              same([snap.metadata.index, snap.metadata.term], [s.snapIndex, s.snapTerm]);
              break;
            }
            case 'applySnapshot': {
              const index = op.b % 4 === 0 ? op.a % (s.snapIndex + 1) : s.snapIndex + 1 + (op.a % (last + 4));
              const term = 1 + (op.b % 7);
              st.applySnapshot({
                metadata: { index, term, confState: { voters: [1], learners: [] } },
                data: new Uint8Array(0),
              });
              if (index > s.snapIndex) {
                s.dummy = s.snapIndex = index;
                s.dummyTerm = s.snapTerm = term;
                s.ents = [];
              }
              break;
            }
          }
          checkStorage(st, s, pr);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('limitSize: a prefix, at least one entry, within the limit unless only one, and maximal', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: 60 }), { maxLength: 12 }),
        fc.oneof(fc.nat({ max: 400 }), fc.constant(NO_LIMIT)),
        (sizes, maxSize) => {
          const fresh = new Fresh();
          const ents = sizes.map((len, k) => fresh.entry(k + 1, 1, len));
          const res = limitSize(ents, maxSize);
          expect(proj(res)).toEqual(proj(naiveLimit(ents, maxSize)));
          expect(proj(res)).toEqual(proj(ents.slice(0, res.length)));
          if (ents.length > 0) expect(res.length).toBeGreaterThanOrEqual(1);
          const bytes = res.reduce((acc, e) => acc + entSize(e), 0);
          if (res.length > 1) expect(bytes).toBeLessThanOrEqual(maxSize);
          if (res.length < ents.length) expect(bytes + entSize(ents[res.length])).toBeGreaterThan(maxSize);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
