/**
 * Property tests for the majority-quorum arithmetic (libs/raft/src/quorum.ts) and ProgressTracker.committed(),
 * each checked against a deliberately naive model written here (enumerate every candidate / every subset).
 */
import fc from 'fast-check';
import { NodeId, Progress, ProgressTracker, VoteResult, committedIndex, majority, voteResult } from '@app/raft';

const RUNS = 1000;

/** Naive: the size of the smallest vote count that is "more than half" of n, found by counting up. */
function naiveMajority(n: number): number {
  let k = 0;
  while (2 * k <= n) k++;
  return k;
}

/** Naive commit index: try every candidate i, keep the largest one acknowledged by ≥ ⌊n/2⌋+1 voters. */
function naiveCommitted(voters: NodeId[], acked: Map<NodeId, number>): number {
  if (voters.length === 0) return Infinity;
  const need = Math.floor(voters.length / 2) + 1;
  const values = voters.map((v) => acked.get(v) ?? 0);
  const maxCandidate = Math.max(0, ...values);
  let best = -1;
  for (let i = 0; i <= maxCandidate; i++) {
    const count = values.filter((a) => a >= i).length;
    if (count >= need) best = i;
  }
  return best;
}

/** Naive vote result: enumerate every way the missing voters could still vote. */
function naiveVote(voters: NodeId[], votes: Map<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return VoteResult.Won;
  const need = Math.floor(voters.length / 2) + 1;
  const missing = voters.filter((v) => !votes.has(v));
  const granted = voters.filter((v) => votes.get(v) === true).length;
  let anyWin = false;
  let allWin = true;
  for (let mask = 0; mask < 1 << missing.length; mask++) {
    let g = granted;
    for (let b = 0; b < missing.length; b++) if (mask & (1 << b)) g++;
    if (g >= need) anyWin = true;
    else allWin = false;
  }
  if (allWin) return VoteResult.Won;
  if (!anyWin) return VoteResult.Lost;
  return VoteResult.Pending;
}

/** Distinct voter ids with an acknowledged index each (some voters may have no entry at all). */
const votersAndAcks = fc
  .uniqueArray(fc.integer({ min: 1, max: 30 }), { minLength: 0, maxLength: 9 })
  .chain((voters) =>
    fc.tuple(
      fc.constant(voters),
      fc.array(fc.option(fc.nat({ max: 20 }), { nil: undefined }), {
        minLength: voters.length,
        maxLength: voters.length,
      }),
    ),
  );

