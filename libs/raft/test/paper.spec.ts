/**
 * The rules of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm",
 * extended version), one test per rule, each named after the section it checks. The substance follows
 * etcd-io/raft's raft_paper_test.go: build a small initial state directly, drive it with step()/tick(), and
 * check the outgoing messages and the resulting state.
 */
import { Entry, Message, MessageType, NONE, Raft, RaftInvariantError, StateType, msg } from '@app/raft';
import {
  Network,
  acceptAndReply,
  commitNoopEntry,
  ent,
  entsWithTerms,
  hup,
  ids,
  logTerms,
  newTestRaft,
  propMsg,
  sortMsgs,
  storageWithLog,
  storageWithPeers,
  tickN,
} from './harness.js';

/** The fields of a message the paper talks about (entries reduced to index/term/data). */
function brief(m: Message): Record<string, unknown> {
  return {
    type: m.type,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    entries: m.entries.map((e) => ({ index: e.index, term: e.term, data: new TextDecoder().decode(e.data) })),
  };
}

function expectMsgs(got: Message[], want: Array<Partial<Message> & { type: MessageType }>): void {
  expect(sortMsgs(got).map(brief)).toEqual(want.map((w) => brief(msg(w))));
}

function entsBrief(es: Entry[]): Array<{ index: number; term: number; data: string }> {
  return es.map((e) => ({ index: e.index, term: e.term, data: new TextDecoder().decode(e.data) }));
}

function raft3(id = 1, election = 10, heartbeat = 1): Raft {
  return newTestRaft(id, election, heartbeat, storageWithPeers([1, 2, 3]));
}

// ------------------------------------------------------------------------------------------------ §5.1

describe('§5.1 Raft basics', () => {
  const becomeState = (r: Raft, state: StateType): void => {
    if (state === StateType.Follower) r.becomeFollower(1, 2);
    else if (state === StateType.Candidate) r.becomeCandidate();
    else {
      r.becomeCandidate();
      r.becomeLeader();
    }
  };

  for (const [state, what] of [
    [StateType.Follower, 'a follower that receives a higher term adopts the term and stays follower'],
    [StateType.Candidate, 'a candidate that discovers a higher term reverts to follower and adopts the term'],
    [StateType.Leader, 'a leader that discovers a higher term reverts to follower and adopts the term'],
  ] as const) {
    test(`§5.1 ${what}`, () => {
      const r = raft3();
      becomeState(r, state);
      expect(r.state).toBe(state);
      r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 2 }));
      expect(r.term).toBe(2);
      expect(r.state).toBe(StateType.Follower);
      // An append comes from the leader of that term: it is now our leader.
      expect(r.lead).toBe(2);
      expect(r.vote).toBe(NONE);
    });
  }

  test('§5.1 a request with a stale term is rejected: it changes neither the log, the leader, the commit index nor the election timer', () => {
    const r = newTestRaft(1, 10, 1, storageWithLog([1, 2, 3], [], { term: 2 }));
    expect(r.term).toBe(2);
    tickN(r, 3);
    r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 1, index: 0, logTerm: 0, entries: [ent(1, 1)], commit: 1 }));
    r.step(msg({ type: MessageType.Heartbeat, from: 2, to: 1, term: 1, commit: 1 }));
    r.step(msg({ type: MessageType.Vote, from: 3, to: 1, term: 1, index: 5, logTerm: 1 }));
    expect(r.raftLog.lastIndex()).toBe(0);
    expect(r.raftLog.committed).toBe(0);
    expect(r.term).toBe(2);
    expect(r.lead).toBe(NONE);
    expect(r.vote).toBe(NONE);
    expect(r.electionElapsed).toBe(3);
    // Without CheckQuorum or PreVote a stale message is simply dropped (no reply at all).
    expect(r.readMessages()).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------------ §5.2

