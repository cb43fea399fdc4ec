/**
 * RawNode: the driver-facing wrapper of the Raft state machine (etcd-io/raft rawnode.go). It collects the
 * core's output into Ready batches and implements the ConsensusEngine boundary (engine.ts).
 */
import { encodeConfChange } from './codec.js';
import { Config } from './config.js';
import { EngineStatus, ConsensusEngine, PeerStatus } from './engine.js';
import { ProposalDroppedError, invariant } from './errors.js';
import { Raft } from './raft.js';
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
  Ready,
  SoftState,
  isEmptyHardState,
  isLocalMessage,
  isResponseMessage,
  msg,
} from './types.js';

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** A Ready needs an fdatasync when it carries entries or a changed term or vote (commit alone need not sync). */
export function mustSync(st: HardState, prev: HardState, entsNum: number): boolean {
  return entsNum !== 0 || st.vote !== prev.vote || st.term !== prev.term;
}

export class RawNode implements ConsensusEngine {
  readonly raft: Raft;
  private prevSoftSt: SoftState;
  private prevHardSt: HardState;
  /** Set between ready() and advance(): the driver may not take another Ready before it advances. */
  private inFlight = false;

  constructor(config: Config) {
    this.raft = new Raft(config);
    this.prevSoftSt = this.raft.softState();
    this.prevHardSt = this.raft.hardState();
  }

  /**
   * Initialise a brand-new member of a brand-new cluster with its initial voters: appends one AddNode entry
   * per peer at term 1 and commits them (they will be handed out as committed entries, and applying them
   * again is a no-op). Only valid on empty storage.
   */
  bootstrap(peers: NodeId[]): void {
    invariant(peers.length > 0, 'must provide at least one peer to bootstrap');
    invariant(this.raft.raftLog.lastIndex() === 0, 'can only bootstrap an empty log');
    invariant(this.raft.term === 0, 'can only bootstrap a node at term 0');
    const ents: Entry[] = peers.map((id, i) => ({
      term: 1,
      index: i + 1,
      type: EntryType.ConfChange,
      data: encodeConfChange({ type: ConfChangeType.AddNode, nodeId: id }),
    }));
    this.raft.becomeFollower(1, NONE);
    this.raft.raftLog.append(ents);
    this.raft.raftLog.committed = ents.length;
    for (const id of peers) this.raft.applyConfChange({ type: ConfChangeType.AddNode, nodeId: id });
  }

  tick(): void {
    this.raft.tick();
  }

  campaign(): void {
    this.raft.step(msg({ type: MessageType.Hup, from: this.raft.id }));
  }

  propose(data: Uint8Array): void {
    this.raft.step(
      msg({ type: MessageType.Prop, from: this.raft.id, entries: [{ term: 0, index: 0, type: EntryType.Normal, data }] }),
    );
  }

  proposeConfChange(cc: ConfChange): void {
    this.raft.step(
      msg({
        type: MessageType.Prop,
        from: this.raft.id,
        entries: [{ term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) }],
      }),
    );
  }

  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /** Feed a message from the network. Local message types and responses from non-members are ignored. */
  step(m: Message): void {
    if (isLocalMessage(m.type)) return;
    if (isResponseMessage(m.type) && !this.raft.trk.progress.has(m.from)) return;
    try {
      this.raft.step(m);
    } catch (e) {
      // A forwarded proposal that cannot be accepted is dropped; its proposer times out and retries.
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  }

  readIndex(ctx: Uint8Array): void {
    this.raft.step(msg({ type: MessageType.ReadIndex, context: ctx }));
  }

  transferLeader(to: NodeId): void {
    this.raft.step(msg({ type: MessageType.TransferLeader, from: to }));
  }

  reportUnreachable(id: NodeId): void {
    this.raft.step(msg({ type: MessageType.Unreachable, from: id }));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(msg({ type: MessageType.SnapStatus, from: id, reject: !ok }));
  }

  hasReady(): boolean {
    const r = this.raft;
    const ss = r.softState();
    if (ss.lead !== this.prevSoftSt.lead || ss.state !== this.prevSoftSt.state) return true;
    const hs = r.hardState();
    if (!isEmptyHardState(hs) && !hardStateEqual(hs, this.prevHardSt)) return true;
    if (r.raftLog.hasPendingSnapshot()) return true;
    if (r.msgs.length > 0 || r.raftLog.unstable.entries.length > 0 || r.raftLog.hasNextEnts()) return true;
    return r.readStates.length > 0;
  }

  ready(): Ready {
    invariant(!this.inFlight, 'ready() called again before advance()');
    const r = this.raft;
    const rd: Ready = {
      entries: r.raftLog.unstableEntries(),
      committedEntries: r.raftLog.nextEnts(),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: false,
    };
    const ss = r.softState();
    if (ss.lead !== this.prevSoftSt.lead || ss.state !== this.prevSoftSt.state) {
      rd.softState = ss;
      this.prevSoftSt = ss;
    }
    const hs = r.hardState();
    if (!hardStateEqual(hs, this.prevHardSt)) rd.hardState = hs;
    if (r.raftLog.unstable.snapshot) rd.snapshot = r.raftLog.unstable.snapshot;
    rd.mustSync = mustSync(hs, this.prevHardSt, rd.entries.length);
    r.msgs = [];
    r.readStates = [];
    this.inFlight = true;
    return rd;
  }

  /** The driver carried out `rd`: mark its entries stable and its committed entries applied. */
  advance(rd: Ready): void {
    invariant(this.inFlight, 'advance() without a ready()');
    this.inFlight = false;
    const r = this.raft;
    if (rd.hardState && !isEmptyHardState(rd.hardState)) this.prevHardSt = rd.hardState;
    r.reduceUncommittedSize(rd.committedEntries);
    let applied = 0;
    if (rd.committedEntries.length > 0) applied = rd.committedEntries[rd.committedEntries.length - 1].index;
    else if (rd.snapshot) applied = rd.snapshot.metadata.index;
    if (applied > 0) r.raftLog.appliedTo(applied);
    if (rd.entries.length > 0) {
      const e = rd.entries[rd.entries.length - 1];
      r.raftLog.stableTo(e.index, e.term);
    }
    if (rd.snapshot) r.raftLog.stableSnapTo(rd.snapshot.metadata.index);
  }

  status(): EngineStatus {
    const r = this.raft;
    const progress = new Map<NodeId, PeerStatus>();
    if (r.state === 'Leader') {
      r.trk.visit((id, pr) =>
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
        }),
      );
    }
    return {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.raftLog.applied,
      leadTransferee: r.leadTransferee,
      config: r.trk.confState(),
      progress,
    };
  }
}
