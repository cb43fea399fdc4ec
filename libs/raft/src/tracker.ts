/** Membership and per-member progress (etcd-io/raft tracker/tracker.go), single configuration. */
import { Progress } from './progress.js';
import { VoteResult, committedIndex, voteResult } from './quorum.js';
import { ConfState, NodeId } from './types.js';

export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(readonly maxInflight: number) {}

  confState(): ConfState {
    return {
      voters: [...this.voters].sort((a, b) => a - b),
      learners: [...this.learners].sort((a, b) => a - b),
    };
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  /** Visit members in id order (determinism does not depend on insertion order). */
  visit(fn: (id: NodeId, pr: Progress) => void): void {
    const ids = [...this.progress.keys()].sort((a, b) => a - b);
    for (const id of ids) fn(id, this.progress.get(id)!);
  }

  /** Highest index replicated on a majority of voters. */
  committed(): number {
    return committedIndex(this.voters, (id) => this.progress.get(id)?.match);
  }

  /** Whether a quorum of voters was recently active (CheckQuorum). */
  quorumActive(): boolean {
    return voteResult(this.voters, (id) => this.progress.get(id)?.recentActive) === VoteResult.Won;
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: voteResult(this.voters, (id) => this.votes.get(id)) };
  }
}