describe('§5.2 Leader election', () => {
  test('§5.2 servers start up as followers, with no leader', () => {
    const r = raft3();
    expect(r.state).toBe(StateType.Follower);
    expect(r.lead).toBe(NONE);
    expect(r.term).toBe(0);
  });

  test('§5.2 a leader sends empty AppendEntries (heartbeats) to every follower each heartbeat interval', () => {
    const hi = 3;
    const r = raft3(1, 10, hi);
    r.becomeCandidate();
    r.becomeLeader();
    for (let i = 0; i < 10; i++) r.step(propMsg(1, 1));
    r.readMessages();
    tickN(r, hi - 1);
    expect(r.readMessages()).toEqual([]);
    r.tick();
    // A heartbeat never claims a commit index beyond what the follower is known to store.
    expectMsgs(r.readMessages(), [
      { type: MessageType.Heartbeat, from: 1, to: 2, term: 1 },
      { type: MessageType.Heartbeat, from: 1, to: 3, term: 1 },
    ]);
    tickN(r, hi);
    expect(r.readMessages().map((m) => m.type)).toEqual([MessageType.Heartbeat, MessageType.Heartbeat]);
  });

  for (const state of [StateType.Follower, StateType.Candidate]) {
    const what =
      state === StateType.Follower
        ? 'a follower that hears from no leader for an election timeout becomes candidate: new term, votes for itself, requests votes'
        : 'a candidate whose election times out without a winner starts a new election in a new term';
    test(`§5.2 ${what}`, () => {
      const et = 10;
      const r = raft3(1, et);
      if (state === StateType.Follower) r.becomeFollower(1, 2);
      else r.becomeCandidate();
      expect(r.term).toBe(1);
      // The randomized timeout is < 2 × et: one election, and only one, happens within 2 × et - 1 ticks.
      tickN(r, 2 * et - 1);
      expect(r.term).toBe(2);
      expect(r.state).toBe(StateType.Candidate);
      expect(r.vote).toBe(1);
      expect(r.trk.votes.get(1)).toBe(true);
      expectMsgs(r.readMessages(), [
        { type: MessageType.Vote, from: 1, to: 2, term: 2 },
        { type: MessageType.Vote, from: 1, to: 3, term: 2 },
      ]);
    });
  }

  test('§5.2 a candidate wins with votes from a majority, returns to follower on a majority of denials, and otherwise stays candidate', () => {
    const cases: Array<{ size: number; votes: Array<[number, boolean]>; want: StateType }> = [
      // win with a majority of votes (its own included)
      { size: 1, votes: [], want: StateType.Leader },
      { size: 3, votes: [[2, true], [3, true]], want: StateType.Leader },
      { size: 3, votes: [[2, true]], want: StateType.Leader },
      { size: 5, votes: [[2, true], [3, true], [4, true], [5, true]], want: StateType.Leader },
      { size: 5, votes: [[2, true], [3, true], [4, true]], want: StateType.Leader },
      { size: 5, votes: [[2, true], [3, true]], want: StateType.Leader },
      // a majority of denials: back to follower
      { size: 3, votes: [[2, false], [3, false]], want: StateType.Follower },
      { size: 5, votes: [[2, false], [3, false], [4, false], [5, false]], want: StateType.Follower },
      { size: 5, votes: [[2, true], [3, false], [4, false], [5, false]], want: StateType.Follower },
      // neither: still a candidate
      { size: 3, votes: [], want: StateType.Candidate },
      { size: 5, votes: [[2, true]], want: StateType.Candidate },
      { size: 5, votes: [[2, false], [3, false]], want: StateType.Candidate },
      { size: 5, votes: [], want: StateType.Candidate },
    ];
    const got = cases.map(({ size, votes }) => {
      const r = newTestRaft(1, 10, 1, storageWithPeers(ids(size)));
      r.step(hup(1));
      for (const [from, granted] of votes) {
        r.step(msg({ type: MessageType.VoteResp, from, to: 1, term: r.term, reject: !granted }));
      }
      return { state: r.state, term: r.term };
    });
    expect(got).toEqual(cases.map((c) => ({ state: c.want, term: 1 })));
  });

  test('§5.2 a server votes for at most one candidate in a given term, first come first served', () => {
    const cases: Array<{ vote: number; nvote: number; reject: boolean }> = [
      { vote: NONE, nvote: 2, reject: false },
      { vote: NONE, nvote: 3, reject: false },
      { vote: 2, nvote: 2, reject: false }, // a repeated request from the same candidate is granted again
      { vote: 3, nvote: 3, reject: false },
      { vote: 2, nvote: 3, reject: true },
      { vote: 3, nvote: 2, reject: true },
    ];
    const got = cases.map(({ vote, nvote }) => {
      const r = newTestRaft(1, 10, 1, storageWithLog([1, 2, 3], [], { term: 1, vote }));
      r.step(msg({ type: MessageType.Vote, from: nvote, to: 1, term: 1 }));
      return { msgs: r.readMessages().map(brief), vote: r.vote };
    });
    expect(got).toEqual(
      cases.map(({ vote, nvote, reject }) => ({
        msgs: [brief(msg({ type: MessageType.VoteResp, from: 1, to: nvote, term: 1, reject }))],
        vote: reject ? vote : nvote,
      })),
    );
  });

  test('§5.2 a candidate that receives AppendEntries from a leader whose term is at least its own becomes follower', () => {
    for (const term of [1, 2]) {
      const r = raft3();
      r.step(hup(1));
      expect(r.state).toBe(StateType.Candidate);
      expect(r.term).toBe(1);
      r.step(msg({ type: MessageType.App, from: 2, to: 1, term }));
      expect(r.state).toBe(StateType.Follower);
      expect(r.term).toBe(term);
      expect(r.lead).toBe(2);
    }
  });

  for (const state of [StateType.Follower, StateType.Candidate]) {
    test(`§5.2 ${state.toLowerCase()} election timeouts are randomized over [electionTimeout, 2 × electionTimeout)`, () => {
      const et = 10;
      const r = raft3(1, et);
      const timeouts = new Set<number>();
      for (let round = 0; round < 50 * et; round++) {
        if (state === StateType.Follower) r.becomeFollower(r.term + 1, 2);
        else r.becomeCandidate();
        let time = 0;
        while (r.readMessages().length === 0) {
          r.tick();
          time++;
        }
        timeouts.add(time);
      }
      const want = Array.from({ length: et }, (_, i) => et + i);
      expect([...timeouts].sort((a, b) => a - b)).toEqual(want);
    });
  }

  for (const state of [StateType.Follower, StateType.Candidate]) {
    test(`§5.2 randomized timeouts make it rare for several ${state.toLowerCase()}s to time out at once (split votes)`, () => {
      const et = 10;
      const size = 5;
      const rs = ids(size).map((id) => newTestRaft(id, et, 1, storageWithPeers(ids(size))));
      let conflicts = 0;
      const rounds = 1000;
      for (let round = 0; round < rounds; round++) {
        for (const r of rs) {
          if (state === StateType.Follower) r.becomeFollower(r.term + 1, NONE);
          else r.becomeCandidate();
        }
        let timedOut = 0;
        while (timedOut === 0) {
          for (const r of rs) {
            r.tick();
            if (r.readMessages().length > 0) timedOut++;
          }
        }
        if (timedOut > 1) conflicts++;
      }
      expect(conflicts / rounds).toBeLessThanOrEqual(0.3);
    });
  }
});

