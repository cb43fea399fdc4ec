/**
 * Behaviour of the features beyond the Raft paper: PreVote, CheckQuorum and the leader lease, ReadIndex,
 * leadership transfer, log compaction and snapshots, flow control, fast log back-off, membership changes,
 * RawNode. Each test names the section of Ongaro's thesis ("Consensus: Bridging Theory and Practice", 2014)
 * or the etcd-io/raft test it mirrors.
 */
import {
  ConfChange,
  ConfChangeType,
  Entry,
  EntryType,
  MemoryStorage,
  Message,
  MessageType,
  NONE,
  ProgressState,
  ProposalDroppedError,
  Raft,
  RaftInvariantError,
  RawNode,
  ReadOnlyOption,
  Ready,
  Snapshot,
  StateType,
  decodeConfChange,
  encodeConfChange,
  msg,
} from '@app/raft';
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
  nextEnts,
  propMsg,
  seededRandom,
  storageWithLog,
  storageWithPeers,
  tickN,
} from './harness.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function ccEntry(cc: ConfChange): Entry {
  return { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) };
}

function ccProp(to: number, cc: ConfChange): Message {
  return msg({ type: MessageType.Prop, from: to, to, entries: [ccEntry(cc)] });
}

function readIndexMsg(from: number, to: number, ctx: string): Message {
  return msg({ type: MessageType.ReadIndex, from, to, context: enc.encode(ctx) });
}

function peer(nt: Network, id: number): Raft {
  return nt.peers.get(id)!;
}

function readStates(r: Raft): Array<{ index: number; ctx: string }> {
  const out = r.readStates.map((rs) => ({ index: rs.index, ctx: dec.decode(rs.requestCtx) }));
  r.readStates = [];
  return out;
}

/** A network whose every message is also recorded (type, from, to), in delivery order. */
function recordMessages(nt: Network): Array<[MessageType, number, number]> {
  const log: Array<[MessageType, number, number]> = [];
  const prev = nt.msgHook;
  nt.msgHook = (m) => {
    const keep = prev ? prev(m) : true;
    if (keep) log.push([m.type, m.from, m.to]);
    return keep;
  };
  return log;
}

// ================================================================================================= PreVote

describe('PreVote (thesis §9.6)', () => {
  test('§9.6 PreVote: a partitioned node does not bump its term, and on rejoining cannot disrupt the leader (etcd TestDisruptiveFollowerPreVote)', () => {
    const nt = new Network(3, { preVote: true });
    nt.send(hup(1));
    const [n1, , n3] = [peer(nt, 1), peer(nt, 2), peer(nt, 3)];
    expect(n1.state).toBe(StateType.Leader);
    expect(n1.term).toBe(1);

    nt.isolate(3);
    nt.send(propMsg(1, 1), propMsg(1, 1)); // the majority moves on without node 3
    for (let i = 0; i < 5; i++) nt.tick(3, n3.maxElectionTimeout);
    expect(n3.state).toBe(StateType.PreCandidate);
    expect(n3.term).toBe(1); // five election timeouts later, still the term it was partitioned in

    nt.recover();
    // Rejoining, node 3 campaigns before it hears from the leader: its log is behind, so the pre-vote fails and
    // nobody changes term.
    nt.send(hup(3));
    expect(n3.state).toBe(StateType.Follower);
    expect([n1.state, n1.term, n3.term]).toEqual([StateType.Leader, 1, 1]);
    // The leader's next heartbeat brings it back into the fold.
    nt.tick(1);
    expect(n3.lead).toBe(1);
    expect(logTerms(n3)).toEqual(logTerms(n1));
    expect(n3.raftLog.committed).toBe(n1.raftLog.committed);
  });

  test('§9.6 without PreVote the same partitioned node comes back with a higher term and deposes the leader (the problem PreVote solves)', () => {
    const nt = new Network(3);
    nt.send(hup(1));
    const [n1, , n3] = [peer(nt, 1), peer(nt, 2), peer(nt, 3)];
    nt.isolate(3);
    nt.send(propMsg(1, 1));
    for (let i = 0; i < 5; i++) nt.send(hup(3));
    expect(n3.term).toBe(6);
    nt.recover();
    // Its next election timeout: a vote request at term 7 reaches the leader, which must step down, although
    // node 3 (whose log is behind) cannot win.
    nt.send(hup(3));
    expect([n1.state, n1.term, n3.state]).toEqual([StateType.Follower, 7, StateType.Follower]);
    expect([1, 2, 3].some((id) => peer(nt, id).state === StateType.Leader)).toBe(false);
  });

  test('§9.6 PreVote: requests are for the next term but change no voter\'s term or vote; a pre-candidate that wins runs the real election', () => {
    const r2 = newTestRaft(2, 10, 1, storageWithPeers([1, 2, 3]), { preVote: true });
    r2.step(msg({ type: MessageType.PreVote, from: 1, to: 2, term: 1, index: 0, logTerm: 0 }));
    expect([r2.term, r2.vote, r2.state]).toEqual([0, NONE, StateType.Follower]);
    // The grant carries the future term the pre-candidate asked about.
    expect(r2.readMessages().map((m) => [m.type, m.term, m.reject])).toEqual([[MessageType.PreVoteResp, 1, false]]);

    const nt = new Network(3, { preVote: true });
    const seen = recordMessages(nt);
    nt.send(hup(1));
    expect(seen.map(([t]) => t).slice(0, 8)).toEqual([
      MessageType.PreVote,
      MessageType.PreVote,
      MessageType.PreVoteResp,
      MessageType.PreVoteResp, // the first grant already made a majority: the real election has started
      MessageType.Vote,
      MessageType.Vote,
      MessageType.VoteResp,
      MessageType.VoteResp,
    ]);
    expect(peer(nt, 1).state).toBe(StateType.Leader);
    expect(peer(nt, 1).term).toBe(1); // one term, not two: the pre-election does not consume a term
    for (const id of [2, 3]) expect([peer(nt, id).term, peer(nt, id).lead]).toEqual([1, 1]);
  });

  test('§9.6 PreVote: a pre-candidate whose pre-vote is rejected by a majority returns to follower at its own term', () => {
    const r = newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3]), { preVote: true });
    r.step(hup(1));
    expect([r.state, r.term]).toEqual([StateType.PreCandidate, 0]);
    expect(r.readMessages().map((m) => [m.type, m.to, m.term])).toEqual([
      [MessageType.PreVote, 2, 1],
      [MessageType.PreVote, 3, 1],
    ]);
    r.step(msg({ type: MessageType.PreVoteResp, from: 2, to: 1, term: 0, reject: true }));
    r.step(msg({ type: MessageType.PreVoteResp, from: 3, to: 1, term: 0, reject: true }));
    expect([r.state, r.term]).toEqual([StateType.Follower, 0]);
  });
});

// ========================================================================================= CheckQuorum, lease

