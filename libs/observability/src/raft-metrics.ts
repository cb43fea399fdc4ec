/**
 * RaftMetrics: the synod_raft_* metrics of one member, registered in that member's Registry and fed by its
 * RaftNode through the observer hook:
 *
 *   const registry = createRegistry();
 *   const metrics = new RaftMetrics(registry);
 *   const node = new RaftNode({ ..., observer: metrics });
 *
 * Every value comes from the node's callbacks (no polling at scrape time); the node reports its recovered
 * term, commit, applied index and leader at start, and "no leader" when it stops or fails.
 */
import type { ElectionKind, ProposalFailureReason, RaftNodeObserver, SnapshotKind } from '@app/raft-node';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { METRICS } from './metric-names.js';
import { makeCounter, makeGauge, makeHistogram } from './registry.js';

const ELECTION_KINDS: readonly ElectionKind[] = ['pre_vote', 'vote'];
const FAILURE_REASONS: readonly ProposalFailureReason[] = ['dropped', 'timeout', 'stopped'];
const SNAPSHOT_KINDS: readonly SnapshotKind[] = ['take', 'install'];

export class RaftMetrics implements RaftNodeObserver {
  readonly hasLeader: Gauge;
  readonly isLeader: Gauge;
  readonly leaderChangesSeen: Counter;
  readonly electionsStarted: Counter<'kind'>;
  readonly term: Gauge;
  readonly commitIndex: Gauge;
  readonly appliedIndex: Gauge;
  readonly proposalsCommitted: Counter;
  readonly proposalsApplied: Counter;
  readonly proposalsFailed: Counter<'reason'>;
  readonly proposalsPending: Gauge;
  readonly proposalCommitDuration: Histogram;
  readonly walFsyncDuration: Histogram;
  readonly peerRoundTripTime: Histogram<'peer'>;
  readonly snapshotDuration: Histogram<'kind'>;
  private lastLeader = 0;

  constructor(readonly registry: Registry) {
    this.hasLeader = makeGauge(registry, METRICS.raftHasLeader);
    this.isLeader = makeGauge(registry, METRICS.raftIsLeader);
    this.leaderChangesSeen = makeCounter(registry, METRICS.raftLeaderChangesSeen);
    this.electionsStarted = makeCounter(registry, METRICS.raftElectionsStarted);
    this.term = makeGauge(registry, METRICS.raftTerm);
    this.commitIndex = makeGauge(registry, METRICS.raftCommitIndex);
    this.appliedIndex = makeGauge(registry, METRICS.raftAppliedIndex);
    this.proposalsCommitted = makeCounter(registry, METRICS.raftProposalsCommitted);
    this.proposalsApplied = makeCounter(registry, METRICS.raftProposalsApplied);
    this.proposalsFailed = makeCounter(registry, METRICS.raftProposalsFailed);
    this.proposalsPending = makeGauge(registry, METRICS.raftProposalsPending);
    this.proposalCommitDuration = makeHistogram(registry, METRICS.raftProposalCommitDuration);
    this.walFsyncDuration = makeHistogram(registry, METRICS.raftWalFsyncDuration);
    this.peerRoundTripTime = makeHistogram(registry, METRICS.raftPeerRoundTripTime);
    this.snapshotDuration = makeHistogram(registry, METRICS.raftSnapshotDuration);

    // Every series that can exist from the start does, at 0: rate() and increase() then see the first event.
    for (const g of [this.hasLeader, this.isLeader, this.term, this.commitIndex, this.appliedIndex, this.proposalsPending]) g.set(0);
    for (const c of [this.leaderChangesSeen, this.proposalsCommitted, this.proposalsApplied]) c.inc(0);
    for (const kind of ELECTION_KINDS) this.electionsStarted.inc({ kind }, 0);
    for (const reason of FAILURE_REASONS) this.proposalsFailed.inc({ reason }, 0);
    for (const kind of SNAPSHOT_KINDS) this.snapshotDuration.zero({ kind });
  }

  onLeaderChange(leader: number, term: number, isSelf: boolean): void {
    this.hasLeader.set(leader !== 0 ? 1 : 0);
    this.isLeader.set(isSelf ? 1 : 0);
    this.term.set(term);
    if (leader !== 0 && leader !== this.lastLeader) this.leaderChangesSeen.inc();
    if (leader !== 0) this.lastLeader = leader;
  }

  onElectionStarted(kind: ElectionKind): void {
    this.electionsStarted.inc({ kind });
  }

  onHardState(term: number, commit: number): void {
    this.term.set(term);
    this.commitIndex.set(commit);
  }

  onProposalsCommitted(count: number): void {
    this.proposalsCommitted.inc(count);
  }

  onProposalsApplied(count: number): void {
    this.proposalsApplied.inc(count);
  }

  onApplied(index: number): void {
    this.appliedIndex.set(index);
  }

  onProposalCompleted(seconds: number): void {
    this.proposalCommitDuration.observe(seconds);
  }

  onProposalFailed(reason: ProposalFailureReason): void {
    this.proposalsFailed.inc({ reason });
  }

  onProposalsPending(count: number): void {
    this.proposalsPending.set(count);
  }

  onFsync(seconds: number): void {
    this.walFsyncDuration.observe(seconds);
  }

  onRoundTrip(peer: number, seconds: number): void {
    this.peerRoundTripTime.observe({ peer: String(peer) }, seconds);
  }

  onSnapshot(kind: SnapshotKind, seconds: number): void {
    this.snapshotDuration.observe({ kind }, seconds);
  }
}
