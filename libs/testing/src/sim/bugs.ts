/**
 * Test-only planted bugs. Each must be caught by the simulator's checkers (see test/bugs.spec.ts); none is
 * ever set outside the simulator and its tests.
 */
import { PlantedBugs } from '@app/raft';

export const BUG_NAMES = [
  'commit-old-term',
  'vote-without-log-check',
  'forget-vote-on-restart',
  'ack-before-fsync',
  'tree-double-apply',
  'tree-stale-tracker',
] as const;
export type BugName = (typeof BUG_NAMES)[number];

export function isBugName(s: string): s is BugName {
  return (BUG_NAMES as readonly string[]).includes(s);
}

/** Bugs that live in the tree mode (`--app tree`) and do nothing with the digest app. */
export const TREE_BUGS: readonly BugName[] = ['tree-double-apply', 'tree-stale-tracker'];

export interface BugSwitches {
  /** Passed to the engine's config. */
  core: PlantedBugs;
  /** The simulated disk forgets the vote when read back after a crash. */
  forgetVoteOnRestart: boolean;
  /** The driver sends a Ready's messages before fsyncing its writes. */
  ackBeforeFsync: boolean;
  /** Tree mode: the state machine wrapper applies a retried command again. */
  treeDoubleApply: boolean;
  /** Tree mode: a node that becomes leader again keeps its old session deadlines instead of resetting them. */
  treeStaleTracker: boolean;
}

export function bugSwitches(bug: BugName | undefined): BugSwitches {
  return {
    core: {
      ...(bug === 'commit-old-term' ? { commitOldTermByCount: true } : {}),
      ...(bug === 'vote-without-log-check' ? { voteWithoutLogCheck: true } : {}),
    },
    forgetVoteOnRestart: bug === 'forget-vote-on-restart',
    ackBeforeFsync: bug === 'ack-before-fsync',
    treeDoubleApply: bug === 'tree-double-apply',
    treeStaleTracker: bug === 'tree-stale-tracker',
  };
}

export const BUG_DESCRIPTIONS: Record<BugName, string> = {
  'commit-old-term': 'the leader commits an entry of an earlier term by counting its replicas (Raft §5.4.2, Figure 8)',
  'vote-without-log-check': 'a node grants its vote without checking the candidate log is up to date (§5.4.1)',
  'forget-vote-on-restart': 'the disk loses the vote when the node restarts (§5.1: vote must be durable)',
  'ack-before-fsync': 'the driver sends a Ready\'s messages before its writes are fsynced',
  'tree-double-apply': 'tree mode: the state machine applies a retried command (same clientId and seq) a second time',
  'tree-stale-tracker': 'tree mode: a re-elected leader keeps its old session deadlines instead of resetting from the checkpoints',
};