describe('majority', () => {
  test('matches the naive definition and any two majorities of n voters intersect (all subsets, n ≤ 8)', () => {
    for (let n = 0; n <= 8; n++) {
      const q = majority(n);
      expect(q).toBe(naiveMajority(n));
      const subsets: number[] = [];
      for (let mask = 0; mask < 1 << n; mask++) subsets.push(mask);
      const popcount = (m: number): number => {
        let c = 0;
        for (; m; m &= m - 1) c++;
        return c;
      };
      const quorums = subsets.filter((m) => popcount(m) >= q);
      if (n > 0) expect(quorums.length).toBeGreaterThan(0); // a majority is reachable
      const disjointQuorums = quorums.some((a) => quorums.some((b) => (a & b) === 0));
      expect(disjointQuorums).toBe(false);
      // And it is the smallest such size: with q-1 there are two disjoint "quorums" (n ≥ 1).
      if (n >= 1) {
        const smaller = subsets.filter((m) => popcount(m) >= q - 1);
        const disjoint = smaller.some((a) => smaller.some((b) => (a & b) === 0));
        expect(disjoint).toBe(true);
      }
    }
  });

  test('is monotone and at most n for n ≥ 1 (large n)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), (n) => {
        const q = majority(n);
        expect(q).toBeLessThanOrEqual(n);
        expect(2 * q).toBeGreaterThan(n);
        expect(2 * (q - 1)).toBeLessThanOrEqual(n);
        expect(majority(n + 1)).toBeGreaterThanOrEqual(q);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('committedIndex', () => {
  test('equals the largest index acked by a majority (naive scan over every candidate)', () => {
    fc.assert(
      fc.property(votersAndAcks, ([voters, acks]) => {
        const acked = new Map<NodeId, number>();
        voters.forEach((v, i) => {
          if (acks[i] !== undefined) acked.set(v, acks[i]);
        });
        expect(committedIndex(voters, (id) => acked.get(id))).toBe(naiveCommitted(voters, acked));
      }),
      { numRuns: RUNS },
    );
  });

  test('does not depend on voter order, and ignores acks of non-voters', () => {
    fc.assert(
      fc.property(
        votersAndAcks,
        fc.array(fc.tuple(fc.integer({ min: 31, max: 60 }), fc.nat({ max: 100 }))),
        fc.nat(),
        ([voters, acks], others, seed) => {
          const acked = new Map<NodeId, number>();
          voters.forEach((v, i) => {
            if (acks[i] !== undefined) acked.set(v, acks[i]);
          });
          const base = committedIndex(voters, (id) => acked.get(id));
          const withOthers = new Map(acked);
          for (const [id, a] of others) withOthers.set(id, a);
          const rotated = voters.map((_, i) => voters[(i + seed) % voters.length]).reverse();
          expect(committedIndex(rotated, (id) => withOthers.get(id))).toBe(base);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('raising one voter’s ack never lowers the commit index (monotone)', () => {
    fc.assert(
      fc.property(votersAndAcks, fc.nat(), fc.nat({ max: 10 }), ([voters, acks], pick, bump) => {
        fc.pre(voters.length > 0);
        const acked = new Map<NodeId, number>();
        voters.forEach((v, i) => acked.set(v, acks[i] ?? 0));
        const before = committedIndex(voters, (id) => acked.get(id));
        const v = voters[pick % voters.length];
        acked.set(v, acked.get(v)! + bump);
        expect(committedIndex(voters, (id) => acked.get(id))).toBeGreaterThanOrEqual(before);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('voteResult', () => {
  test('equals a naive enumeration of every completion of the missing votes', () => {
    const votesArb = fc
      .uniqueArray(fc.integer({ min: 1, max: 30 }), { minLength: 0, maxLength: 11 })
      .chain((voters) =>
        fc.tuple(
          fc.constant(voters),
          fc.array(fc.constantFrom<boolean | undefined>(true, false, undefined), {
            minLength: voters.length,
            maxLength: voters.length,
          }),
          // votes from non-voters must be ignored
          fc.array(fc.tuple(fc.integer({ min: 31, max: 40 }), fc.boolean()), { maxLength: 5 }),
        ),
      );
    fc.assert(
      fc.property(votesArb, ([voters, vs, others]) => {
        const votes = new Map<NodeId, boolean>();
        voters.forEach((v, i) => {
          if (vs[i] !== undefined) votes.set(v, vs[i]);
        });
        const expected = naiveVote(voters, votes);
        for (const [id, g] of others) votes.set(id, g);
        expect(voteResult(voters, (id) => votes.get(id))).toBe(expected);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('ProgressTracker', () => {
  const trackerArb = fc
    .uniqueArray(fc.integer({ min: 1, max: 20 }), { minLength: 0, maxLength: 12 })
    .chain((ids) =>
      fc.tuple(
        fc.constant(ids),
        // per member: is it a learner? its match index, and is it recently active?
        fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 30 }), fc.boolean()), {
          minLength: ids.length,
          maxLength: ids.length,
        }),
        fc.array(fc.nat({ max: 100 }), { minLength: ids.length, maxLength: ids.length }),
      ),
    );

  function build(ids: NodeId[], members: [boolean, number, boolean][], matches?: number[]): ProgressTracker {
    const trk = new ProgressTracker(4);
    ids.forEach((id, i) => {
      const [learner, match, active] = members[i];
      (learner ? trk.learners : trk.voters).add(id);
      const pr = new Progress(4, learner, 1);
      pr.match = matches ? matches[i] : match;
      pr.recentActive = active;
      trk.progress.set(id, pr);
    });
    return trk;
  }

  test('committed() is the naive majority commit over voters only; learners are ignored', () => {
    fc.assert(
      fc.property(trackerArb, ([ids, members, otherMatches]) => {
        const trk = build(ids, members);
        const voters = ids.filter((_, i) => !members[i][0]);
        const acked = new Map<NodeId, number>();
        ids.forEach((id, i) => {
          if (!members[i][0]) acked.set(id, members[i][1]);
        });
        const expected = naiveCommitted(voters, acked);
        expect(trk.committed()).toBe(expected);
        // Rewriting every learner's match (arbitrarily, even far ahead) changes nothing.
        const learnersMoved = members.map((m, i) => (m[0] ? otherMatches[i] : m[1]));
        expect(build(ids, members, learnersMoved).committed()).toBe(expected);
      }),
      { numRuns: RUNS },
    );
  });

  test('quorumActive() and tallyVotes() count voters only', () => {
    fc.assert(
      fc.property(
        trackerArb,
        fc.array(fc.tuple(fc.integer({ min: 1, max: 25 }), fc.boolean()), { maxLength: 25 }),
        ([ids, members], rawVotes) => {
          const trk = build(ids, members);
          const voters = ids.filter((_, i) => !members[i][0]);
          const active = new Map<NodeId, boolean>();
          ids.forEach((id, i) => {
            if (!members[i][0] && members[i][2]) active.set(id, true);
          });
          // "recently active" is granted-or-not with no missing answers: won iff a majority is active.
          const activeResult = naiveVote(
            voters,
            new Map(voters.map((v) => [v, active.get(v) === true] as [NodeId, boolean])),
          );
          expect(trk.quorumActive()).toBe(activeResult === VoteResult.Won);

          trk.resetVotes();
          const firstVote = new Map<NodeId, boolean>();
          for (const [id, g] of rawVotes) {
            trk.recordVote(id, g);
            if (!firstVote.has(id)) firstVote.set(id, g); // only the first vote of a node counts
          }
          const voterVotes = new Map([...firstVote].filter(([id]) => voters.includes(id)));
          const t = trk.tallyVotes();
          expect(t.granted).toBe([...voterVotes.values()].filter((g) => g).length);
          expect(t.rejected).toBe([...voterVotes.values()].filter((g) => !g).length);
          expect(t.result).toBe(naiveVote(voters, voterVotes));
        },
      ),
      { numRuns: RUNS },
    );
  });
});
