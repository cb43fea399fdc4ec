/**
 * Property tests for replication flow control (libs/raft/src/progress.ts): Inflights against a bounded FIFO
 * model, and Progress against a naive state-machine model plus its invariants (match never decreases, next
 * never drops below match + 1).
 */
import fc from 'fast-check';
import { Inflights, Progress, ProgressState, RaftInvariantError } from '@app/raft';

/** Deep equality, cheap on success; falls back to expect() for a readable diff. */
function same(actual: unknown, expected: unknown): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) expect(actual).toEqual(expected);
}

function throwsInvariant(f: () => unknown): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof RaftInvariantError)) expect(f).toThrow(RaftInvariantError);
}

// ---------------------------------------------------------------------------------------------------------------
// Inflights vs a bounded FIFO.

const IKINDS = ['add', 'add', 'add', 'addNotIncreasing', 'freeLE', 'freeLE', 'freeFirstOne', 'reset'] as const;

describe('Inflights vs a bounded FIFO model', () => {
  test('add (increasing only, refused when full), freeLE frees a prefix, freeFirstOne the head, full(), reset', () => {
    const opArb = fc.record({ kind: fc.constantFrom(...IKINDS), a: fc.nat(), b: fc.nat() });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.array(opArb, { minLength: 20, maxLength: 300, size: 'max' }),
        (size, ops) => {
          const inf = new Inflights(size);
          let q: number[] = [];
          let lastAdded = 0;
          for (const op of ops) {
            switch (op.kind) {
              case 'add': {
                const x = lastAdded + 1 + (op.a % 5);
                if (q.length >= size) {
                  // The leader's isPaused() would have stopped it: refused, nothing changes.
                  throwsInvariant(() => inf.add(x));
                } else {
                  inf.add(x);
                  q.push(x);
                  lastAdded = x;
                }
                break;
              }
              case 'addNotIncreasing': {
                if (q.length === 0) break; // anything may start an empty window
                const x = q[q.length - 1] - (op.a % 3); // ≤ the newest in flight
                throwsInvariant(() => inf.add(x));
                break;
              }
              case 'freeLE': {
                // Around the window: below it, at an element, between elements, beyond it.
                const to = q.length === 0 ? lastAdded - 2 + (op.a % 5) : q[op.a % q.length] + ((op.b % 3) - 1);
                inf.freeLE(to);
                q = q.filter((x) => x > to); // increasing, so this drops exactly a prefix
                break;
              }
              case 'freeFirstOne':
                inf.freeFirstOne();
                q = q.slice(1);
                break;
              case 'reset':
                if (op.a % 40 !== 0) break; // keep resets rare so that long windows build up
                inf.reset();
                q = [];
                break;
            }
            same([inf.count, inf.full()], [q.length, q.length >= size]);
          }
          // Drain one element at a time: the exact contents, in FIFO order.
          for (let k = 0; k < q.length; k++) {
            inf.freeLE(q[k]);
            same(inf.count, q.length - k - 1);
          }
          same(inf.full(), false);
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Progress vs a naive model.

interface PModel {
  match: number;
  next: number;
  state: ProgressState;
  pendingSnapshot: number;
  paused: boolean;
  inflights: number[];
}

const PKINDS = [
  'maybeUpdate',
  'maybeUpdate',
  'maybeDecrTo',
  'maybeDecrTo',
  'maybeDecrTo',
  'sentEntries',
  'sentEntries',
  'freeLE',
  'becomeProbe',
  'becomeReplicate',
  'becomeSnapshot',
] as const;

function naivePaused(m: PModel, size: number): boolean {
  if (m.state === ProgressState.Probe) return m.paused;
  if (m.state === ProgressState.Replicate) return m.inflights.length >= size;
  return true;
}

describe('Progress vs a naive model', () => {
  test('maybeUpdate / maybeDecrTo / sentEntries / state changes: next ≥ match + 1, match never decreases', () => {
    const opArb = fc.record({ kind: fc.constantFrom(...PKINDS), a: fc.nat(), b: fc.nat(), c: fc.nat() });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 30 }),
        fc.array(opArb, { minLength: 10, maxLength: 80, size: 'max' }),
        (size, next0, ops) => {
          const pr = new Progress(size, false, next0);
          const m: PModel = {
            match: 0,
            next: next0,
            state: ProgressState.Probe,
            pendingSnapshot: 0,
            paused: false,
            inflights: [],
          };
          const reset = (state: ProgressState): void => {
            m.state = state;
            m.paused = false;
            m.pendingSnapshot = 0;
            m.inflights = [];
          };
          for (const op of ops) {
            const prevMatch = pr.match;
            switch (op.kind) {
              case 'maybeUpdate': {
                // An acknowledgment anywhere from stale to a little past next.
                const n = op.a % (m.next + 4);
                const updated = m.match < n;
                if (updated) {
                  m.match = n;
                  m.paused = false;
                }
                m.next = Math.max(m.next, n + 1);
                same(pr.maybeUpdate(n), updated);
                break;
              }
              case 'maybeDecrTo': {
                // A rejection of the probe in flight (next - 1), or a stale / unrelated one; a hint ≤ rejected.
                const rejected = op.b % 3 !== 0 ? m.next - 1 : op.a % (m.next + 3);
                const hint = op.c % (rejected + 1);
                let ok: boolean;
                if (m.state === ProgressState.Replicate) {
                  ok = rejected > m.match;
                  if (ok) m.next = m.match + 1;
                } else {
                  ok = m.next - 1 === rejected;
                  if (ok) {
                    m.next = Math.max(Math.min(rejected, hint + 1), m.match + 1, 1);
                    m.paused = false;
                  }
                }
                const wasReplicate = m.state === ProgressState.Replicate;
                same(pr.maybeDecrTo(rejected, hint), ok);
                if (ok && wasReplicate) {
                  // As the leader does (raft.ts, AppResp reject): a rejected pipeline falls back to probing.
                  // Without it the next append would go below the inflight window (a caller error).
                  reset(ProgressState.Probe);
                  m.next = m.match + 1;
                  pr.becomeProbe();
                }
                break;
              }
              case 'sentEntries': {
                if (m.state === ProgressState.Snapshot) {
                  throwsInvariant(() => pr.sentEntries(1, m.next));
                  break;
                }
                if (naivePaused(m, size)) break; // the leader sends nothing to a paused follower
                const count = op.a % 4;
                const lastIndex = m.next + count - 1;
                pr.sentEntries(count, lastIndex);
                if (m.state === ProgressState.Replicate) {
                  if (count > 0) {
                    m.next = lastIndex + 1;
                    m.inflights.push(lastIndex);
                  }
                  m.paused = m.inflights.length >= size;
                } else {
                  m.paused = true;
                }
                break;
              }
              case 'freeLE': {
                const to = m.match + (op.a % (m.next - m.match + 1));
                pr.inflights.freeLE(to);
                m.inflights = m.inflights.filter((x) => x > to);
                break;
              }
              case 'becomeProbe': {
                const wasSnapshot = m.state === ProgressState.Snapshot;
                const pending = m.pendingSnapshot;
                reset(ProgressState.Probe);
                m.next = wasSnapshot ? Math.max(m.match + 1, pending + 1) : m.match + 1;
                pr.becomeProbe();
                break;
              }
              case 'becomeReplicate':
                reset(ProgressState.Replicate);
                m.next = m.match + 1;
                pr.becomeReplicate();
                break;
              case 'becomeSnapshot': {
                const i = m.match + (op.a % 10);
                reset(ProgressState.Snapshot);
                m.pendingSnapshot = i;
                pr.becomeSnapshot(i);
                break;
              }
            }
            // Invariants.
            if (pr.match < prevMatch) expect(pr.match).toBeGreaterThanOrEqual(prevMatch);
            if (pr.next < pr.match + 1) expect(pr.next).toBeGreaterThanOrEqual(pr.match + 1);
            // The model, field by field.
            same(
              {
                match: pr.match,
                next: pr.next,
                state: pr.state,
                pendingSnapshot: pr.pendingSnapshot,
                paused: pr.msgAppFlowPaused,
                inflights: pr.inflights.count,
                isPaused: pr.isPaused(),
              },
              {
                match: m.match,
                next: m.next,
                state: m.state,
                pendingSnapshot: m.pendingSnapshot,
                paused: m.paused,
                inflights: m.inflights.length,
                isPaused: naivePaused(m, size),
              },
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