describe('CheckQuorum and the leader lease (thesis §6.2, §4.2.3)', () => {
  test('§6.2 CheckQuorum: a leader that hears from no majority for an election timeout steps down (etcd TestLeaderStepdownWhenQuorumLost)', () => {
    const r = newTestRaft(1, 5, 1, storageWithPeers([1, 2, 3]), { checkQuorum: true });
    r.becomeCandidate();
    r.becomeLeader();
    tickN(r, r.electionTimeout - 1);
    expect(r.state).toBe(StateType.Leader);
    r.tick();
    expect([r.state, r.lead, r.term]).toEqual([StateType.Follower, NONE, 1]);
  });

  test('§6.2 CheckQuorum: a leader that keeps hearing from a majority stays leader (etcd TestLeaderStepdownWhenQuorumActive)', () => {
    const r = newTestRaft(1, 5, 1, storageWithPeers([1, 2, 3]), { checkQuorum: true });
    r.becomeCandidate();
    r.becomeLeader();
    for (let i = 0; i < 5 * r.electionTimeout; i++) {
      r.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term }));
      r.tick();
    }
    expect(r.state).toBe(StateType.Leader);
  });

  test('§6.2 CheckQuorum: an isolated leader steps down within two election timeouts while the majority elects a new one', () => {
    const nt = new Network(3, { checkQuorum: true, preVote: true });
    nt.send(hup(1));
    const n1 = peer(nt, 1);
    nt.isolate(1);
    nt.tickAll(n1.electionTimeout); // this round's check still counts the acks of the election
    expect(n1.state).toBe(StateType.Leader);
    nt.tickAll(n1.electionTimeout);
    expect([n1.state, n1.term]).toEqual([StateType.Follower, 1]);
    nt.tickAll(n1.maxElectionTimeout);
    const leaders = [2, 3].filter((id) => peer(nt, id).state === StateType.Leader);
    expect(leaders).toHaveLength(1);
    expect(peer(nt, leaders[0]).term).toBe(2);
    // The old leader, alone, stays a (pre-)candidate at its old term: PreVote keeps it from inflating it.
    expect(n1.term).toBe(1);
  });

  test('§4.2.3 lease: a server that heard from the leader within the election timeout ignores a disruptive RequestVote, and grants it once the lease expires (etcd TestLeaderSupersedingWithCheckQuorum)', () => {
    const nt = new Network(3, { checkQuorum: true });
    const [a, b, c] = [peer(nt, 1), peer(nt, 2), peer(nt, 3)];
    nt.send(hup(1));
    expect(a.state).toBe(StateType.Leader);

    nt.send(hup(3));
    // Neither the leader nor b even updates its term.
    expect([c.state, c.term]).toEqual([StateType.Candidate, 2]);
    expect([a.state, a.term, b.term, b.lead]).toEqual([StateType.Leader, 1, 1, 1]);

    // b's lease runs out (b not timing out itself), and c tries again.
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    tickN(b, b.electionTimeout);
    nt.send(hup(3));
    expect([c.state, c.term]).toEqual([StateType.Leader, 3]);
    expect([a.state, a.term]).toEqual([StateType.Follower, 3]);
  });

  test('§3.3 a leader steps down when any message carries a higher term: a vote request (no lease), or an append response (etcd TestAllServerStepdown, TestLeaderAppResp)', () => {
    const r = newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3]));
    r.becomeCandidate();
    r.becomeLeader();
    r.readMessages();
    r.step(msg({ type: MessageType.Vote, from: 2, to: 1, term: 3, index: 5, logTerm: 1 }));
    expect([r.state, r.term, r.vote, r.lead]).toEqual([StateType.Follower, 3, 2, NONE]);

    const r2 = newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3]));
    r2.becomeCandidate();
    r2.becomeLeader();
    r2.step(msg({ type: MessageType.AppResp, from: 3, to: 1, term: 7, index: 0 }));
    expect([r2.state, r2.term, r2.lead]).toEqual([StateType.Follower, 7, NONE]);
  });

  test('§4.2.3 + §9.6 a stale leader is told of the higher term: a node at a higher term answers its heartbeat with an AppResp so it steps down (etcd TestFreeStuckCandidateWithCheckQuorum)', () => {
    const nt = new Network(3, { checkQuorum: true });
    const [a, b, c] = [peer(nt, 1), peer(nt, 2), peer(nt, 3)];
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    nt.send(hup(1));
    nt.isolate(1);
    nt.send(hup(3));
    nt.send(hup(3));
    // b's lease keeps c from winning; c is stuck at a term nobody else has.
    expect([b.state, c.state, c.term, b.term]).toEqual([StateType.Follower, StateType.Candidate, 3, 1]);
    nt.recover();
    // a's heartbeat (term 1) reaches c (term 3): with CheckQuorum c must answer, or a would never learn of term 3
    // and c would stay stuck, since b and a ignore c's votes while a leads.
    nt.send(msg({ type: MessageType.Heartbeat, from: 1, to: 3, term: a.term }));
    expect([a.state, a.term]).toEqual([StateType.Follower, 3]);
    nt.send(hup(3));
    expect(c.state).toBe(StateType.Leader);
  });

  test('§9.6 a stale leader with PreVote (no CheckQuorum) learns of the new term from the append response to its heartbeat', () => {
    const nt = new Network(3, { preVote: true });
    const [a, b] = [peer(nt, 1), peer(nt, 2)];
    nt.send(hup(1));
    nt.isolate(1);
    nt.send(hup(2));
    expect([b.state, b.term]).toEqual([StateType.Leader, 2]);
    expect([a.state, a.term]).toEqual([StateType.Leader, 1]);
    nt.recover();
    const seen = recordMessages(nt);
    nt.tick(1); // a's heartbeat at term 1
    expect(seen).toContainEqual([MessageType.AppResp, 2, 1]);
    expect([a.state, a.term]).toEqual([StateType.Follower, 2]);
    expect(b.state).toBe(StateType.Leader);
    nt.tick(2);
    expect(a.lead).toBe(2);
  });
});

// ================================================================================================= ReadIndex

describe('ReadIndex (thesis §6.4)', () => {
  function leaderOf(n: number, extra = {}): { r: Raft; s: MemoryStorage } {
    const s = storageWithPeers(ids(n));
    const r = newTestRaft(1, 10, 1, s, extra);
    r.becomeCandidate();
    r.becomeLeader();
    commitNoopEntry(r, s);
    return { r, s };
  }

  test('§6.4 safe ReadIndex: the read state is released only after a majority acknowledges a heartbeat carrying the request context', () => {
    const { r } = leaderOf(5);
    const readIndex = r.raftLog.committed;
    r.step(readIndexMsg(1, 1, 'ctx1'));
    expect(readStates(r)).toEqual([]);
    const hbs = r.readMessages();
    expect(hbs.map((m) => [m.type, m.to, dec.decode(m.context)])).toEqual(
      [2, 3, 4, 5].map((to) => [MessageType.Heartbeat, to, 'ctx1']),
    );
    // The commit index moves on before the acks arrive: the read index stays the one taken at request time.
    r.step(propMsg(1, 1));
    for (const m of r.readMessages()) r.step(acceptAndReply(m));
    expect(r.raftLog.committed).toBe(readIndex + 1);
    r.readMessages();

    const ack = (from: number, ctx?: string): void =>
      r.step(msg({ type: MessageType.HeartbeatResp, from, to: 1, term: r.term, context: ctx === undefined ? undefined : enc.encode(ctx) }));
    ack(2, 'ctx1'); // leader + 2: two of five
    ack(3); // a plain heartbeat ack does not count
    ack(4, 'other'); // nor does an ack for another request
    ack(2, 'ctx1'); // nor a duplicate
    expect(readStates(r)).toEqual([]);
    ack(5, 'ctx1'); // leader + 2 + 5: a majority
    expect(readStates(r)).toEqual([{ index: readIndex, ctx: 'ctx1' }]);
    ack(3, 'ctx1'); // late acks release nothing more
    expect(readStates(r)).toEqual([]);
  });

  test('§6.4 safe ReadIndex: requests are answered in order; a quorum for a later request releases the earlier ones too', () => {
    const { r } = leaderOf(3);
    r.step(readIndexMsg(1, 1, 'a'));
    r.step(readIndexMsg(1, 1, 'b'));
    r.readMessages();
    r.step(msg({ type: MessageType.HeartbeatResp, from: 3, to: 1, term: r.term, context: enc.encode('b') }));
    expect(readStates(r).map((s) => s.ctx)).toEqual(['a', 'b']);
  });

  test("§6.4 a follower's read is forwarded to the leader and answered with the leader's commit index", () => {
    const nt = new Network(3);
    nt.send(hup(1));
    nt.send(propMsg(1, 1), propMsg(1, 1));
    const [n1, n2] = [peer(nt, 1), peer(nt, 2)];
    nt.send(readIndexMsg(2, 2, 'follower-read'));
    expect(readStates(n2)).toEqual([{ index: n1.raftLog.committed, ctx: 'follower-read' }]);
    expect(n1.raftLog.committed).toBe(3);
    expect(readStates(n1)).toEqual([]); // the answer went back to the follower, not into the leader's states
    // As RawNode.readIndex sends it: no sender; the follower forwards it in its own name.
    nt.send(msg({ type: MessageType.ReadIndex, to: 2, context: enc.encode('rawnode-read') }));
    expect(readStates(n2)).toEqual([{ index: 3, ctx: 'rawnode-read' }]);

    // A follower that knows no leader drops the request.
    const lonely = newTestRaft(2, 10, 1, storageWithPeers([1, 2, 3]));
    lonely.step(readIndexMsg(2, 2, 'x'));
    expect([lonely.readMessages(), lonely.readStates]).toEqual([[], []]);
  });

  test('§6.4 a new leader defers reads until it has committed an entry of its own term (etcd TestReadOnlyForNewLeader)', () => {
    const s = storageWithLog([1, 2, 3], entsWithTerms(1, 1), { term: 1, commit: 2 });
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    const noop = r.raftLog.lastIndex();
    r.bcastAppend();
    const apps = r.readMessages();
    r.step(readIndexMsg(1, 1, 'early'));
    // Its commit index (2) may be stale: no heartbeat round, no answer yet.
    expect(r.readMessages()).toEqual([]);
    expect(readStates(r)).toEqual([]);
    r.step(acceptAndReply(apps[0]));
    expect(r.raftLog.committed).toBe(noop);
    const hbs = r.readMessages().filter((m) => m.type === MessageType.Heartbeat);
    expect(hbs.map((m) => dec.decode(m.context))).toEqual(['early', 'early']);
    r.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term, context: enc.encode('early') }));
    expect(readStates(r)).toEqual([{ index: noop, ctx: 'early' }]);
  });

  test('§6.4 a single-voter leader answers a read at once; a lease-based leader answers from its commit index without a heartbeat round', () => {
    const single = leaderOf(1).r;
    single.step(readIndexMsg(1, 1, 'solo'));
    expect(readStates(single)).toEqual([{ index: single.raftLog.committed, ctx: 'solo' }]);

    const { r } = leaderOf(3, { readOnlyOption: ReadOnlyOption.LeaseBased, checkQuorum: true });
    r.step(readIndexMsg(1, 1, 'lease'));
    expect(r.readMessages()).toEqual([]);
    expect(readStates(r)).toEqual([{ index: r.raftLog.committed, ctx: 'lease' }]);
  });
});

