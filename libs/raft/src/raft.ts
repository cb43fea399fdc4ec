/**
 * The Raft state machine (after etcd-io/raft raft.go). Pure and deterministic: driven only by `step()` and
 * `tick()`, with randomness injected through Config.random. Outgoing messages accumulate in `msgs` and are
 * collected by RawNode into Ready batches.
 *
 * Sections of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm",
 * extended version) are cited where a rule is implemented; the paper tests in libs/raft/test name them too.
 */
import { bytesEqual, decodeConfChange } from './codec.js';
import { Config, PlantedBugs, RaftLogger, ReadOnlyOption, resolveConfig } from './config.js';
import { CompactedError, ProposalDroppedError, invariant } from './errors.js';
import { NO_LIMIT, RaftLog } from './log.js';
import { Progress, ProgressState } from './progress.js';
import { VoteResult } from './quorum.js';
import { ReadOnly } from './readonly.js';
import { ProgressTracker } from './tracker.js';
import {
  ConfChange,
  ConfChangeType,
  ConfState,
  Entry,
  EntryType,
  HardState,
  Message,
  MessageType,
  NONE,
  NodeId,
  ReadState,
  Snapshot,
  SoftState,
  StateType,
  msg,
} from './types.js';

enum CampaignType {
  PreElection = 'PreElection',
  Election = 'Election',
  Transfer = 'Transfer',
}

/** Vote requests carrying this context come from a leadership transfer and bypass the leader lease. */
export const CAMPAIGN_TRANSFER_CTX = new Uint8Array([0x43, 0x54]); // "CT"