// ------------------------------------------------------------------------------------------------ §5.3

describe('§5.3 Log replication', () => {
  test('§5.3 a leader appends a proposal to its log and issues AppendEntries for it to every follower in parallel', () => {
    const s = storageWithPeers([1, 2, 3]);
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    commitNoopEntry(r, s);
    const li = r.raftLog.lastIndex();
    r.step(propMsg(1, 1, 'some data'));
    expect(r.raftLog.lastIndex()).toBe(li + 1);
    expect(r.raftLog.committed).toBe(li);
    const wents = [ent(1, li + 1, 'some data')];
    expectMsgs(r.readMessages(), [
      { type: MessageType.App, from: 1, to: 2, term: 1, index: li, logTerm: 1, entries: wents, commit: li },
      { type: MessageType.App, from: 1, to: 3, term: 1, index: li, logTerm: 1, entries: wents, commit: li },
    ]);
    expect(entsBrief(r.raftLog.unstableEntries())).toEqual(entsBrief(wents));
  });

  test('§5.3 once a majority stores an entry the leader commits it, applies it, and tells the followers the new commit index', () => {
    const s = storageWithPeers([1, 2, 3]);
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    commitNoopEntry(r, s);
    const li = r.raftLog.lastIndex();
    r.step(propMsg(1, 1, 'some data'));
    for (const m of r.readMessages()) r.step(acceptAndReply(m));
    expect(r.raftLog.committed).toBe(li + 1);
    expect(entsBrief(r.raftLog.nextEnts())).toEqual(entsBrief([ent(1, li + 1, 'some data')]));
    const out = sortMsgs(r.readMessages());
    expect(out.map((m) => [m.to, m.type, m.commit])).toEqual([
      [2, MessageType.App, li + 1],
      [3, MessageType.App, li + 1],
    ]);
  });

  test('§5.3 an entry is committed exactly when the leader has replicated it on a majority of the servers', () => {
    const cases: Array<{ size: number; acceptors: number[]; ack: boolean }> = [
      { size: 1, acceptors: [], ack: true },
      { size: 3, acceptors: [], ack: false },
      { size: 3, acceptors: [2], ack: true },
      { size: 3, acceptors: [2, 3], ack: true },
      { size: 5, acceptors: [], ack: false },
      { size: 5, acceptors: [2], ack: false },
      { size: 5, acceptors: [2, 3], ack: true },
      { size: 5, acceptors: [2, 3, 4], ack: true },
      { size: 5, acceptors: [2, 3, 4, 5], ack: true },
    ];
    const got = cases.map(({ size, acceptors }) => {
      const s = storageWithPeers(ids(size));
      const r = newTestRaft(1, 10, 1, s);
      r.becomeCandidate();
      r.becomeLeader();
      commitNoopEntry(r, s);
      const li = r.raftLog.lastIndex();
      r.step(propMsg(1, 1, 'some data'));
      for (const m of r.readMessages()) if (acceptors.includes(m.to)) r.step(acceptAndReply(m));
      return r.raftLog.committed > li;
    });
    expect(got).toEqual(cases.map((c) => c.ack));
  });

  test('§5.3 committing an entry also commits every preceding entry, including those created by previous leaders', () => {
    const cases: Entry[][] = [[], [ent(2, 1)], [ent(1, 1), ent(2, 2)], [ent(1, 1)]];
    const got = cases.map((ents) => {
      const s = storageWithLog([1, 2, 3], ents, { term: 2 });
      const r = newTestRaft(1, 10, 1, s);
      r.becomeCandidate();
      r.becomeLeader();
      r.step(propMsg(1, 1, 'some data'));
      for (const m of r.readMessages()) r.step(acceptAndReply(m));
      return entsBrief(r.raftLog.nextEnts());
    });
    expect(got).toEqual(
      cases.map((ents) => {
        const li = ents.length;
        return entsBrief([...ents, ent(3, li + 1), ent(3, li + 2, 'some data')]);
      }),
    );
  });

  test("§5.3 a follower learns the leader's commit index from AppendEntries and applies entries up to it", () => {
    const cases: Array<{ ents: Entry[]; commit: number }> = [
      { ents: [ent(1, 1, 'some data')], commit: 1 },
      { ents: [ent(1, 1, 'some data'), ent(1, 2, 'some data2')], commit: 2 },
      { ents: [ent(1, 1, 'some data2'), ent(1, 2, 'some data')], commit: 2 },
      { ents: [ent(1, 1, 'some data'), ent(1, 2, 'some data2')], commit: 1 },
    ];
    const got = cases.map(({ ents, commit }) => {
      const r = raft3();
      r.becomeFollower(1, 2);
      r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 1, entries: ents, commit }));
      return { committed: r.raftLog.committed, next: entsBrief(r.raftLog.nextEnts()) };
    });
    expect(got).toEqual(cases.map(({ ents, commit }) => ({ committed: commit, next: entsBrief(ents.slice(0, commit)) })));
  });

  test('§5.3 a follower refuses AppendEntries whose preceding index and term it does not hold (consistency check), hinting where to retry', () => {
    const ents = entsWithTerms(1, 2);
    const cases = [
      // matches committed entries
      { logTerm: 0, index: 0, windex: 1, reject: false, hint: 0, hintTerm: 0 },
      { logTerm: 1, index: 1, windex: 1, reject: false, hint: 0, hintTerm: 0 },
      // matches an uncommitted entry
      { logTerm: 2, index: 2, windex: 2, reject: false, hint: 0, hintTerm: 0 },
      // the entry at index 2 has another term
      { logTerm: 1, index: 2, windex: 2, reject: true, hint: 1, hintTerm: 1 },
      // no entry at index 3
      { logTerm: 3, index: 3, windex: 3, reject: true, hint: 2, hintTerm: 2 },
    ];
    const got = cases.map(({ logTerm, index }) => {
      const r = newTestRaft(1, 10, 1, storageWithLog([1, 2, 3], ents, { commit: 1 }));
      r.becomeFollower(2, 2);
      r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 2, logTerm, index }));
      return r.readMessages().map(brief);
    });
    expect(got).toEqual(
      cases.map((c) => [
        brief(
          msg({
            type: MessageType.AppResp,
            from: 1,
            to: 2,
            term: 2,
            index: c.windex,
            reject: c.reject,
            rejectHint: c.hint,
            logTerm: c.hintTerm,
          }),
        ),
      ]),
    );
  });

  test('§5.3 a follower deletes an existing entry that conflicts with a new one (and all that follow) and appends entries not already in its log', () => {
    const cases: Array<{ index: number; logTerm: number; ents: Entry[]; wents: Entry[]; wunstable: Entry[] }> = [
      { index: 2, logTerm: 2, ents: [ent(3, 3)], wents: [ent(1, 1), ent(2, 2), ent(3, 3)], wunstable: [ent(3, 3)] },
      {
        index: 1,
        logTerm: 1,
        ents: [ent(3, 2), ent(4, 3)],
        wents: [ent(1, 1), ent(3, 2), ent(4, 3)],
        wunstable: [ent(3, 2), ent(4, 3)],
      },
      // already present: nothing changes
      { index: 0, logTerm: 0, ents: [ent(1, 1)], wents: [ent(1, 1), ent(2, 2)], wunstable: [] },
      { index: 0, logTerm: 0, ents: [ent(3, 1)], wents: [ent(3, 1)], wunstable: [ent(3, 1)] },
    ];
    const got = cases.map(({ index, logTerm, ents }) => {
      const r = newTestRaft(1, 10, 1, storageWithLog([1, 2, 3], entsWithTerms(1, 2)));
      r.becomeFollower(2, 2);
      r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 2, logTerm, index, entries: ents }));
      return { all: entsBrief(r.raftLog.allEntries()), unstable: entsBrief(r.raftLog.unstableEntries()) };
    });
    expect(got).toEqual(cases.map((c) => ({ all: entsBrief(c.wents), unstable: entsBrief(c.wunstable) })));
  });

  test('§5.3 Figure 7: a new leader forces every possible follower log (missing, extra and conflicting entries) to match its own', () => {
    // Figure 7's leader log (indexes 1..10) at term 8; the leader is elected at term 9 here.
    const leaderTerms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const followers: Record<string, number[]> = {
      a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
      b: [1, 1, 1, 4],
      c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
      d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
      e: [1, 1, 1, 4, 4, 4, 4],
      f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    };
    for (const [name, terms] of Object.entries(followers)) {
      const leadSt = storageWithLog([1, 2, 3], entsWithTerms(...leaderTerms), { term: 8, commit: leaderTerms.length });
      const lead = newTestRaft(1, 10, 1, leadSt);
      const follSt = storageWithLog([1, 2, 3], entsWithTerms(...terms), { term: 7 });
      const follower = newTestRaft(2, 10, 1, follSt);
      // Node 3 is a black hole: the follower's log may be more up to date than the leader's (d), so the leader
      // needs node 3's vote, which we hand it directly.
      const nt = new Network([{ raft: lead, storage: leadSt }, { raft: follower, storage: follSt }, null]);
      nt.send(hup(1));
      nt.send(msg({ type: MessageType.VoteResp, from: 3, to: 1, term: 9 }));
      expect([name, lead.state]).toEqual([name, StateType.Leader]);
      nt.send(propMsg(1, 1, ''));
      expect([name, logTerms(follower)]).toEqual([name, [...leaderTerms, 9, 9]]);
      expect([name, follower.raftLog.committed]).toEqual([name, lead.raftLog.committed]);
      expect(lead.raftLog.committed).toBe(12);
    }
  });

  test('§5.3 AppendEntries is idempotent: a repeated (retried) request leaves the log as it is and is acknowledged again', () => {
    const r = raft3();
    r.becomeFollower(1, 2);
    const app = msg({ type: MessageType.App, from: 2, to: 1, term: 1, entries: [ent(1, 1, 'x'), ent(1, 2, 'y')] });
    r.step(app);
    const first = r.readMessages().map(brief);
    const before = entsBrief(r.raftLog.allEntries());
    r.step({ ...app });
    // A stale duplicate of the first half is also harmless.
    r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 1, entries: [ent(1, 1, 'x')] }));
    expect(entsBrief(r.raftLog.allEntries())).toEqual(before);
    const again = r.readMessages().map(brief);
    expect(first).toEqual([expect.objectContaining({ type: MessageType.AppResp, reject: false, index: 2 })]);
    expect(again[0]).toEqual(first[0]);
    // The stale duplicate does not truncate the entry after it.
    expect(again[1]).toMatchObject({ type: MessageType.AppResp, reject: false, index: 1 });
  });
});

