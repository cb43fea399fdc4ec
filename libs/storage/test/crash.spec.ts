/**
 * Crash at every write step: a scripted workload (saves with and without sync, a rewritten suffix,
 * rotation, a local snapshot with compaction, an installed snapshot that replaces the log) runs on
 * CrashingFileOps, which crashes at its k-th mutating file operation and leaves the files as a power loss
 * could (per crash mode). For every k and mode, reopening with the real file layer must not throw, must
 * keep every save / snapshot that resolved durably, and must yield exactly the state after some prefix of
 * the records written (never a mix). The reopened WAL must then accept and keep new writes.
 */
import { Entry, HardState, Snapshot, emptyHardState } from '@app/raft';
import { CRASH_MODES, CrashMode, CrashingFileOps, RecoveredState, SimulatedCrash, Wal } from '../src/index.js';
import { captureLogger, ent, ents, hs, showState, tempDirs } from './helpers.js';

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const SEGMENT_BYTES = 400;

type Step =
  | { kind: 'save'; hs?: HardState; entries: Entry[]; sync: boolean }
  | { kind: 'snap'; snap: Snapshot }
  | { kind: 'close' };

function snap(index: number, term: number, data: string): Snapshot {
  return { metadata: { index, term, confState: { voters: [1, 2, 3], learners: [4] } }, data: new TextEncoder().encode(data) };
}

const WORKLOAD: Step[] = [
  { kind: 'save', hs: hs(1, 1, 0), entries: ents(1, 3, 1), sync: true },
  { kind: 'save', hs: hs(1, 1, 2), entries: [], sync: false },
  { kind: 'save', hs: hs(1, 1, 3), entries: [ent(4, 1, 3), ent(5, 1, 120), ent(6, 1, 0)], sync: true },
  { kind: 'save', entries: ents(7, 9, 1), sync: true },
  { kind: 'save', hs: hs(2, 2, 6), entries: ents(7, 8, 2), sync: true }, // rewrites 7..9
  { kind: 'save', hs: hs(2, 2, 8), entries: ents(9, 12, 2), sync: false },
  { kind: 'save', hs: hs(2, 2, 9), entries: ents(13, 13, 2), sync: true },
  { kind: 'snap', snap: snap(8, 2, 'state@8') }, // local snapshot: 9..13 stay
  { kind: 'save', hs: hs(2, 2, 12), entries: ents(14, 17, 2), sync: true },
  { kind: 'save', hs: hs(3, 0, 12), entries: [], sync: true },
  { kind: 'snap', snap: snap(20, 3, 'leader state@20') }, // installed: replaces the log
  { kind: 'save', hs: hs(3, 0, 20), entries: ents(21, 24, 3), sync: true },
  { kind: 'save', hs: hs(3, 0, 22), entries: [], sync: false },
  { kind: 'save', entries: ents(25, 26, 3), sync: true },
  { kind: 'snap', snap: snap(24, 3, 'state@24') }, // compacts segments, drops snapshot 8's file
  { kind: 'save', hs: hs(3, 0, 26), entries: ents(27, 30, 3, 60), sync: true },
  { kind: 'close' },
];

/** The state a recovery would return, maintained record by record. */
class Model {
  hardState = emptyHardState();
  snapshot: Snapshot | undefined;
  log: Entry[] = []; // entries after the snapshot, contiguous

  private termAt(i: number): number | undefined {
    if (this.snapshot && i === this.snapshot.metadata.index) return this.snapshot.metadata.term;
    const first = this.log.length > 0 ? this.log[0].index : 0;
    return i >= first && i < first + this.log.length ? this.log[i - first].term : undefined;
  }

  appendEntry(e: Entry): void {
    const first = this.log.length > 0 ? this.log[0].index : e.index;
    this.log = [...this.log.slice(0, e.index - first), e];
  }

  applySnapshot(s: Snapshot): void {
    const keep = this.termAt(s.metadata.index) === s.metadata.term;
    this.log = keep ? this.log.filter((e) => e.index > s.metadata.index) : [];
    this.snapshot = s;
  }

  render(): string {
    const r: RecoveredState = { hardState: this.hardState, snapshot: this.snapshot, entries: this.log };
    return showState(r);
  }
}

/** States after each record-level effect, and the index of the last effect of each step. */
function modelStates(): { states: string[]; stepEnd: number[] } {
  const m = new Model();
  const states = [m.render()];
  const stepEnd: number[] = [];
  for (const step of WORKLOAD) {
    if (step.kind === 'save') {
      for (const e of step.entries) {
        m.appendEntry(e);
        states.push(m.render());
      }
      if (step.hs) {
        m.hardState = step.hs;
        states.push(m.render());
      }
    } else if (step.kind === 'snap') {
      m.applySnapshot(step.snap);
      states.push(m.render());
    }
    stepEnd.push(states.length - 1);
  }
  return { states, stepEnd };
}