// ====================================================================================== Leadership transfer

describe('Leadership transfer (thesis §3.10)', () => {
  test('§3.10 transfer to an up-to-date follower: TimeoutNow at once, and it wins immediately, even through the lease (etcd TestLeaderTransferToUpToDateNode)', () => {
    const nt = new Network(3, { checkQuorum: true });
    nt.send(hup(1));
    const seen = recordMessages(nt);
    nt.send(msg({ type: MessageType.TransferLeader, from: 2, to: 1 }));
    expect(seen[0]).toEqual([MessageType.TimeoutNow, 1, 2]);
    const [n1, n2] = [peer(nt, 1), peer(nt, 2)];
    expect([n2.state, n2.term]).toEqual([StateType.Leader, 2]);
    expect([n1.state, n1.lead, n1.leadTransferee]).toEqual([StateType.Follower, 2, NONE]);
    // And back again.
    nt.send(msg({ type: MessageType.TransferLeader, from: 1, to: 2 }));
    expect([n1.state, n1.term]).toEqual([StateType.Leader, 3]);
  });

  test('§3.10 a transfer requested at a follower is forwarded to the leader and hands leadership to the requested node', () => {
    const nt = new Network(3);
    nt.send(hup(1));
    // Node 3 is asked to make node 2 the leader.
    nt.send(msg({ type: MessageType.TransferLeader, from: 2, to: 3 }));
    expect(peer(nt, 2).state).toBe(StateType.Leader);
    expect(peer(nt, 3).state).toBe(StateType.Follower);
    expect(peer(nt, 1).state).toBe(StateType.Follower);
  });

  test('§3.10 transfer to a lagging follower: the leader first catches it up, refusing proposals meanwhile, then sends TimeoutNow (etcd TestLeaderTransferToSlowFollower)', () => {
    const nt = new Network(3);
    nt.send(hup(1));
    const [n1, , n3] = [peer(nt, 1), peer(nt, 2), peer(nt, 3)];
    nt.isolate(3);
    nt.send(propMsg(1, 1));
    nt.recover();
    expect(n1.trk.progress.get(3)!.match).toBe(1);

    nt.msgHook = (m) => !(m.type === MessageType.App && m.to === 3); // the catch-up does not get through yet
    nt.send(msg({ type: MessageType.TransferLeader, from: 3, to: 1 }));
    expect([n1.state, n1.leadTransferee]).toEqual([StateType.Leader, 3]);
    expect(() => n1.step(propMsg(1, 1))).toThrow(ProposalDroppedError);

    nt.msgHook = undefined;
    const seen = recordMessages(nt);
    nt.tick(1); // heartbeat → the follower answers → the leader sends the missing entries
    const catchUp = seen.findIndex(([t, f, to]) => t === MessageType.AppResp && f === 3 && to === 1);
    const timeoutNow = seen.findIndex(([t]) => t === MessageType.TimeoutNow);
    expect(catchUp).toBeGreaterThanOrEqual(0);
    expect(timeoutNow).toBeGreaterThan(catchUp);
    expect([n3.state, n1.state, n1.lead]).toEqual([StateType.Leader, StateType.Follower, 3]);
    expect(logTerms(n3).slice(0, 2)).toEqual([1, 1]);
  });

  test('§3.10 a transfer that does not complete within an election timeout is aborted and the leader takes proposals again (etcd TestLeaderTransferTimeout)', () => {
    const nt = new Network(3, { checkQuorum: true, preVote: true });
    nt.send(hup(1));
    const n1 = peer(nt, 1);
    nt.isolate(3);
    nt.send(msg({ type: MessageType.TransferLeader, from: 3, to: 1 }));
    expect(n1.leadTransferee).toBe(3);
    expect(() => n1.step(propMsg(1, 1))).toThrow(ProposalDroppedError);
    nt.tick(1, n1.electionTimeout - 1);
    expect(n1.leadTransferee).toBe(3);
    nt.tick(1);
    expect([n1.state, n1.leadTransferee]).toEqual([StateType.Leader, NONE]);
    const last = n1.raftLog.lastIndex();
    n1.step(propMsg(1, 1));
    expect(n1.raftLog.lastIndex()).toBe(last + 1);
  });

  test('§3.10 transfer requests that make no sense are ignored: to a learner, to a non-member, to the leader itself; a repeat changes nothing', () => {
    const s = storageWithPeers([1, 2], [3]);
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    commitNoopEntry(r, s);
    for (const from of [3, 9, 1]) {
      r.step(msg({ type: MessageType.TransferLeader, from, to: 1 }));
      expect([from, r.state, r.leadTransferee, r.readMessages()]).toEqual([from, StateType.Leader, NONE, []]);
    }
    r.step(msg({ type: MessageType.TransferLeader, from: 2, to: 1 }));
    expect(r.readMessages().map((m) => m.type)).toEqual([MessageType.TimeoutNow]);
    r.step(msg({ type: MessageType.TransferLeader, from: 2, to: 1 }));
    expect(r.readMessages()).toEqual([]); // already in progress
    expect(r.leadTransferee).toBe(2);
  });
});

// ===================================================================================== Compaction, snapshots

