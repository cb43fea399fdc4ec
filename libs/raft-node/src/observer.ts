/**
 * What a RaftNode reports about itself while it runs: leadership, elections, indexes, proposals, WAL
 * fdatasync latency, peer round trips and snapshots. `RaftNodeOptions.observer` takes one; the Prometheus
 * binding (`RaftMetrics` in @app/observability) implements it, and so can a test or a logger. This interface
 * has no dependency on any metrics library.
 *
 * Every callback is optional and is called synchronously from the node's event-loop turn that observed the
 * event (most from the Ready loop), so it must be cheap. A callback that throws is logged and ignored: it
 * never fails the node.
 */
import { NodeId } from '@app/raft';
import { FileOps, observeDatasync } from '@app/storage';

/** `pre_vote`: a PreVote round (no term change); `vote`: a real election (the term was raised). */
export type ElectionKind = 'pre_vote' | 'vote';

/**
 * Why one of this node's proposals did not complete: `dropped` (the core refused it: no leader known,
 * transfer in progress, too many uncommitted entries), `timeout` (not applied within proposalTimeoutMs:
 * outcome unknown), `stopped` (the node stopped or failed first).
 */
export type ProposalFailureReason = 'dropped' | 'timeout' | 'stopped';

/** `take`: this node snapshotted its state machine; `install`: it installed a snapshot from its leader. */
export type SnapshotKind = 'take' | 'install';

export interface RaftNodeObserver {
  /**
   * The leader this node knows changed (`leader` 0: none known). Also called once at start with the
   * recovered state, and with leader 0 when the node stops or fails.
   */
  onLeaderChange?(leader: NodeId, term: number, isSelf: boolean): void;
  /** This node started a campaign: a soft-state transition to PreCandidate (`pre_vote`) or Candidate
   * (`vote`), or a new round of (Pre)Vote requests while already in that state (an election that timed out). */
  onElectionStarted?(kind: ElectionKind): void;
  /** The hard state changed (and once at start). */
  onHardState?(term: number, commit: number): void;
  /** Command entries (anyone's) this node learned are committed, counted when the Ready carrying them is
   * taken, before they are persisted and applied. */
  onProposalsCommitted?(count: number): void;
  /** Command entries (anyone's) applied to this node's state machine. */
  onProposalsApplied?(count: number): void;
  /** The applied index moved (entries or an installed snapshot); once at start with the snapshot's index. */
  onApplied?(index: number): void;
  /** One of THIS node's proposals was applied here: `seconds` from propose() to applied (commit latency as
   * the proposer sees it; includes forwarding to the leader when proposed on a follower). */
  onProposalCompleted?(seconds: number): void;
  /** One of this node's proposals failed. */
  onProposalFailed?(reason: ProposalFailureReason): void;
  /** The number of this node's proposals waiting to be applied changed. */
  onProposalsPending?(count: number): void;
  /** One fdatasync of a WAL file completed after `seconds`. */
  onFsync?(seconds: number): void;
  /**
   * Round trip to `peer` measured by the leader: from handing a Heartbeat to the transport to receiving
   * the matching HeartbeatResp (it includes the follower's Ready turn, as Raft sees it).
   */
  onRoundTrip?(peer: NodeId, seconds: number): void;
  /** A snapshot was taken (state machine snapshot + durable save + compaction) or installed (durable save +
   * restore). */
  onSnapshot?(kind: SnapshotKind, seconds: number): void;
}

/** Wraps `base` so that every `datasync()` of a file it opens reports its duration. */
export function timedFileOps(base: FileOps, onSync: (seconds: number) => void): FileOps {
  return observeDatasync(base, onSync);
}

/**
 * Matches Heartbeats to their HeartbeatResps per peer, on links that deliver in order (the in-memory hub and
 * a peer stream do; followers answer every heartbeat). One heartbeat at a time is timed: when it is sent,
 * the number of earlier heartbeats still unanswered is noted, and the response after that many others is
 * its own. A lost heartbeat or response would shift the count: an unreachable report resets the peer, and
 * so does a timed heartbeat left unanswered for `staleMs` (its measurement is dropped).
 */
export class RoundTripProbe {
  private readonly peers = new Map<NodeId, { outstanding: number; probeAt: number | undefined; skip: number }>();

  constructor(private readonly staleMs: number) {}

  /** A Heartbeat to `peer` is handed to the transport at `now` (ms). */
  sent(peer: NodeId, now: number): void {
    let p = this.peers.get(peer);
    if (!p) {
      p = { outstanding: 0, probeAt: undefined, skip: 0 };
      this.peers.set(peer, p);
    }
    if (p.probeAt !== undefined && now - p.probeAt > this.staleMs) {
      p.outstanding = 0; // something was lost: start over
      p.probeAt = undefined;
    }
    if (p.probeAt === undefined) {
      p.probeAt = now;
      p.skip = p.outstanding;
    }
    p.outstanding++;
  }

  /** A HeartbeatResp from `peer` arrived at `now` (ms): the round trip in seconds when it answers the timed
   * heartbeat, else undefined. */
  received(peer: NodeId, now: number): number | undefined {
    const p = this.peers.get(peer);
    if (!p || p.outstanding === 0) return undefined;
    p.outstanding--;
    if (p.probeAt === undefined) return undefined;
    if (p.skip > 0) {
      p.skip--;
      return undefined;
    }
    const rtt = (now - p.probeAt) / 1000;
    p.probeAt = undefined;
    return rtt;
  }

  /** Messages to `peer` were lost: forget what is outstanding. */
  reset(peer: NodeId): void {
    this.peers.delete(peer);
  }
}