/** Runs the workload; returns the step that was running when it crashed (-1: during open) and the last durable one. */
async function runWorkload(dir: string, ops: CrashingFileOps): Promise<{ crashedIn: number; durable: number; crashed: boolean }> {
  let durable = -1;
  let current = -1;
  let wal: Wal | undefined;
  try {
    ({ wal } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES, fileOps: ops, logger: captureLogger() }));
    for (current = 0; current < WORKLOAD.length; current++) {
      const step = WORKLOAD[current];
      if (step.kind === 'save') {
        await wal.save(step.hs, step.entries, step.sync);
        if (step.sync) durable = current;
      } else if (step.kind === 'snap') {
        await wal.saveSnapshot(step.snap);
        durable = current;
      } else {
        await wal.close();
        durable = current;
      }
    }
    return { crashedIn: current, durable, crashed: false };
  } catch (err) {
    if (!(err instanceof SimulatedCrash)) throw err;
    await wal?.close(); // releases nothing real after a crash, but must not throw
    return { crashedIn: current, durable, crashed: true };
  }
}

describe('crash at every write step', () => {
  const { states, stepEnd } = modelStates();
  let totalOps = 0;

  beforeAll(async () => {
    const dir = dirs.make();
    const ops = new CrashingFileOps({ crashAtOp: 0 });
    const r = await runWorkload(dir, ops);
    expect(r.crashed).toBe(false);
    totalOps = ops.ops;
    const reopened = await Wal.open(dir, { logger: captureLogger() });
    expect(showState(reopened.recovered)).toBe(states[states.length - 1]);
    await reopened.wal.close();
    // The workload does exercise rotation, compaction and snapshot-file retention.
    expect(ops.trace.filter((t) => t.includes('.wal (exclusive)')).length).toBeGreaterThanOrEqual(4);
    expect(ops.trace.some((t) => /unlink .*\.wal$/.test(t))).toBe(true);
    expect(ops.trace.some((t) => /unlink .*\.snap$/.test(t))).toBe(true);
  });

  it.each(CRASH_MODES.map((m) => [m]))('mode %s: recovery never throws and keeps every durable save', async (mode) => {
    expect(totalOps).toBeGreaterThan(60);
    const seen = new Set<string>();
    for (let k = 1; k <= totalOps; k++) {
      const dir = dirs.make();
      const ops = new CrashingFileOps({ crashAtOp: k, mode: mode as CrashMode });
      const run = await runWorkload(dir, ops);
      expect(run.crashed).toBe(true);
      const logger = captureLogger();
      let reopened: Awaited<ReturnType<typeof Wal.open>>;
      try {
        reopened = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES, logger });
      } catch (err) {
        throw new Error(`crash at op ${k} (${mode}) made recovery throw: ${String(err)}\n${ops.trace.join('\n')}`);
      }
      const { wal, recovered } = reopened;
      const got = showState(recovered);
      seen.add(got);
      // Acceptable: the state after any record from the end of the last durable step up to the end of the
      // step that crashed.
      const lo = run.durable >= 0 ? stepEnd[run.durable] : 0;
      const hi = run.crashedIn >= 0 ? stepEnd[Math.min(run.crashedIn, WORKLOAD.length - 1)] : 0;
      const acceptable = states.slice(lo, hi + 1);
      if (!acceptable.includes(got)) {
        throw new Error(
          `crash at op ${k} (${mode}), in step ${run.crashedIn}, last durable step ${run.durable}: recovered\n${got}\n` +
            `expected one of\n${acceptable.join('\n')}\ntrace:\n${ops.trace.join('\n')}`,
        );
      }
      // The recovered WAL goes on: a new synced save survives another reopen.
      const next = wal.lastIndex + 1;
      const term = Math.max(recovered.hardState.term, 1) + 1;
      await wal.save(hs(term, 0, recovered.hardState.commit), [ent(next, term)], true);
      await wal.close();
      const again = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES, logger: captureLogger() });
      const last = again.recovered.entries[again.recovered.entries.length - 1];
      expect(last.index).toBe(next);
      expect(last.term).toBe(term);
      expect(again.recovered.hardState.term).toBe(term);
      await again.wal.close();
      dirs.cleanup();
    }
    // Crashes landed in many different places of the workload.
    expect(seen.size).toBeGreaterThan(8);
  });
});