describe('Log compaction and InstallSnapshot (thesis §5.1; paper §7)', () => {
  function snapshot(index: number, term: number, voters: number[], data = 'state'): Snapshot {
    return { metadata: { index, term, confState: { voters, learners: [] } }, data: enc.encode(data) };
  }

  test('§5.1 the leader sends a snapshot when the follower needs compacted entries; the progress goes Snapshot → Probe → Replicate (etcd TestProvideSnap, TestSnapshotSucceed)', () => {
    const nt = new Network(3);
    nt.send(hup(1));
    const [n1, , n3] = [peer(nt, 1), peer(nt, 2), peer(nt, 3)];
    nt.isolate(3);
    for (let i = 0; i < 5; i++) nt.send(propMsg(1, 1, `v${i}`));
    const s1 = nt.storage.get(1)!;
    const snapIndex = n1.raftLog.applied;
    expect(snapIndex).toBe(6);
    s1.createSnapshot(snapIndex, n1.trk.confState(), enc.encode('app-state@6'));
    s1.compact(snapIndex);
    nt.recover();

    // The follower's answer to the snapshot is lost for now.
    let snapSent = false;
    nt.msgHook = (m) => {
      if (m.type === MessageType.Snap) snapSent = true;
      return !(snapSent && m.type === MessageType.AppResp && m.from === 3);
    };
    const seen = recordMessages(nt);
    nt.tick(1);
    expect(seen).toContainEqual([MessageType.Snap, 1, 3]);
    const pr = n1.trk.progress.get(3)!;
    expect([pr.state, pr.pendingSnapshot]).toEqual([ProgressState.Snapshot, snapIndex]);
    // The follower installed it.
    expect([n3.raftLog.firstIndex(), n3.raftLog.committed]).toEqual([snapIndex + 1, snapIndex]);
    expect(nt.storage.get(3)!.snapshot().data).toEqual(enc.encode('app-state@6'));
    // While in Snapshot the leader sends it nothing but heartbeats.
    seen.length = 0;
    nt.send(propMsg(1, 1, 'v5'));
    expect(seen.filter(([t, , to]) => t === MessageType.App && to === 3)).toEqual([]);

    // The driver reports the snapshot delivered: Probe, waiting for the follower's answer.
    nt.msgHook = undefined;
    n1.step(msg({ type: MessageType.SnapStatus, from: 3, to: 1, reject: false }));
    expect([pr.state, pr.next, pr.isPaused()]).toEqual([ProgressState.Probe, snapIndex + 1, true]);
    nt.tick(1); // heartbeat → response → append of what it lacks → Replicate
    expect(pr.state).toBe(ProgressState.Replicate);
    expect(pr.match).toBe(n1.raftLog.lastIndex());
    expect(n3.raftLog.committed).toBe(n1.raftLog.committed);
    expect(dec.decode(n3.raftLog.allEntries().at(-1)!.data)).toBe('v5');
  });

  test('§5.1 a failed snapshot send puts the follower back to Probe, and the snapshot is sent again (etcd TestSnapshotFailure)', () => {
    // A leader whose log starts with a snapshot at index 11 (voters 1 and 2).
    const s = storageWithPeers([1]);
    s.applySnapshot(snapshot(11, 11, [1, 2]));
    const r2 = newTestRaft(1, 10, 1, s);
    r2.becomeCandidate();
    r2.becomeLeader();
    const pr = r2.trk.progress.get(2)!;
    pr.recentActive = true;
    pr.next = r2.raftLog.firstIndex(); // node 2 needs entries from the snapshot on
    r2.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r2.term, index: pr.next - 1, reject: true }));
    expect([pr.state, pr.pendingSnapshot]).toEqual([ProgressState.Snapshot, 11]);
    expect(r2.readMessages().map((m) => [m.type, m.snapshot?.metadata.index])).toEqual([[MessageType.Snap, 11]]);
    r2.step(msg({ type: MessageType.SnapStatus, from: 2, to: 1, reject: true }));
    expect([pr.state, pr.pendingSnapshot, pr.next, pr.isPaused()]).toEqual([ProgressState.Probe, 0, 1, true]);
    r2.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r2.term }));
    expect(r2.readMessages().map((m) => m.type)).toEqual([MessageType.Snap]);
    expect(pr.state).toBe(ProgressState.Snapshot);
    // An AppResp at or beyond the snapshot while it is being sent ends Snapshot state (etcd TestSnapshotAbort).
    r2.readMessages();
    r2.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r2.term, index: 11 }));
    expect([pr.state, pr.match]).toEqual([ProgressState.Replicate, 11]);
    // ... and replication resumes right after the snapshot (with the leader's no-op at 12).
    expect(r2.readMessages().map((m) => [m.type, m.index, m.entries.map((e) => e.index)])).toEqual([[MessageType.App, 11, [12]]]);
  });

  test('§5.1 a follower installs a snapshot: log, commit index and membership come from it (etcd TestRestoreFromSnapMsg)', () => {
    const r = newTestRaft(2, 10, 1, storageWithLog([1, 2], entsWithTerms(1, 1), { term: 1 }));
    r.step(msg({ type: MessageType.Snap, from: 1, to: 2, term: 2, snapshot: snapshot(11, 2, [1, 2, 3]) }));
    expect([r.lead, r.term]).toEqual([1, 2]);
    expect([r.raftLog.lastIndex(), r.raftLog.lastTerm(), r.raftLog.committed]).toEqual([11, 2, 11]);
    expect(r.trk.confState()).toEqual({ voters: [1, 2, 3], learners: [] });
    expect(r.raftLog.hasPendingSnapshot()).toBe(true);
    expect(r.readMessages().map((m) => [m.type, m.to, m.index, m.reject])).toEqual([[MessageType.AppResp, 1, 11, false]]);
    // Until the driver persists it, the node does not campaign.
    expect(r.promotable()).toBe(false);
  });

  test('§5.1 a stale snapshot is ignored; one whose last entry the follower already holds only advances its commit index (etcd TestRestoreIgnoreSnapshot)', () => {
    const r = newTestRaft(1, 10, 1, storageWithLog([1, 2], entsWithTerms(1, 1, 1), { term: 1, commit: 2 }));
    r.becomeFollower(1, 2);
    r.step(msg({ type: MessageType.Snap, from: 2, to: 1, term: 1, snapshot: snapshot(2, 1, [1, 2]) }));
    expect([r.raftLog.committed, r.raftLog.firstIndex(), r.raftLog.hasPendingSnapshot()]).toEqual([2, 1, false]);
    expect(r.readMessages().map((m) => [m.type, m.index])).toEqual([[MessageType.AppResp, 2]]);

    r.step(msg({ type: MessageType.Snap, from: 2, to: 1, term: 1, snapshot: snapshot(3, 1, [1, 2]) }));
    expect([r.raftLog.committed, r.raftLog.firstIndex(), r.raftLog.hasPendingSnapshot()]).toEqual([3, 1, false]);
    expect(logTerms(r)).toEqual([1, 1, 1]);

    // A snapshot that does not list this node is refused too.
    r.step(msg({ type: MessageType.Snap, from: 2, to: 1, term: 1, snapshot: snapshot(10, 1, [2, 3]) }));
    expect([r.raftLog.committed, r.raftLog.hasPendingSnapshot()]).toEqual([3, false]);
  });
});

// ================================================================================================ Flow control