// ------------------------------------------------------------------------------------------------ §5.4.1

describe('§5.4.1 Election restriction', () => {
  test("§5.4.1 a RequestVote carries the candidate's last log index and term", () => {
    const cases: Array<{ ents: Entry[]; wterm: number }> = [
      { ents: [ent(1, 1)], wterm: 2 },
      { ents: [ent(1, 1), ent(2, 2)], wterm: 3 },
    ];
    for (const { ents, wterm } of cases) {
      const r = raft3();
      r.step(msg({ type: MessageType.App, from: 2, to: 1, term: wterm - 1, logTerm: 0, index: 0, entries: ents }));
      r.readMessages();
      tickN(r, 2 * r.electionTimeout - 1);
      const last = ents[ents.length - 1];
      expectMsgs(r.readMessages(), [
        { type: MessageType.Vote, from: 1, to: 2, term: wterm, index: last.index, logTerm: last.term },
        { type: MessageType.Vote, from: 1, to: 3, term: wterm, index: last.index, logTerm: last.term },
      ]);
    }
  });

  test('§5.4.1 a voter denies its vote to a candidate whose log is less up to date (last term, then length)', () => {
    const cases: Array<{ ents: Entry[]; logTerm: number; index: number; reject: boolean }> = [
      // same last term: the longer (or equal) log wins
      { ents: [ent(1, 1)], logTerm: 1, index: 1, reject: false },
      { ents: [ent(1, 1)], logTerm: 1, index: 2, reject: false },
      { ents: [ent(1, 1), ent(1, 2)], logTerm: 1, index: 1, reject: true },
      // the candidate's last term is higher: granted whatever the length
      { ents: [ent(1, 1)], logTerm: 2, index: 1, reject: false },
      { ents: [ent(1, 1)], logTerm: 2, index: 2, reject: false },
      { ents: [ent(1, 1), ent(1, 2)], logTerm: 2, index: 1, reject: false },
      // the voter's last term is higher: denied whatever the length
      { ents: [ent(2, 1)], logTerm: 1, index: 1, reject: true },
      { ents: [ent(2, 1)], logTerm: 1, index: 2, reject: true },
      { ents: [ent(2, 1), ent(1, 2)], logTerm: 1, index: 1, reject: true },
    ];
    const got = cases.map(({ ents, logTerm, index }) => {
      const r = newTestRaft(1, 10, 1, storageWithLog([1, 2], ents));
      r.step(msg({ type: MessageType.Vote, from: 2, to: 1, term: 3, logTerm, index }));
      const out = r.readMessages();
      return out.map((m) => ({ type: m.type, reject: m.reject }));
    });
    expect(got).toEqual(cases.map((c) => [{ type: MessageType.VoteResp, reject: c.reject }]));
  });
});

