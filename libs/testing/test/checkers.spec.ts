import { Entry, EntryType, MemoryStorage } from '@app/raft';
import { CheckedNode, SafetyChecker, Violation, hardStateRegression, noPromises, stringToBytes } from '@app/testing';

const e = (index: number, term: number, data = `c${index}`): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: stringToBytes(data),
});

function node(id: number, entries: Entry[]): CheckedNode {
  const storage = new MemoryStorage();
  storage.append(entries);
  return { id, storage, isRunning: () => true };
}

function violationOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof Violation) return err.checker;
    throw err;
  }
  return undefined;
}

describe('SafetyChecker', () => {
  it('Election Safety: two leaders in one term', () => {
    const c = new SafetyChecker();
    c.onBecomeLeader(node(1, [e(1, 1)]), 2);
    expect(violationOf(() => c.onBecomeLeader(node(2, [e(1, 1)]), 3))).toBeUndefined();
    expect(violationOf(() => c.onBecomeLeader(node(3, [e(1, 1)]), 2))).toBe('election-safety');
  });

  it('Log Matching: same index and term with a different payload or predecessor', () => {
    const c = new SafetyChecker();
    c.onAppend(node(1, [e(1, 1), e(2, 2)]), [e(1, 1), e(2, 2)]);
    expect(violationOf(() => c.onAppend(node(2, [e(1, 1), e(2, 2)]), [e(1, 1), e(2, 2)]))).toBeUndefined();
    expect(violationOf(() => c.onAppend(node(3, [e(1, 1), e(2, 2, 'other')]), [e(2, 2, 'other')]))).toBe('log-matching');
    expect(violationOf(() => c.onAppend(node(4, [e(1, 3), e(2, 2)]), [e(1, 3), e(2, 2)]))).toBe('log-matching');
  });

  it('Log Matching, pairwise over current logs', () => {
    const c = new SafetyChecker();
    expect(violationOf(() => c.checkLogsPairwise([node(1, [e(1, 1), e(2, 1)]), node(2, [e(1, 1), e(2, 1), e(3, 2)])]))).toBeUndefined();
    expect(violationOf(() => c.checkLogsPairwise([node(1, [e(1, 1), e(2, 1), e(3, 2)]), node(2, [e(1, 2), e(2, 1), e(3, 2)])]))).toBe(
      'log-matching',
    );
  });

  it('Leader Completeness: a leader of a later term lacks a committed entry', () => {
    const c = new SafetyChecker();
    const follower = node(2, [e(1, 1), e(2, 1)]);
    c.onCommit(follower, 0, 2, 1);
    expect(violationOf(() => c.onBecomeLeader(node(1, [e(1, 1), e(2, 1), e(3, 2)]), 2))).toBeUndefined();
    expect(violationOf(() => c.onBecomeLeader(node(3, [e(1, 1)]), 3))).toBe('leader-completeness');
    expect(violationOf(() => c.onBecomeLeader(node(4, [e(1, 1), e(2, 3)]), 4))).toBe('leader-completeness');
  });

  it('Leader Append-Only: a leader overwriting its log', () => {
    const c = new SafetyChecker();
    const l = node(1, [e(1, 1), e(2, 2)]);
    expect(violationOf(() => c.onLeaderWrite(l, 2, [e(3, 2)], 0))).toBeUndefined();
    expect(violationOf(() => c.onLeaderWrite(l, 2, [e(2, 3)], 0))).toBe('leader-append-only');
    expect(violationOf(() => c.onLeaderWrite(l, 2, [], 5))).toBe('leader-append-only');
  });

  it('State Machine Safety: different entries applied at one index, or diverging digests', () => {
    const c = new SafetyChecker();
    c.onApply(node(1, []), e(1, 1), 'd1');
    expect(violationOf(() => c.onApply(node(2, []), e(1, 1), 'd1'))).toBeUndefined();
    expect(violationOf(() => c.onApply(node(3, []), e(1, 2), 'd1'))).toBe('state-machine-safety');
    expect(violationOf(() => c.onRestore(node(3, []), 1, 'other'))).toBe('state-machine-safety');
  });

  it('durable state: term, vote and commit never go backwards; the vote changes only with the term', () => {
    expect(hardStateRegression({ term: 2, vote: 1, commit: 3 }, { term: 3, vote: 2, commit: 3 })).toBeUndefined();
    expect(hardStateRegression({ term: 2, vote: 0, commit: 3 }, { term: 2, vote: 2, commit: 3 })).toBeUndefined();
    expect(hardStateRegression({ term: 2, vote: 1, commit: 3 }, { term: 1, vote: 1, commit: 3 })).toMatch(/term went back/);
    expect(hardStateRegression({ term: 2, vote: 1, commit: 3 }, { term: 2, vote: 0, commit: 3 })).toMatch(/vote changed/);
    expect(hardStateRegression({ term: 2, vote: 1, commit: 3 }, { term: 2, vote: 1, commit: 2 })).toMatch(/commit went back/);
  });

  it('durable state at a crash: what a node acknowledged must be on its disk', () => {
    const c = new SafetyChecker();
    const n = node(1, [e(1, 1), e(2, 1)]);
    const p = { ...noPromises(), sentTerm: 1, acked: { index: 2, term: 1 } };
    const hs = { term: 1, vote: 0, commit: 0 };
    expect(violationOf(() => c.onCrash(n, p, hs, () => 1))).toBeUndefined();
    expect(violationOf(() => c.onCrash(n, p, hs, (i) => (i <= 1 ? 1 : 0)))).toBe('durable-state');
    expect(violationOf(() => c.onCrash(n, { ...p, sentTerm: 2 }, hs, () => 1))).toBe('durable-state');
    expect(violationOf(() => c.onCrash(n, { ...p, grantedVote: { term: 1, to: 3 } }, hs, () => 1))).toBe('durable-state');
  });
});