describe('Flow control (etcd Progress / Inflights)', () => {
  function leader2(extra = {}): { r: Raft; s: MemoryStorage } {
    const s = storageWithPeers([1, 2]);
    const r = newTestRaft(1, 5, 1, s, extra);
    r.becomeCandidate();
    r.becomeLeader();
    r.readMessages();
    return { r, s };
  }

  test('Replicate: at most maxInflightMsgs appends are in flight to a follower; acknowledgments free the window (etcd TestMsgAppFlowControlFull, MoveForward)', () => {
    const { r } = leader2({ maxInflightMsgs: 3 });
    const pr = r.trk.progress.get(2)!;
    pr.becomeReplicate();
    const sent: number[] = [];
    for (let i = 0; i < 10; i++) {
      r.step(propMsg(1, 1));
      for (const m of r.readMessages()) if (m.type === MessageType.App) sent.push(m.index + m.entries.length);
    }
    expect(sent).toEqual([2, 3, 4]); // three appends, then the window is full
    expect([pr.inflights.count, pr.isPaused()]).toEqual([3, true]);
    // Acknowledging the first frees one slot; the rest of the log goes out in the next append.
    r.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: 2 }));
    const out = r.readMessages().filter((m) => m.type === MessageType.App);
    expect(out.map((m) => [m.index, m.entries.length])).toEqual([[4, 7]]);
    expect(pr.inflights.count).toBe(3);
    // An ack of everything empties it.
    r.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: r.raftLog.lastIndex() }));
    expect([pr.inflights.count, pr.isPaused()]).toEqual([0, false]);
  });

  test('Probe: one append at a time, until it is answered or a heartbeat response arrives (etcd TestSendAppendForProgressProbe)', () => {
    const { r } = leader2();
    const pr = r.trk.progress.get(2)!;
    expect(pr.state).toBe(ProgressState.Probe);
    r.step(propMsg(1, 1));
    expect(r.readMessages().map((m) => [m.type, m.index])).toEqual([[MessageType.App, 0]]);
    expect(pr.isPaused()).toBe(true);
    for (let round = 0; round < 3; round++) {
      for (let j = 0; j < 5; j++) r.step(propMsg(1, 1));
      expect(r.readMessages()).toEqual([]);
      r.step(msg({ type: MessageType.Beat, from: 1, to: 1 }));
      expect(r.readMessages().map((m) => m.type)).toEqual([MessageType.Heartbeat]);
      expect(pr.isPaused()).toBe(true);
    }
    r.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term }));
    const again = r.readMessages();
    expect(again.map((m) => [m.type, m.index])).toEqual([[MessageType.App, 0]]);
    expect(pr.isPaused()).toBe(true);
    // Its answer moves the follower to Replicate.
    r.step(acceptAndReply(again[0]));
    expect(pr.state).toBe(ProgressState.Replicate);
  });

  test('Replicate: a full window whose appends were all lost recovers through heartbeat responses (etcd TestMsgAppFlowControlRecvHeartbeat)', () => {
    const nt = new Network(3, { maxInflightMsgs: 2 });
    nt.send(hup(1));
    const [n1, n2] = [peer(nt, 1), peer(nt, 2)];
    expect(n1.trk.progress.get(2)!.state).toBe(ProgressState.Replicate);
    nt.msgHook = (m) => !(m.type === MessageType.App && m.to === 2); // every append to node 2 is lost
    for (let i = 0; i < 5; i++) nt.send(propMsg(1, 1, `x${i}`));
    expect(n1.trk.progress.get(2)!.inflights.full()).toBe(true);
    nt.msgHook = undefined;
    for (let i = 0; i < 3 && n2.raftLog.lastIndex() < n1.raftLog.lastIndex(); i++) nt.tick(1);
    expect(logTerms(n2)).toEqual(logTerms(n1));
    expect(n2.raftLog.committed).toBe(n1.raftLog.committed);
  });

  test('Replicate: each heartbeat response frees exactly one slot of a full window (etcd TestMsgAppFlowControlRecvHeartbeat)', () => {
    const { r } = leader2({ maxInflightMsgs: 4 });
    const pr = r.trk.progress.get(2)!;
    pr.becomeReplicate();
    for (let i = 0; i < 4; i++) r.step(propMsg(1, 1));
    r.readMessages();
    expect(pr.inflights.full()).toBe(true);
    r.step(msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: r.term }));
    expect(pr.inflights.full()).toBe(false);
    r.readMessages();
    r.step(propMsg(1, 1));
    expect(r.readMessages().filter((m) => m.type === MessageType.App)).toHaveLength(1); // one slot
    for (let i = 0; i < 5; i++) r.step(propMsg(1, 1));
    expect(r.readMessages()).toEqual([]); // and just one
  });

  test('batching: proposals that pile up while a follower is paused go out together, in appends of at most maxSizePerMsg bytes (thesis §10.2 batching; etcd limitSize)', () => {
    const entrySize = 100 + 24; // payload + fixed framing overhead
    const { r } = leader2({ maxSizePerMsg: 3 * entrySize });
    const payload = 'p'.repeat(100);
    r.step(propMsg(1, 1, payload));
    const probe = r.readMessages();
    for (let i = 0; i < 7; i++) r.step(propMsg(1, 1, payload));
    expect(r.readMessages()).toEqual([]);
    // The probe is answered: the backlog (noop + 8 proposals) goes out in size-limited batches.
    r.step(acceptAndReply(probe[0]));
    const apps = r.readMessages().filter((m) => m.type === MessageType.App);
    expect(apps.map((m) => m.entries.length)).toEqual([3, 3, 1]);
    expect(apps.map((m) => m.index)).toEqual([2, 5, 8]);

    // A single entry larger than the limit still goes out (alone).
    const { r: big, s: bigS } = leader2({ maxSizePerMsg: 10 });
    commitNoopEntry(big, bigS);
    big.step(propMsg(1, 1, 'x'.repeat(50)));
    big.step(propMsg(1, 1, 'y'.repeat(50)));
    expect(big.readMessages().map((m) => m.entries.map((e) => e.data.length))).toEqual([[50], [50]]);

    // With the default 1 MiB limit the whole backlog fits in one append.
    const one = leader2().r;
    one.step(propMsg(1, 1));
    const p = one.readMessages();
    for (let i = 0; i < 50; i++) one.step(propMsg(1, 1));
    one.step(acceptAndReply(p[0]));
    expect(one.readMessages().map((m) => m.entries.length)).toEqual([50]);
  });
});

// ============================================================================================ Fast back-off

describe('Fast log back-off (paper §5.3, last paragraphs; etcd TestFastLogRejection)', () => {
  function terms(spec: Array<[term: number, count: number]>): number[] {
    return spec.flatMap(([t, n]) => new Array<number>(n).fill(t));
  }

  function repair(leaderTerms: number[], followerTerms: number[]): { rejects: number; follower: Raft; leader: Raft } {
    const leadSt = storageWithLog([1, 2, 3], entsWithTerms(...leaderTerms), { term: 9 });
    const lead = newTestRaft(1, 10, 1, leadSt);
    const follSt = storageWithLog([1, 2, 3], entsWithTerms(...followerTerms), { term: 9 });
    const follower = newTestRaft(2, 10, 1, follSt);
    const nt = new Network([{ raft: lead, storage: leadSt }, { raft: follower, storage: follSt }, null]);
    let rejects = 0;
    nt.msgHook = (m) => {
      if (m.type === MessageType.AppResp && m.reject) rejects++;
      return true;
    };
    nt.send(hup(1));
    nt.send(msg({ type: MessageType.VoteResp, from: 3, to: 1, term: 10 }));
    expect(lead.state).toBe(StateType.Leader);
    return { rejects, follower, leader: lead };
  }

  test('§5.3 a follower with a long divergent tail is repaired in round trips proportional to the number of terms, not entries', () => {
    // Common prefix of 3 entries, then 300 divergent entries over two terms on the follower.
    const leaderTerms = terms([[1, 3], [4, 100]]);
    const followerTerms = terms([[1, 3], [2, 200], [3, 100]]);
    const { rejects, follower, leader } = repair(leaderTerms, followerTerms);
    expect(logTerms(follower)).toEqual(logTerms(leader));
    // One entry per round trip would take 300 rejections; one term per round trip takes at most 2.
    expect(rejects).toBeLessThanOrEqual(2);
  });

  test('§5.3 fast back-off also skips whole terms when the follower\'s log is shorter and when the leader has several divergent terms', () => {
    const a = repair(terms([[1, 2], [5, 50], [6, 50], [7, 50]]), terms([[1, 2], [2, 40], [3, 40]]));
    expect(logTerms(a.follower)).toEqual(logTerms(a.leader));
    expect(a.rejects).toBeLessThanOrEqual(2); // two divergent terms on the follower, 80 entries
    const b = repair(terms([[1, 2], [2, 20], [3, 20], [4, 20], [5, 20]]), terms([[1, 2], [2, 20], [3, 10], [4, 5]]));
    expect(logTerms(b.follower)).toEqual(logTerms(b.leader));
    expect(b.rejects).toBeLessThanOrEqual(2); // one divergent follower term, three divergent leader terms
  });
});

// ================================================================================================= Membership