// ------------------------------------------------------------------------------------------------ §5.4.2

describe('§5.4.2 Committing entries from previous terms', () => {
  test('§5.4.2 a leader commits by counting replicas only entries of its current term', () => {
    const cases = [
      { index: 1, wcommit: 0 }, // an entry of term 1 on a majority: not committed
      { index: 2, wcommit: 0 }, // an entry of term 2 on a majority: not committed
      { index: 3, wcommit: 3 }, // the leader's no-op (term 3) on a majority: committed, with everything before it
    ];
    const got = cases.map(({ index }) => {
      const r = newTestRaft(1, 10, 1, storageWithLog([1, 2], entsWithTerms(1, 2), { term: 2 }));
      r.becomeCandidate();
      r.becomeLeader();
      expect(r.term).toBe(3);
      r.readMessages();
      r.step(propMsg(1, 1, ''));
      r.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index }));
      return r.raftLog.committed;
    });
    expect(got).toEqual(cases.map((c) => c.wcommit));
  });

  /**
   * Figure 8, with one index shift: index 1 (term 1) is committed everywhere; index 2 is the contested entry.
   *  (a)/(b) S1 led term 2 and replicated index 2 to S2; S5 led term 3 and wrote another index 2 locally only.
   *  (c) S1 is re-elected in term 4 and replicates its index 2 (term 2) to S3: now on S1, S2, S3, a majority,
   *      while its own term-4 entry (the no-op at index 3) is still only on S1.
   *  (d) S1 crashes; S5 is elected in term 5 by S2, S3, S4 and overwrites index 2 everywhere.
   * Returns the network after (c) and a function that plays (d).
   */
  function figure8(bugs: { commitOldTermByCount?: boolean } = {}): { nt: Network; s: Raft[]; playD: () => void } {
    const logs: Array<{ terms: number[] }> = [{ terms: [1, 2] }, { terms: [1, 2] }, { terms: [1] }, { terms: [1] }, { terms: [1, 3] }];
    const peers = logs.map(({ terms }, i) => {
      const storage = storageWithLog(ids(5), entsWithTerms(...terms), { term: 3, commit: 1 });
      const raft = newTestRaft(i + 1, 10, 1, storage, i === 0 ? { plantedBugs: bugs } : {});
      return { raft, storage };
    });
    const nt = new Network(peers);
    const s = peers.map((p) => p.raft);
    nt.isolate(5); // S5 is down
    // S1 delivers only entries of earlier terms (its term-4 entries "are lost"), does not reach S4 with
    // appends, and crashes before it can tell anyone a commit index beyond 1.
    nt.msgHook = (m) => {
      if (m.from !== 1) return true;
      if ((m.type === MessageType.App || m.type === MessageType.Heartbeat) && m.commit >= 2) return false;
      if (m.type !== MessageType.App) return true;
      if (m.to === 4) return false;
      m.entries = m.entries.filter((e) => e.term < 4);
      return true;
    };
    nt.send(hup(1));
    expect(s[0].state).toBe(StateType.Leader);
    expect(s[0].term).toBe(4);
    const playD = (): void => {
      nt.msgHook = undefined;
      nt.recover();
      nt.isolate(1); // S1 crashes
      for (let i = 0; i < 3 && s[4].state !== StateType.Leader; i++) nt.send(hup(5));
    };
    return { nt, s, playD };
  }

  test('§5.4.2 Figure 8: an entry of an earlier term stored on a majority is not committed by the new leader, and may indeed still be overwritten', () => {
    const { s, playD } = figure8();
    // (c): index 2 (term 2) is on S1, S2, S3 — a majority — yet S1 does not commit it.
    expect(s.map(logTerms)).toEqual([[1, 2, 4], [1, 2], [1, 2], [1], [1, 3]]);
    expect(s[0].trk.committed()).toBe(2);
    expect(s[0].raftLog.committed).toBe(1);
    // (d): S5 can still win (its last term 3 beats term 2) and replaces index 2 on the majority: had S1
    // committed it, a committed entry would have been lost.
    playD();
    expect(s[4].state).toBe(StateType.Leader);
    expect(s[4].term).toBe(5);
    for (const r of s.slice(1)) {
      expect(logTerms(r)).toEqual([1, 3, 5]);
      expect(r.raftLog.committed).toBe(3);
    }
  });

  test('§5.4.2 Figure 8 with the planted commit-by-counting bug: the old-term entry is committed and then lost (State Machine Safety broken)', () => {
    const { s, playD } = figure8({ commitOldTermByCount: true });
    expect(s[0].raftLog.committed).toBe(2);
    const s1Committed = s[0].raftLog.slice(2, 3, Number.MAX_SAFE_INTEGER)[0];
    playD();
    const s5Committed = s[4].raftLog.slice(2, 3, Number.MAX_SAFE_INTEGER)[0];
    expect(s[4].raftLog.committed).toBeGreaterThanOrEqual(2);
    // Two servers have committed different entries at index 2.
    expect({ s1: s1Committed.term, s5: s5Committed.term }).toEqual({ s1: 2, s5: 3 });
  });

  test('§5.4.2 Figure 8 (e): once an entry of the leader\'s own term is on a majority, the earlier entry commits with it and can no longer be lost', () => {
    const { nt, s } = figure8();
    // S1 now gets its term-4 entry to S2 and S3 as well (the next heartbeat round, say).
    nt.msgHook = (m) => !(m.from === 1 && m.to === 4 && m.type === MessageType.App);
    nt.tick(1);
    expect(s[0].raftLog.committed).toBe(3);
    expect(s.slice(0, 3).map(logTerms)).toEqual([
      [1, 2, 4],
      [1, 2, 4],
      [1, 2, 4],
    ]);
    nt.msgHook = undefined;
    nt.recover();
    nt.isolate(1);
    // S5 can no longer be elected: S2 and S3 have a more up-to-date log and refuse it.
    for (let i = 0; i < 3; i++) nt.send(hup(5));
    expect(s[4].state).not.toBe(StateType.Leader);
    // A server holding the committed entries wins instead, and they survive.
    nt.send(hup(2));
    expect(s[1].state).toBe(StateType.Leader);
    for (const r of s.slice(1)) expect(logTerms(r).slice(0, 3)).toEqual([1, 2, 4]);
    expect(s[4].raftLog.committed).toBeGreaterThanOrEqual(3);
  });

  test('§5.4.2 a follower never lets a committed entry be overwritten: an append below its commit index is answered, not applied', () => {
    const r = newTestRaft(1, 10, 1, storageWithLog([1, 2, 3], entsWithTerms(1, 1), { term: 1, commit: 2 }));
    r.becomeFollower(2, 2);
    r.step(msg({ type: MessageType.App, from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries: [ent(2, 2)], commit: 2 }));
    expect(logTerms(r)).toEqual([1, 1]);
    expect(r.readMessages().map(brief)).toEqual([brief(msg({ type: MessageType.AppResp, from: 1, to: 2, term: 2, index: 2 }))]);
    // Below the message layer, a conflict with a committed entry is an invariant violation, never a truncation.
    expect(() => r.raftLog.maybeAppend(2, 1, 2, [ent(2, 3)])).not.toThrow();
    expect(() => r.raftLog.maybeAppend(1, 1, 3, [ent(3, 2)])).toThrow(RaftInvariantError);
  });
});