function voteRespMsgType(t: MessageType): MessageType {
  switch (t) {
    case MessageType.Vote:
      return MessageType.VoteResp;
    case MessageType.PreVote:
      return MessageType.PreVoteResp;
    default:
      throw new Error(`not a vote message: ${t}`);
  }
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  readStates: ReadState[] = [];
  raftLog: RaftLog;
  trk: ProgressTracker;
  state: StateType = StateType.Follower;
  /** Set when this node is a learner in the current configuration. */
  isLearner = false;
  msgs: Message[] = [];
  lead: NodeId = NONE;
  /** Leadership transfer target, while a transfer is in progress. */
  leadTransferee: NodeId = NONE;
  /** Only one conf change may be pending (in the log, not yet applied): its index. */
  pendingConfIndex = 0;
  /** Bytes of uncommitted entries appended by this leader (for maxUncommittedEntriesSize). */
  uncommittedSize = 0;
  readOnly: ReadOnly;
  /** Leader/candidate: ticks since the last election timeout. Follower: since last hearing from the leader. */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  checkQuorum: boolean;
  preVote: boolean;
  heartbeatTimeout: number;
  electionTimeout: number;
  maxElectionTimeout: number;
  /** Randomized in [electionTimeout, maxElectionTimeout) at every reset. */
  randomizedElectionTimeout = 0;
  private pendingReadIndexMessages: Message[] = [];
  private readonly maxMsgSize: number;
  private readonly maxUncommittedSize: number;
  private readonly random: () => number;
  private readonly logger: RaftLogger | undefined;
  readonly bugs: PlantedBugs;
  private tickFn: () => void;
  private stepFn: (m: Message) => void;

  constructor(c: Config) {
    const cfg = resolveConfig(c);
    this.id = cfg.id;
    this.raftLog = new RaftLog(cfg.storage, cfg.maxCommittedSizePerReady);
    this.maxMsgSize = cfg.maxSizePerMsg;
    this.maxUncommittedSize = cfg.maxUncommittedEntriesSize;
    this.trk = new ProgressTracker(cfg.maxInflightMsgs);
    this.electionTimeout = cfg.electionTick;
    this.maxElectionTimeout = cfg.maxElectionTick;
    this.heartbeatTimeout = cfg.heartbeatTick;
    this.checkQuorum = cfg.checkQuorum;
    this.preVote = cfg.preVote;
    this.readOnly = new ReadOnly(cfg.readOnlyOption);
    this.random = cfg.random;
    this.logger = cfg.logger;
    this.bugs = cfg.plantedBugs;
    this.tickFn = () => this.tickElection();
    this.stepFn = (m) => this.stepFollower(m);

    const { hardState, confState } = cfg.storage.initialState();
    this.restoreConfState(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (cfg.applied > 0) this.raftLog.appliedTo(cfg.applied);
    this.becomeFollower(this.term, NONE);
    this.info(
      `newRaft [peers: [${[...this.trk.voters].join(',')}], term: ${this.term}, commit: ${this.raftLog.committed}, applied: ${this.raftLog.applied}, lastindex: ${this.raftLog.lastIndex()}, lastterm: ${this.raftLog.lastTerm()}]`,
    );
  }

  // ---------------------------------------------------------------------------------------------- state

  softState(): SoftState {
    return { lead: this.lead, state: this.state };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  private loadState(hs: HardState): void {
    invariant(
      hs.commit >= this.raftLog.committed && hs.commit <= this.raftLog.lastIndex(),
      `${this.id} state.commit ${hs.commit} is out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
    );
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  private info(s: string): void {
    this.logger?.info(`raft ${this.id}: ${s}`);
  }

  private warn(s: string): void {
    this.logger?.warn(`raft ${this.id}: ${s}`);
  }

  /** A voter in the current configuration with no snapshot pending can campaign. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.raftLog.hasPendingSnapshot();
  }

  /**
   * A node that applied its own removal may still campaign as a caretaker: the remaining voters may not have
   * learned that the removal committed, and still need its vote, which it refuses when its log is longer
   * (simulator seeds 2057 and 2884, after a removed leader crashed before handing over). Elected by a
   * majority of the configuration in its own log (which excludes it), it leads only long enough to tell them
   * and hand leadership over (handOffLeadership). Election safety holds: every voter still votes once per
   * term for an up-to-date log. PreVote and the leader lease keep it from disrupting a healthy cluster.
   * A node that was never a member (empty configuration, or nothing in its log) never campaigns.
   */
  private removedCaretaker(): boolean {
    return (
      !this.trk.progress.has(this.id) &&
      this.trk.voters.size > 0 &&
      this.raftLog.lastIndex() > 0 &&
      !this.raftLog.hasPendingSnapshot()
    );
  }

  private canCampaign(): boolean {
    return this.promotable() || this.removedCaretaker();
  }

  // ---------------------------------------------------------------------------------------------- sending

  private send(m: Message): void {
    // A forwarded message (a proposal, a read, a transfer request) keeps its originator, as in etcd: a
    // TransferLeader's `from` is the transferee, which must survive forwarding from a follower to the leader.
    if (m.from === NONE) m.from = this.id;
    if (
      m.type === MessageType.Vote ||
      m.type === MessageType.VoteResp ||
      m.type === MessageType.PreVote ||
      m.type === MessageType.PreVoteResp
    ) {
      // Vote messages carry the term they are for (a PreVote carries the future term).
      invariant(m.term !== 0, `term should be set when sending ${m.type}`);
    } else {
      invariant(m.term === 0, `term should not be set when sending ${m.type} (was ${m.term})`);
      // Proposals and read requests are forwarded as local messages with no term.
      if (m.type !== MessageType.Prop && m.type !== MessageType.ReadIndex) m.term = this.term;
    }
    this.msgs.push(m);
  }

  sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Send an append (or a snapshot when the needed entries are compacted) to `to`. With sendIfEmpty false,
   * nothing is sent when there are no new entries. Returns whether a message was sent.
   */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    let term: number;
    let ents: Entry[];
    try {
      term = this.raftLog.term(pr.next - 1);
      ents = this.raftLog.entries(pr.next, this.maxMsgSize);
    } catch (e) {
      if (!(e instanceof CompactedError)) throw e;
      return this.sendSnapshot(to, pr);
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send(
      msg({
        type: MessageType.App,
        to,
        index: pr.next - 1,
        logTerm: term,
        entries: ents,
        commit: this.raftLog.committed,
      }),
    );
    if (ents.length > 0) pr.sentEntries(ents.length, ents[ents.length - 1].index);
    else pr.sentEntries(0, pr.next - 1);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false; // do not send a snapshot to a peer that may be down
    const snapshot: Snapshot = this.raftLog.snapshot();
    invariant(snapshot.metadata.index > 0, 'need non-empty snapshot');
    this.info(
      `[firstindex: ${this.raftLog.firstIndex()}, commit: ${this.raftLog.committed}] sent snapshot[index: ${snapshot.metadata.index}, term: ${snapshot.metadata.term}] to ${to}`,
    );
    pr.becomeSnapshot(snapshot.metadata.index);
    this.send(msg({ type: MessageType.Snap, to, snapshot }));
    return true;
  }

  private sendHeartbeat(to: NodeId, ctx: Uint8Array | undefined): void {
    // A follower may not have all entries up to the leader's commit: never tell it to commit beyond match.
    const pr = this.trk.progress.get(to)!;
    const commit = Math.min(pr.match, this.raftLog.committed);
    this.send(msg({ type: MessageType.Heartbeat, to, commit, context: ctx }));
  }

  bcastAppend(): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendAppend(id);
    });
  }

  bcastHeartbeat(): void {
    this.bcastHeartbeatWithCtx(this.readOnly.lastPendingRequestCtx());
  }

  private bcastHeartbeatWithCtx(ctx: Uint8Array | undefined): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendHeartbeat(id, ctx);
    });
  }

  // ---------------------------------------------------------------------------------------------- commit

  /** Advance the commit index to what a majority matched (§5.3), only via an entry of the current term (§5.4.2). */
  maybeCommit(): boolean {
    const mci = this.trk.committed();
    if (this.bugs.commitOldTermByCount) {
      // PLANTED BUG (tests only): commit by counting replicas regardless of the entry's term (Figure 8).
      if (mci !== Infinity && mci > this.raftLog.committed) {
        this.raftLog.commitTo(mci);
        return true;
      }
      return false;
    }
    if (mci === Infinity) return false;
    return this.raftLog.maybeCommit(mci, this.term);
  }

  // ---------------------------------------------------------------------------------------------- roles

  reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.raftLog.lastIndex();
    this.trk.visit((id, pr) => {
      const fresh = new Progress(this.trk.maxInflight, pr.isLearner, last + 1);
      if (id === this.id) fresh.match = last;
      this.trk.progress.set(id, fresh);
    });
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly(this.readOnly.option);
  }

  private resetRandomizedElectionTimeout(): void {
    const span = this.maxElectionTimeout - this.electionTimeout;
    const r = this.random();
    invariant(r >= 0 && r < 1, `injected random() must return a number in [0, 1), got ${r}`);
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(r * span);
  }

  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.stepFn = (m) => this.stepFollower(m);
    this.reset(term);
    this.tickFn = () => this.tickElection();
    this.lead = lead;
    this.state = StateType.Follower;
    this.info(`became follower at term ${this.term}`);
  }

  becomeCandidate(): void {
    invariant(this.state !== StateType.Leader, 'invalid transition [leader -> candidate]');
    this.stepFn = (m) => this.stepCandidate(m);
    this.reset(this.term + 1);
    this.tickFn = () => this.tickElection();
    this.vote = this.id;
    this.state = StateType.Candidate;
    this.info(`became candidate at term ${this.term}`);
  }

  becomePreCandidate(): void {
    invariant(this.state !== StateType.Leader, 'invalid transition [leader -> pre-candidate]');
    // A pre-candidate changes neither its term nor its vote (Raft thesis §9.6).
    this.stepFn = (m) => this.stepCandidate(m);
    this.trk.resetVotes();
    this.tickFn = () => this.tickElection();
    this.lead = NONE;
    this.state = StateType.PreCandidate;
    this.info(`became pre-candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    invariant(this.state !== StateType.Follower, 'invalid transition [follower -> leader]');
    this.stepFn = (m) => this.stepLeader(m);
    this.reset(this.term);
    this.tickFn = () => this.tickHeartbeat();
    this.lead = this.id;
    this.state = StateType.Leader;
    // The leader's own progress is always replicating: it writes its own entries.
    this.trk.progress.get(this.id)?.becomeReplicate();
    const ok = this.appendEntry([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    invariant(ok, 'empty entry was dropped');
    // No conf change may be proposed until this leader has applied its no-op (and so everything before it):
    // the "no-op before config" rule that makes single-server changes safe across leader changes. (etcd sets
    // this to the last index *before* the no-op, which lets a leader whose earlier entries are all applied
    // propose a change before it has committed anything in its own term.)
    this.pendingConfIndex = this.raftLog.lastIndex();
    this.uncommittedSize = 0; // the no-op does not count against the uncommitted budget
    this.info(`became leader at term ${this.term}`);
    // A caretaker leader (not a voter of its own configuration) hands over at once.
    const self = this.trk.progress.get(this.id);
    if (!self || self.isLearner) this.handOffLeadership();
  }

  // ---------------------------------------------------------------------------------------------- ticks

  tick(): void {
    this.tickFn();
  }

  /** Followers and candidates: start an election when the randomized timeout passes (§5.2). */
  private tickElection(): void {
    this.electionElapsed++;
    if (this.canCampaign() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(msg({ type: MessageType.Hup, from: this.id }));
    }
  }

  /** Leaders: send heartbeats every heartbeatTimeout; check quorum every electionTimeout. */
  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(msg({ type: MessageType.CheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.state === StateType.Leader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
      // A leader removed from the voters keeps trying to hand over until someone takes over.
      const self = this.trk.progress.get(this.id);
      if (this.state === StateType.Leader && (!self || self.isLearner)) this.handOffLeadership();
    }
    if (this.state !== StateType.Leader) return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(msg({ type: MessageType.Beat, from: this.id }));
    }
  }

  // ---------------------------------------------------------------------------------------------- elections

  private hup(t: CampaignType): void {
    if (this.state === StateType.Leader) return;
    if (!this.canCampaign()) {
      this.warn('is unpromotable and can not campaign');
      return;
    }
    // Do not campaign while committed conf changes are waiting to be applied: our view of the membership
    // would be out of date.
    if (this.raftLog.committed > this.raftLog.applied) {
      const ents = this.raftLog.slice(this.raftLog.applied + 1, this.raftLog.committed + 1, NO_LIMIT);
      const pending = ents.filter((e) => e.type === EntryType.ConfChange).length;
      if (pending > 0) {
        this.warn(`cannot campaign at term ${this.term} since there are still ${pending} pending configuration changes to apply`);
        return;
      }
    }
    this.campaign(t);
  }

  private campaign(t: CampaignType): void {
    if (!this.canCampaign()) return;
    let term: number;
    let voteMsg: MessageType;
    if (t === CampaignType.PreElection) {
      this.becomePreCandidate();
      voteMsg = MessageType.PreVote;
      term = this.term + 1; // PreVote RPCs are sent for the next term before we've incremented it
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, voteRespMsgType(voteMsg), true) === VoteResult.Won) {
      // Single-node cluster: we won by voting for ourselves.
      if (t === CampaignType.PreElection) this.campaign(CampaignType.Election);
      else this.becomeLeader();
      return;
    }
    const voters = [...this.trk.voters].sort((a, b) => a - b);
    for (const id of voters) {
      if (id === this.id) continue;
      this.info(
        `[logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}] sent ${voteMsg} request to ${id} at term ${this.term}`,
      );
      this.send(
        msg({
          type: voteMsg,
          to: id,
          term,
          index: this.raftLog.lastIndex(),
          logTerm: this.raftLog.lastTerm(),
          context: t === CampaignType.Transfer ? CAMPAIGN_TRANSFER_CTX : undefined,
        }),
      );
    }
  }

  private poll(id: NodeId, t: MessageType, granted: boolean): VoteResult {
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes().result;
  }

  // ---------------------------------------------------------------------------------------------- step

  /** Handle one message. Throws ProposalDroppedError for a proposal that cannot be accepted. */
  step(m: Message): void {
    // Term handling common to every role (§5.1: a higher term makes us follow; stale terms are refused).
    if (m.term === 0) {
      // local message
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER_CTX);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a current leader within the minimum election timeout: ignore the disruptive
          // candidate (Raft thesis §4.2.3) without updating our term or granting a vote.
          this.info(`ignored ${m.type} from ${m.from} at term ${m.term}: lease is not expired (leader ${this.lead})`);
          return;
        }
      }
      if (m.type === MessageType.PreVote) {
        // Never change our term in response to a PreVote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the future term; we bump our term only when we win the pre-election.
      } else {
        this.info(`received a ${m.type} message with higher term from ${m.from} [term: ${m.term}]`);
        if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
          this.becomeFollower(m.term, m.from);
        } else {
          this.becomeFollower(m.term, NONE);
        }
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A leader partitioned away would otherwise never learn it was deposed (with CheckQuorum the rest of
        // the cluster ignores its lower-term messages, with PreVote it cannot bump its term): answer so it
        // steps down.
        this.send(msg({ type: MessageType.AppResp, to: m.from }));
      } else if (m.type === MessageType.PreVote) {
        this.send(msg({ type: MessageType.PreVoteResp, to: m.from, term: this.term, reject: true }));
      }
      // otherwise: ignore a stale message
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.preVote ? CampaignType.PreElection : CampaignType.Election);
        return;
      case MessageType.Vote:
      case MessageType.PreVote: {
        // §5.2, §5.4.1: vote for at most one candidate per term, and only for one whose log is at least as
        // up to date as ours.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.PreVote && m.term > this.term);
        const upToDate = this.bugs.voteWithoutLogCheck || this.raftLog.isUpToDate(m.index, m.logTerm);
        if (canVote && upToDate) {
          this.info(`cast ${m.type} for ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`);
          // The response carries the term of the request (not ours) so a pre-candidate can count it.
          this.send(msg({ type: voteRespMsgType(m.type), to: m.from, term: m.term }));
          if (m.type === MessageType.Vote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.send(msg({ type: voteRespMsgType(m.type), to: m.from, term: this.term, reject: true }));
        }
        return;
      }
      default:
        this.stepFn(m);
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat();
        return;
      case MessageType.CheckQuorum: {
        const self = this.trk.progress.get(this.id);
        if (self) self.recentActive = true;
        if (!this.trk.quorumActive()) {
          this.warn('stepped down to follower since quorum is not active');
          this.becomeFollower(this.term, NONE);
        }
        // Mark everyone (but ourselves) inactive for the next round.
        this.trk.visit((id, pr) => {
          if (id !== this.id) pr.recentActive = false;
        });
        return;
      }
      case MessageType.Prop: {
        invariant(m.entries.length > 0, `${this.id} stepped empty MsgProp`);
        if (!this.trk.progress.has(this.id)) throw new ProposalDroppedError('this leader was removed from the configuration');
        if (this.leadTransferee !== NONE) throw new ProposalDroppedError(`leadership transfer to ${this.leadTransferee} in progress`);
        for (let i = 0; i < m.entries.length; i++) {
          const e = m.entries[i];
          if (e.type !== EntryType.ConfChange) continue;
          if (this.pendingConfIndex > this.raftLog.applied) {
            throw new ProposalDroppedError(
              `a configuration change is already pending (index ${this.pendingConfIndex}, applied ${this.raftLog.applied}); one change at a time`,
            );
          }
          this.checkConfChange(decodeConfChange(e.data));
          this.pendingConfIndex = this.raftLog.lastIndex() + i + 1;
        }
        if (!this.appendEntry(m.entries)) throw new ProposalDroppedError('too many uncommitted entries');
        this.bcastAppend();
        return;
      }
      case MessageType.ReadIndex: {
        if (this.trk.isSingleton()) {
          // Nobody to confirm leadership with: the commit index is linearizable as it is.
          this.respondToReadIndex(m, this.raftLog.committed);
          return;
        }
        // §6.4: the leader must have committed an entry of its term before it knows the latest commit index.
        if (!this.committedEntryInCurrentTerm()) {
          this.pendingReadIndexMessages.push(m);
          return;
        }
        this.sendMsgReadIndexResponse(m);
        return;
      }
    }

    // All other messages need the sender's progress.
    const pr = this.trk.progress.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.AppResp:
        pr.recentActive = true;
        if (m.reject) {
          // Fast back-off: skip every entry of a term the follower cannot have (§5.3).
          let nextProbeIdx = m.rejectHint;
          if (m.logTerm > 0) nextProbeIdx = this.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index;
          if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
            if (pr.state === ProgressState.Replicate) pr.becomeProbe();
            this.sendAppend(m.from);
          }
        } else {
          const oldPaused = pr.isPaused();
          if (pr.maybeUpdate(m.index)) {
            if (pr.state === ProgressState.Probe) {
              pr.becomeReplicate();
            } else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
              pr.becomeProbe();
              pr.becomeReplicate();
            } else if (pr.state === ProgressState.Replicate) {
              pr.inflights.freeLE(m.index);
            }
            if (this.maybeCommit()) {
              this.releasePendingReadIndexMessages();
              this.bcastAppend();
            } else if (oldPaused) {
              this.sendAppend(m.from);
            }
            // Send as much as flow control allows.
            while (this.maybeSendAppend(m.from, false)) {
              /* keep sending */
            }
            if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
              this.info(`sent TimeoutNow to ${m.from} after received AppResp`);
              this.sendTimeoutNow(m.from);
            }
          }
        }
        return;
      case MessageType.HeartbeatResp: {
        pr.recentActive = true;
        pr.msgAppFlowPaused = false;
        // Free one slot of a full window, so that a follower whose in-flight appends were all lost is probed
        // again (its rejection sends it back to Probe); otherwise replication to it would stall for good.
        if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.raftLog.lastIndex()) this.sendAppend(m.from);
        if (this.readOnly.option !== ReadOnlyOption.Safe || !m.context || m.context.length === 0) return;
        const acks = this.readOnly.recvAck(m.from, m.context);
        if (!acks) return;
        let granted = 0;
        for (const id of this.trk.voters) if (acks.has(id)) granted++;
        if (granted < Math.floor(this.trk.voters.size / 2) + 1) return;
        for (const rs of this.readOnly.advance(m)) this.respondToReadIndex(rs.req, rs.index);
        return;
      }
      case MessageType.SnapStatus:
        if (pr.state !== ProgressState.Snapshot) return;
        if (m.reject) pr.pendingSnapshot = 0; // failed: retry from probe
        pr.becomeProbe();
        // Wait for an AppResp or heartbeat response before sending the next append.
        pr.msgAppFlowPaused = true;
        return;
      case MessageType.Unreachable:
        // During optimistic replication the stream may have lost messages: probe again.
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        return;
      case MessageType.TransferLeader: {
        if (pr.isLearner) {
          this.info(`ignored transferring leadership to learner ${m.from}`);
          return;
        }
        const transferee = m.from;
        if (this.leadTransferee !== NONE) {
          if (this.leadTransferee === transferee) return; // already in progress
          this.abortLeaderTransfer();
        }
        if (transferee === this.id) return; // already leader
        // The transfer must finish within one election timeout, so reset the clock.
        this.electionElapsed = 0;
        this.leadTransferee = transferee;
        if (pr.match === this.raftLog.lastIndex()) {
          this.sendTimeoutNow(transferee);
        } else {
          this.sendAppend(transferee);
        }
        return;
      }
    }
  }

  private stepCandidate(m: Message): void {
    // A pre-candidate only counts PreVoteResp, a candidate only VoteResp: a late response from the other
    // phase must not be counted.
    const myVoteRespType = this.state === StateType.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.Prop:
        throw new ProposalDroppedError(`no leader at term ${this.term} (election in progress)`);
      case MessageType.App:
        this.becomeFollower(m.term, m.from); // always m.term === this.term
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case myVoteRespType: {
        const res = this.poll(m.from, m.type, !m.reject);
        if (res === VoteResult.Won) {
          if (this.state === StateType.PreCandidate) {
            this.campaign(CampaignType.Election);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (res === VoteResult.Lost) {
          // A PreVoteResp carries the future term of the pre-candidate: keep our own term.
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      case MessageType.TimeoutNow:
        return; // ignored while campaigning
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Prop:
        if (this.lead === NONE) throw new ProposalDroppedError(`no leader at term ${this.term}`);
        m.to = this.lead;
        this.send(m);
        return;
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead === NONE) {
          this.info(`no leader at term ${this.term}; dropping leader transfer msg`);
          return;
        }
        m.to = this.lead;
        this.send(m);
        return;
      case MessageType.TimeoutNow:
        // Leadership transfers never use pre-vote: the old leader asked us to take over.
        this.info(`received TimeoutNow from ${m.from} at term ${this.term}, starting a transfer campaign`);
        this.hup(CampaignType.Transfer);
        return;
      case MessageType.ReadIndex:
        if (this.lead === NONE) {
          this.info(`no leader at term ${this.term}; dropping index reading msg`);
          return;
        }
        m.to = this.lead;
        this.send(m);
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, requestCtx: m.context ?? new Uint8Array(0) });
        return;
    }
  }

  // ---------------------------------------------------------------------------------------------- handlers

  /** §5.3: AppendEntries consistency check, conflict truncation, commit update. */
  handleAppendEntries(m: Message): void {
    if (m.index < this.raftLog.committed) {
      this.send(msg({ type: MessageType.AppResp, to: m.from, index: this.raftLog.committed }));
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(msg({ type: MessageType.AppResp, to: m.from, index: lastNew }));
      return;
    }
    // Reject with a hint: the largest index ≤ min(m.index, lastIndex) whose term ≤ m.logTerm, so the leader
    // can skip a whole mismatched term in one round trip.
    const hintIndex = Math.min(m.index, this.raftLog.lastIndex());
    const hint = this.raftLog.findConflictByTerm(hintIndex, m.logTerm);
    this.info(
      `[logterm: ${this.raftLog.termOrZero(m.index)}, index: ${m.index}] rejected App [logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`,
    );
    this.send(
      msg({ type: MessageType.AppResp, to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term }),
    );
  }

  handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(m.commit);
    this.send(msg({ type: MessageType.HeartbeatResp, to: m.from, context: m.context }));
  }

  handleSnapshot(m: Message): void {
    const s = m.snapshot!;
    if (this.restore(s)) {
      this.info(`[commit: ${this.raftLog.committed}] restored snapshot [index: ${s.metadata.index}, term: ${s.metadata.term}]`);
      this.send(msg({ type: MessageType.AppResp, to: m.from, index: this.raftLog.lastIndex() }));
    } else {
      this.info(`[commit: ${this.raftLog.committed}] ignored snapshot [index: ${s.metadata.index}, term: ${s.metadata.term}]`);
      this.send(msg({ type: MessageType.AppResp, to: m.from, index: this.raftLog.committed }));
    }
  }

  /** Install a snapshot received from the leader. Returns false if it is stale or not applicable. */
  restore(s: Snapshot): boolean {
    if (s.metadata.index <= this.raftLog.committed) return false;
    invariant(this.state === StateType.Follower, `non-follower attempted to restore snapshot (state ${this.state})`);
    const cs = s.metadata.confState;
    if (!cs.voters.includes(this.id) && !cs.learners.includes(this.id)) {
      this.warn(`attempted to restore snapshot but it is not in the ConfState ${JSON.stringify(cs)}; should never happen`);
      return false;
    }
    // If our log already has the snapshot's last entry, just fast-forward the commit index.
    if (this.raftLog.matchTerm(s.metadata.index, s.metadata.term)) {
      this.raftLog.commitTo(s.metadata.index);
      return false;
    }
    this.raftLog.restore(s);
    this.trk = new ProgressTracker(this.trk.maxInflight);
    this.restoreConfState(cs);
    return true;
  }

  /** Build the tracker from a snapshot's (or storage's) configuration. */
  private restoreConfState(cs: ConfState): void {
    const next = this.raftLog.lastIndex() + 1;
    for (const id of cs.voters) this.addProgress(id, false, next);
    for (const id of cs.learners) this.addProgress(id, true, next);
    const self = this.trk.progress.get(this.id);
    this.isLearner = self?.isLearner ?? false;
    if (self) self.maybeUpdate(self.next - 1);
  }

  private addProgress(id: NodeId, isLearner: boolean, next: number): void {
    const pr = new Progress(this.trk.maxInflight, isLearner, next);
    // A newly added member counts as active, so CheckQuorum does not step the leader down before it answers.
    pr.recentActive = true;
    this.trk.progress.set(id, pr);
    if (isLearner) {
      this.trk.voters.delete(id);
      this.trk.learners.add(id);
    } else {
      this.trk.learners.delete(id);
      this.trk.voters.add(id);
    }
  }

  // ---------------------------------------------------------------------------------------------- proposals

  /** Append entries to the leader's log, assigning term and index. Returns false when over the size budget. */
  appendEntry(es: Entry[]): boolean {
    const li = this.raftLog.lastIndex();
    const ents = es.map((e, i) => ({ ...e, term: this.term, index: li + 1 + i }));
    if (!this.increaseUncommittedSize(ents)) {
      this.warn('appending new entries to log would exceed uncommitted entry size limit; dropping proposal');
      return false;
    }
    invariant(this.state === StateType.Leader, 'only a leader appends new entries');
    // Leader Append-Only (§5.3): a leader only ever appends after its last index.
    const newLast = this.raftLog.append(ents);
    invariant(newLast === li + ents.length, `leader append did not extend the log: ${li} + ${ents.length} != ${newLast}`);
    this.trk.progress.get(this.id)?.maybeUpdate(newLast);
    // Regardless of maybeCommit's return, our caller will call bcastAppend.
    this.maybeCommit();
    return true;
  }

  private increaseUncommittedSize(ents: Entry[]): boolean {
    let s = 0;
    for (const e of ents) s += e.data.length;
    if (this.maxUncommittedSize > 0 && this.uncommittedSize > 0 && s > 0 && this.uncommittedSize + s > this.maxUncommittedSize) {
      return false;
    }
    this.uncommittedSize += s;
    return true;
  }

  reduceUncommittedSize(ents: Entry[]): void {
    if (this.uncommittedSize === 0) return;
    let s = 0;
    for (const e of ents) s += e.data.length;
    this.uncommittedSize = s > this.uncommittedSize ? 0 : this.uncommittedSize - s;
  }

  // ---------------------------------------------------------------------------------------------- reads

  private committedEntryInCurrentTerm(): boolean {
    return this.raftLog.termOrZero(this.raftLog.committed) === this.term;
  }

  private sendMsgReadIndexResponse(m: Message): void {
    if (this.readOnly.option === ReadOnlyOption.Safe) {
      this.readOnly.addRequest(this.raftLog.committed, m);
      // The leader acknowledges itself.
      this.readOnly.recvAck(this.id, m.context);
      this.bcastHeartbeatWithCtx(m.context);
    } else {
      this.respondToReadIndex(m, this.raftLog.committed);
    }
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of msgs) this.sendMsgReadIndexResponse(m);
  }

  private respondToReadIndex(req: Message, readIndex: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index: readIndex, requestCtx: req.context ?? new Uint8Array(0) });
      return;
    }
    this.send(msg({ type: MessageType.ReadIndexResp, to: req.from, index: readIndex, context: req.context }));
  }

  // ---------------------------------------------------------------------------------------------- transfer

  private sendTimeoutNow(to: NodeId): void {
    this.send(msg({ type: MessageType.TimeoutNow, to }));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // ---------------------------------------------------------------------------------------------- membership

  /** Refuse changes that would leave no voter or make no sense, before they enter the log. */
  private checkConfChange(cc: ConfChange): void {
    if (cc.type === ConfChangeType.RemoveNode || cc.type === ConfChangeType.AddLearnerNode) {
      const voters = new Set(this.trk.voters);
      voters.delete(cc.nodeId);
      if (voters.size === 0) throw new ProposalDroppedError(`removing voter ${cc.nodeId} would leave no voters`);
    }
  }

  /**
   * Apply a committed membership change (one voter added or removed at a time; Raft thesis §4.1). Learners
   * are added with AddLearnerNode and promoted with AddNode. Returns the new configuration.
   */
  applyConfChange(cc: ConfChange): ConfState {
    const next = this.raftLog.lastIndex() + 1;
    switch (cc.type) {
      case ConfChangeType.AddNode: {
        const pr = this.trk.progress.get(cc.nodeId);
        if (pr && !pr.isLearner) break; // already a voter: idempotent
        if (pr) {
          pr.isLearner = false;
          this.trk.learners.delete(cc.nodeId);
          this.trk.voters.add(cc.nodeId);
        } else {
          this.addProgress(cc.nodeId, false, next);
        }
        break;
      }
      case ConfChangeType.AddLearnerNode: {
        const pr = this.trk.progress.get(cc.nodeId);
        if (pr && pr.isLearner) break;
        if (pr) {
          if (this.trk.voters.size <= 1) {
            this.warn(`refused to demote the last voter ${cc.nodeId}`);
            break;
          }
          pr.isLearner = true;
          this.trk.voters.delete(cc.nodeId);
          this.trk.learners.add(cc.nodeId);
        } else {
          this.addProgress(cc.nodeId, true, next);
        }
        break;
      }
      case ConfChangeType.RemoveNode:
        if (this.trk.voters.has(cc.nodeId) && this.trk.voters.size <= 1) {
          this.warn(`refused to remove the last voter ${cc.nodeId}`);
          break;
        }
        this.trk.progress.delete(cc.nodeId);
        this.trk.voters.delete(cc.nodeId);
        this.trk.learners.delete(cc.nodeId);
        this.trk.votes.delete(cc.nodeId);
        break;
    }
    return this.switchToConfig();
  }

  /** A leader that is no longer a voter transfers leadership to the remaining voter with the highest match. */
  private handOffLeadership(): void {
    if (this.leadTransferee !== NONE && this.trk.voters.has(this.leadTransferee)) return;
    let best: NodeId = NONE;
    let bestMatch = -1;
    for (const id of [...this.trk.voters].sort((a, b) => a - b)) {
      const pr = this.trk.progress.get(id)!;
      if (id !== this.id && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best === NONE) return;
    this.info(`no longer a voter: handing leadership to ${best} (match ${bestMatch})`);
    this.electionElapsed = 0;
    this.leadTransferee = best;
    if (bestMatch === this.raftLog.lastIndex()) this.sendTimeoutNow(best);
    else this.sendAppend(best);
  }

  private switchToConfig(): ConfState {
    const cs = this.trk.confState();
    const self = this.trk.progress.get(this.id);
    this.isLearner = self?.isLearner ?? false;
    if ((!self || self.isLearner) && this.state === StateType.Leader) {
      // A leader removed or demoted no longer counts toward quorums but keeps leading until it has handed
      // over (Raft thesis §4.2.2). Stepping down at once (etcd's StepDownOnRemoval) can deadlock: if the
      // remaining voters have not yet learned that the removal committed, they still need this node's vote,
      // which it refuses when its log is longer (simulator seeds 198 and 414). So: commit what the new quorum
      // allows, tell everyone, and transfer leadership to the most up-to-date remaining voter.
      this.maybeCommit();
      this.bcastAppend();
      this.handOffLeadership();
      return cs;
    }
    if (this.state !== StateType.Leader || cs.voters.length === 0) return cs;
    // The quorum may have changed: maybe commit more; bring any new member up to date.
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else {
      this.trk.visit((id) => {
        if (id !== this.id) this.maybeSendAppend(id, false);
      });
    }
    if (this.leadTransferee !== NONE && !this.trk.voters.has(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /** Test helper: read and clear outgoing messages. */
  readMessages(): Message[] {
    const m = this.msgs;
    this.msgs = [];
    return m;
  }
}