describe('Membership changes (thesis §4.1–§4.2)', () => {
  /** Voters 1..3 and learner 4, all knowing the configuration from their storage. */
  function withLearner(): Network {
    const peers = ids(4).map((id) => {
      const storage = storageWithPeers([1, 2, 3], [4]);
      return { raft: newTestRaft(id, 10, 1, storage), storage };
    });
    return new Network(peers);
  }

  test('§4.2.1 a learner receives the log, but never campaigns and never counts toward a commit or an election', () => {
    const nt = withLearner();
    nt.send(hup(1));
    const [n1, n4] = [peer(nt, 1), peer(nt, 4)];
    nt.send(propMsg(1, 1, 'a'));
    expect(logTerms(n4)).toEqual(logTerms(n1));
    expect(n4.raftLog.committed).toBe(2);

    // Only the learner can hear the leader: no commit, although leader + learner are half of the four nodes.
    nt.cut(1, 2);
    nt.cut(1, 3);
    nt.send(propMsg(1, 1, 'b'));
    expect(n4.raftLog.lastIndex()).toBe(3);
    expect(n1.raftLog.committed).toBe(2);

    // The learner never starts an election.
    nt.recover();
    nt.isolate(4);
    tickN(n4, 5 * n4.maxElectionTimeout);
    expect([n4.state, n4.term, n4.readMessages()]).toEqual([StateType.Follower, 1, []]);
    nt.send(hup(4));
    expect(n4.state).toBe(StateType.Follower);

    // A candidate does not count a learner's vote.
    nt.recover();
    const r = newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3], [4]));
    r.step(hup(1));
    r.step(msg({ type: MessageType.VoteResp, from: 4, to: 1, term: r.term }));
    expect(r.state).toBe(StateType.Candidate);
    r.step(msg({ type: MessageType.VoteResp, from: 2, to: 1, term: r.term }));
    expect(r.state).toBe(StateType.Leader);
  });

  test('§4.1 a learner added through the log catches up, then promoting it with AddNode makes it a voter and grows the quorum', () => {
    const nt = new Network(3);
    nt.send(hup(1));
    const n1 = peer(nt, 1);
    nt.send(ccProp(1, { type: ConfChangeType.AddLearnerNode, nodeId: 4 }));
    expect(n1.trk.confState()).toEqual({ voters: [1, 2, 3], learners: [4] });
    // The new member starts empty, knowing only its own role; the leader catches it up.
    const s4 = storageWithPeers([1, 2, 3], [4]);
    nt.addPeer(4, newTestRaft(4, 10, 1, s4), s4);
    nt.send(propMsg(1, 1, 'hello'));
    const n4 = peer(nt, 4);
    expect(logTerms(n4)).toEqual(logTerms(n1));
    expect(n4.promotable()).toBe(false);

    nt.send(ccProp(1, { type: ConfChangeType.AddNode, nodeId: 4 }));
    for (const id of [1, 2, 3, 4]) expect(peer(nt, id).trk.confState()).toEqual({ voters: [1, 2, 3, 4], learners: [] });
    expect([n4.isLearner, n4.promotable()]).toEqual([false, true]);
    // Four voters: leader + one follower is no longer a majority.
    nt.cut(1, 2);
    nt.cut(1, 3);
    const before = n1.raftLog.committed;
    nt.send(propMsg(1, 1, 'needs 3 of 4'));
    expect(n1.raftLog.committed).toBe(before);
    nt.recover();
    nt.tick(1);
    expect(n1.raftLog.committed).toBe(before + 1);
  });

  test('§4.1 removing a voter shrinks the quorum: an entry stuck on a minority of the old configuration commits once the removal is applied (etcd TestCommitAfterRemoveNode)', () => {
    const s = storageWithPeers([1, 2]);
    const r = newTestRaft(1, 5, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    commitNoopEntry(r, s);
    r.step(ccProp(1, { type: ConfChangeType.RemoveNode, nodeId: 2 }));
    expect(nextEnts(r, s)).toEqual([]);
    const ccIndex = r.raftLog.lastIndex();
    r.step(propMsg(1, 1, 'hello'));
    // Node 2 acknowledges the conf change (not the proposal after it): the conf change commits.
    r.step(msg({ type: MessageType.AppResp, from: 2, to: 1, term: r.term, index: ccIndex }));
    const ents = nextEnts(r, s);
    expect(ents.map((e) => e.type)).toEqual([EntryType.ConfChange]);
    expect(nextEnts(r, s)).toEqual([]); // 'hello' is on the leader only: one of two voters
    // Applying it leaves a single voter, which commits the pending proposal by itself.
    r.applyConfChange(decodeConfChange(ents[0].data));
    expect(nextEnts(r, s).map((e) => dec.decode(e.data))).toEqual(['hello']);
  });

  test('§4.1 only one configuration change may be pending: a second is refused with ProposalDroppedError until the first is applied', () => {
    const nt = new Network(3, { checkQuorum: true, preVote: true });
    nt.send(hup(1));
    const n1 = peer(nt, 1);
    nt.isolate(3); // node 3 is down; 1 and 2 keep committing
    nt.cut(1, 2); // ... but for now nothing commits
    n1.step(ccProp(1, { type: ConfChangeType.AddLearnerNode, nodeId: 4 }));
    expect(() => n1.step(ccProp(1, { type: ConfChangeType.AddLearnerNode, nodeId: 5 }))).toThrow(ProposalDroppedError);
    expect(() => n1.step(ccProp(1, { type: ConfChangeType.RemoveNode, nodeId: 3 }))).toThrow(ProposalDroppedError);
    // Normal proposals are still welcome.
    n1.step(propMsg(1, 1));
    n1.readMessages();
    nt.recover();
    nt.isolate(3);
    nt.tick(1); // the change commits and is applied
    expect(n1.trk.confState().learners).toEqual([4]);
    expect(() => n1.step(ccProp(1, { type: ConfChangeType.AddLearnerNode, nodeId: 5 }))).not.toThrow();
  });

  test('§4.1 (no-op before config) a new leader cannot propose a configuration change until its own no-op entry is applied', () => {
    const nt = new Network(3);
    nt.send(hup(1));
    expect(peer(nt, 2).raftLog.applied).toBe(1); // everyone applied the first leader's no-op
    nt.isolate(1);
    nt.ignore(MessageType.App); // node 2 wins, but its no-op does not get out yet
    nt.send(hup(2));
    const n2 = peer(nt, 2);
    expect(n2.state).toBe(StateType.Leader);
    expect([n2.raftLog.lastIndex(), n2.raftLog.committed, n2.raftLog.applied]).toEqual([2, 1, 1]);
    expect(() => n2.step(ccProp(2, { type: ConfChangeType.RemoveNode, nodeId: 1 }))).toThrow(ProposalDroppedError);
    nt.recover();
    nt.isolate(1);
    nt.tick(2); // the no-op commits and is applied
    expect(n2.raftLog.applied).toBe(2);
    expect(() => n2.step(ccProp(2, { type: ConfChangeType.RemoveNode, nodeId: 1 }))).not.toThrow();
  });

  test('§4.2.2 a leader removed from the configuration hands leadership to a remaining voter; it never leads again', () => {
    const nt = new Network(3, { checkQuorum: true, preVote: true });
    nt.send(hup(1));
    const n1 = peer(nt, 1);
    nt.send(ccProp(1, { type: ConfChangeType.RemoveNode, nodeId: 1 }));
    // The removal is applied; node 1 transferred leadership (TimeoutNow) to the most up-to-date voter, which
    // won among the remaining voters {2, 3}.
    expect(n1.promotable()).toBe(false);
    expect(peer(nt, 2).trk.confState().voters).toEqual([2, 3]);
    const leader = [2, 3].find((id) => peer(nt, id).state === StateType.Leader);
    expect(leader).toBeDefined();
    // Node 1's next heartbeat is answered with the higher term: it steps down. It may pre-vote as a caretaker
    // later, but the members, who hear from their leader, ignore it: it never disrupts the cluster.
    nt.tick(1, n1.heartbeatTimeout);
    expect(n1.state).toBe(StateType.Follower);
    const term = peer(nt, leader!).term;
    nt.tick(1, 3 * n1.maxElectionTimeout);
    for (let i = 0; i < 3 * n1.maxElectionTimeout; i++) {
      nt.tick(leader!);
      nt.tick(1);
    }
    expect(n1.state).not.toBe(StateType.Leader);
    expect([peer(nt, leader!).state, peer(nt, leader!).term]).toEqual([StateType.Leader, term]);
    nt.send(propMsg(leader!, leader!, 'after'));
    expect(peer(nt, 2).raftLog.committed).toBe(peer(nt, 3).raftLog.committed);
    expect(peer(nt, 2).raftLog.committed).toBeGreaterThan(3);
  });

  test('§4.2.2 a removed leader keeps leading (without counting itself) until a remaining voter can take over', () => {
    const nt = new Network(3, { checkQuorum: true, preVote: true });
    nt.send(hup(1));
    const n1 = peer(nt, 1);
    nt.isolate(3);
    nt.ignore(MessageType.TimeoutNow); // the hand-over message is lost
    nt.send(ccProp(1, { type: ConfChangeType.RemoveNode, nodeId: 1 }));
    expect(n1.state).toBe(StateType.Leader);
    expect(n1.leadTransferee).toBe(2);
    expect(() => n1.step(propMsg(1, 1))).toThrow(ProposalDroppedError); // it takes no new proposals
    nt.recover();
    // After an election timeout the transfer is retried, and this time it goes through.
    nt.tick(1, n1.electionTimeout + n1.heartbeatTimeout);
    expect(n1.state).toBe(StateType.Follower);
    expect([2, 3].some((id) => peer(nt, id).state === StateType.Leader)).toBe(true);
  });

  test('§4.2.2 a removed node whose vote the remaining voter still needs is elected as caretaker and hands over (sim seed 2057)', () => {
    const nt = new Network(2, { checkQuorum: true, preVote: true });
    nt.send(hup(1));
    const [n1, n2] = [peer(nt, 1), peer(nt, 2)];
    // Node 1 leads {1, 2} and removes itself; node 2 acknowledges the entry but never hears that it committed.
    nt.ignore(MessageType.TimeoutNow);
    nt.msgHook = (m) => !(m.from === 1 && m.to === 2 && (m.type === MessageType.App || m.type === MessageType.Heartbeat) && m.commit >= 2);
    nt.send(ccProp(1, { type: ConfChangeType.RemoveNode, nodeId: 1 }));
    expect(n1.trk.confState().voters).toEqual([2]);
    expect(n2.trk.confState().voters).toEqual([1, 2]);
    // Node 1 had appended one more entry that node 2 lacks (a proposal accepted before the removal applied),
    // then loses its leadership (as after a crash and restart) before handing over: it refuses node 2's vote.
    n1.raftLog.append([ent(n1.term, n1.raftLog.lastIndex() + 1, 'late')]);
    n1.becomeFollower(n1.term, NONE);
    nt.recover();
    nt.msgHook = undefined;
    // Node 2 alone cannot win in {1, 2}; node 1, as caretaker, wins node 2's vote, tells it, and hands over.
    for (let i = 0; i < 4 * n1.maxElectionTimeout && n2.state !== StateType.Leader; i++) nt.tickAll();
    expect(n2.state).toBe(StateType.Leader);
    expect(n2.trk.confState().voters).toEqual([2]);
    nt.send(propMsg(2, 2, 'after'));
    expect(n2.raftLog.committed).toBe(n2.raftLog.lastIndex());
  });

  test('§4.1 removing (or demoting) the last voter is refused', () => {
    const s = storageWithPeers([1]);
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    expect(() => r.step(ccProp(1, { type: ConfChangeType.RemoveNode, nodeId: 1 }))).toThrow(ProposalDroppedError);
    expect(() => r.step(ccProp(1, { type: ConfChangeType.AddLearnerNode, nodeId: 1 }))).toThrow(ProposalDroppedError);
    // Applied anyway (say from an old log), it is ignored.
    expect(r.applyConfChange({ type: ConfChangeType.RemoveNode, nodeId: 1 })).toEqual({ voters: [1], learners: [] });
  });

  test('§4.1 a node does not campaign while committed configuration changes are waiting to be applied', () => {
    const s = storageWithLog([1, 2, 3], [{ ...ccEntry({ type: ConfChangeType.AddNode, nodeId: 4 }), term: 1, index: 1 }], {
      term: 1,
      commit: 1,
    });
    const r = newTestRaft(1, 10, 1, s);
    r.step(hup(1));
    expect([r.state, r.term, r.readMessages()]).toEqual([StateType.Follower, 1, []]);
    nextEnts(r, s);
    r.applyConfChange({ type: ConfChangeType.AddNode, nodeId: 4 });
    r.step(hup(1));
    expect(r.state).toBe(StateType.Candidate);
    expect(r.readMessages().map((m) => m.to)).toEqual([2, 3, 4]);
  });
});

// ==================================================================================================== RawNode

describe('RawNode and Ready (etcd rawnode_test.go)', () => {
  function newRawNode(id: number, s: MemoryStorage, extra = {}): RawNode {
    return new RawNode({ id, electionTick: 10, heartbeatTick: 1, storage: s, random: seededRandom(id), ...extra });
  }

  /** Do what a driver does with a Ready, return it. */
  function handle(rn: RawNode, s: MemoryStorage): Ready {
    const rd = rn.ready();
    if (rd.snapshot) s.applySnapshot(rd.snapshot);
    if (rd.hardState) s.setHardState(rd.hardState);
    s.append(rd.entries);
    for (const e of rd.committedEntries) if (e.type === EntryType.ConfChange) rn.applyConfChange(decodeConfChange(e.data));
    rn.advance(rd);
    return rd;
  }

  test('Ready: a single voter that campaigns and takes a proposal reports soft state, hard state, entries to persist and entries to apply', () => {
    const s = storageWithPeers([1]);
    const rn = newRawNode(1, s);
    expect(rn.hasReady()).toBe(false);
    rn.campaign();
    expect(rn.hasReady()).toBe(true);
    const rd1 = handle(rn, s);
    expect(rd1.softState).toEqual({ lead: 1, state: StateType.Leader });
    expect(rd1.hardState).toEqual({ term: 1, vote: 1, commit: 1 });
    expect(rd1.entries.map((e) => [e.index, e.term, e.data.length])).toEqual([[1, 1, 0]]);
    expect(rd1.committedEntries.map((e) => e.index)).toEqual([1]);
    expect([rd1.messages, rd1.mustSync]).toEqual([[], true]);
    expect(rn.hasReady()).toBe(false);

    rn.propose(enc.encode('foo'));
    const rd2 = handle(rn, s);
    expect(rd2.softState).toBeUndefined();
    expect(rd2.hardState).toEqual({ term: 1, vote: 1, commit: 2 });
    expect(rd2.entries.map((e) => dec.decode(e.data))).toEqual(['foo']);
    expect(rd2.committedEntries.map((e) => dec.decode(e.data))).toEqual(['foo']);
    expect(rd2.mustSync).toBe(true);
    expect(rn.status().applied).toBe(2);
  });

  test('Ready.mustSync: new entries or a changed term or vote must be synced; a commit index or messages alone need not be', () => {
    const s = storageWithPeers([1, 2]);
    const rn = newRawNode(1, s); // PreVote is on by default
    rn.campaign();
    const pre = handle(rn, s); // pre-candidate: pre-vote requests, term and vote unchanged
    expect([pre.softState?.state, pre.hardState, pre.messages.map((m) => m.type), pre.mustSync]).toEqual([
      StateType.PreCandidate,
      undefined,
      [MessageType.PreVote],
      false,
    ]);
    rn.step(msg({ type: MessageType.PreVoteResp, from: 2, to: 1, term: 1 }));
    const vote = handle(rn, s); // term 1, vote 1, vote requests
    expect([vote.hardState, vote.entries.length, vote.mustSync]).toEqual([{ term: 1, vote: 1, commit: 0 }, 0, true]);
    rn.step(msg({ type: MessageType.VoteResp, from: 2, to: 1, term: 1 }));
    const lead = handle(rn, s); // leader: the no-op to persist
    expect([lead.entries.length, lead.mustSync]).toEqual([1, true]);
    const app = lead.messages.find((m) => m.type === MessageType.App)!;
    rn.step(acceptAndReply(app));
    const commit = handle(rn, s); // only the commit index moved (and appends telling node 2 so)
    expect(commit.hardState).toEqual({ term: 1, vote: 1, commit: 1 });
    expect([commit.entries.length, commit.messages.length > 0, commit.mustSync]).toEqual([0, true, false]);
    rn.tick();
    const beat = handle(rn, s); // heartbeats: messages only
    expect([beat.hardState, beat.messages.map((m) => m.type), beat.mustSync]).toEqual([undefined, [MessageType.Heartbeat], false]);

    // A follower granting a vote at a new term must sync before the grant leaves.
    const s2 = storageWithPeers([1, 2, 3]);
    const f = newRawNode(2, s2);
    f.step(msg({ type: MessageType.Vote, from: 3, to: 2, term: 5, index: 0, logTerm: 0 }));
    const granted = handle(f, s2);
    expect([granted.hardState, granted.mustSync]).toEqual([{ term: 5, vote: 3, commit: 0 }, true]);
    expect(granted.messages.map((m) => [m.type, m.reject])).toEqual([[MessageType.VoteResp, false]]);
  });

  test('bootstrap: a new cluster member starts from committed AddNode entries for the initial voters', () => {
    const s = new MemoryStorage();
    const rn = newRawNode(1, s);
    rn.bootstrap([1, 2, 3]);
    expect(rn.status().config).toEqual({ voters: [1, 2, 3], learners: [] });
    const rd = handle(rn, s);
    expect(rd.hardState).toEqual({ term: 1, vote: 0, commit: 3 });
    expect(rd.entries.map((e) => [e.index, e.term, e.type])).toEqual([1, 2, 3].map((i) => [i, 1, EntryType.ConfChange]));
    expect(rd.committedEntries.map((e) => decodeConfChange(e.data))).toEqual(
      [1, 2, 3].map((nodeId) => ({ type: ConfChangeType.AddNode, nodeId })),
    );
    expect(rn.status().config).toEqual({ voters: [1, 2, 3], learners: [] });
    expect(rn.status().applied).toBe(3);
    // It can now campaign with its bootstrapped peers.
    rn.campaign();
    expect(rn.ready().messages.map((m) => [m.type, m.to, m.term])).toEqual([
      [MessageType.PreVote, 2, 2],
      [MessageType.PreVote, 3, 2],
    ]);

    expect(() => newRawNode(1, s).bootstrap([1])).toThrow(RaftInvariantError); // storage is no longer empty
    expect(() => newRawNode(1, new MemoryStorage()).bootstrap([])).toThrow(RaftInvariantError);
  });

  test('advance: marks the Ready\'s entries stable and its committed entries applied; nothing is handed out twice', () => {
    const s = storageWithPeers([1]);
    const rn = newRawNode(1, s);
    rn.campaign();
    handle(rn, s);
    rn.propose(enc.encode('a'));
    rn.propose(enc.encode('b'));
    const rd = rn.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([2, 3]);
    s.append(rd.entries);
    rn.advance(rd);
    expect(rn.raft.raftLog.unstableEntries()).toEqual([]);
    expect(rn.raft.raftLog.applied).toBe(3);
    expect(rn.hasReady()).toBe(false);
    rn.propose(enc.encode('c'));
    const rd2 = rn.ready();
    expect(rd2.entries.map((e) => e.index)).toEqual([4]);
    expect(rd2.committedEntries.map((e) => e.index)).toEqual([4]);
  });

  test('restart: a RawNode over persisted state resumes with its term, vote and commit, handing out only entries after `applied`', () => {
    const s = storageWithLog([1, 2, 3], entsWithTerms(1, 1, 2, 2), { term: 2, vote: 3, commit: 3 });
    const rn = newRawNode(1, s, { applied: 1 });
    expect(rn.status().hardState).toEqual({ term: 2, vote: 3, commit: 3 });
    const rd = rn.ready();
    expect(rd.hardState).toBeUndefined();
    expect(rd.entries).toEqual([]);
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2, 3]);
    expect(rd.mustSync).toBe(false);
  });

  test('ready() twice without advance() throws, as does advance() without ready()', () => {
    const s = storageWithPeers([1]);
    const rn = newRawNode(1, s);
    rn.campaign();
    const rd = rn.ready();
    expect(() => rn.ready()).toThrow(RaftInvariantError);
    rn.advance(rd);
    expect(() => rn.advance(rd)).toThrow(RaftInvariantError);
  });

  test('propose on a follower that knows no leader throws ProposalDroppedError; with a leader the proposal is forwarded', () => {
    const s = storageWithPeers([1, 2, 3]);
    const rn = newRawNode(2, s);
    expect(() => rn.propose(enc.encode('x'))).toThrow(ProposalDroppedError);
    expect(() => rn.proposeConfChange({ type: ConfChangeType.AddNode, nodeId: 4 })).toThrow(ProposalDroppedError);
    rn.step(msg({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1 }));
    handle(rn, s);
    rn.propose(enc.encode('x'));
    const fwd = rn.ready().messages;
    expect(fwd.map((m) => [m.type, m.from, m.to, m.term, dec.decode(m.entries[0].data)])).toEqual([[MessageType.Prop, 2, 1, 0, 'x']]);
  });

  test('step: local message types from the network and responses from non-members are ignored', () => {
    const s = storageWithPeers([1, 2, 3]);
    const rn = newRawNode(1, s);
    rn.step(msg({ type: MessageType.Hup, from: 2, to: 1 }));
    expect(rn.status().softState.state).toBe(StateType.Follower);
    rn.campaign();
    expect(rn.status().softState.state).toBe(StateType.PreCandidate);
    rn.step(msg({ type: MessageType.PreVoteResp, from: 9, to: 1, term: 1 }));
    rn.step(msg({ type: MessageType.PreVoteResp, from: 8, to: 1, term: 1 }));
    expect(rn.status().softState.state).toBe(StateType.PreCandidate);
    rn.step(msg({ type: MessageType.PreVoteResp, from: 2, to: 1, term: 1 }));
    expect(rn.status().softState.state).toBe(StateType.Candidate);
    rn.step(msg({ type: MessageType.VoteResp, from: 9, to: 1, term: 1 }));
    expect(rn.status().softState.state).toBe(StateType.Candidate);
    rn.step(msg({ type: MessageType.VoteResp, from: 2, to: 1, term: 1 }));
    expect(rn.status().softState.state).toBe(StateType.Leader);
  });

  test('status: the leader reports every member\'s progress', () => {
    const s = storageWithPeers([1, 2], [3]);
    const rn = newRawNode(1, s, { preVote: false });
    rn.campaign();
    expect(rn.status().progress.size).toBe(0); // not the leader yet
    rn.step(msg({ type: MessageType.VoteResp, from: 2, to: 1, term: 1 }));
    const st = rn.status();
    expect([...st.progress.keys()]).toEqual([1, 2, 3]);
    expect(st.progress.get(3)!.isLearner).toBe(true);
    expect(st.progress.get(1)!.match).toBe(1);
  });
});

// ============================================================================================== Configuration

describe('Configuration and injected randomness', () => {
  test('injecting a random() that returns a number outside [0, 1) trips an invariant (Config.random contract; §3.4 randomized timeouts)', () => {
    for (const bad of [1, 1.5, -0.1, NaN, Infinity]) {
      expect(() => newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3]), { random: () => bad })).toThrow(RaftInvariantError);
    }
    // A source that goes bad later is caught at its next use (the next election timeout reset).
    let calls = 0;
    const r = newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3]), { random: () => (calls++ === 0 ? 0.5 : 1) });
    expect(() => tickN(r, 2 * r.electionTimeout)).toThrow(RaftInvariantError);
    // The extremes of the valid range are fine.
    for (const ok of [0, 1 - Number.EPSILON]) {
      const q = newTestRaft(1, 10, 1, storageWithPeers([1, 2, 3]), { random: () => ok });
      expect(q.randomizedElectionTimeout).toBe(ok === 0 ? 10 : 19);
    }
  });

  test('invalid configurations are refused: id 0, heartbeat ≥ election, maxElectionTick ≤ electionTick, zero inflight, lease reads without CheckQuorum (etcd Config.validate)', () => {
    const s = storageWithPeers([1]);
    const base = { id: 1, electionTick: 10, heartbeatTick: 1, storage: s, random: seededRandom(1) };
    expect(() => new Raft({ ...base, id: 0 })).toThrow(RaftInvariantError);
    expect(() => new Raft({ ...base, heartbeatTick: 10 })).toThrow(RaftInvariantError);
    expect(() => new Raft({ ...base, maxElectionTick: 10 })).toThrow(RaftInvariantError);
    expect(() => new Raft({ ...base, maxInflightMsgs: 0 })).toThrow(RaftInvariantError);
    expect(() => new Raft({ ...base, readOnlyOption: ReadOnlyOption.LeaseBased, checkQuorum: false })).toThrow(RaftInvariantError);
    expect(() => new Raft({ ...base, readOnlyOption: ReadOnlyOption.LeaseBased })).not.toThrow(); // CheckQuorum defaults on
  });
});
