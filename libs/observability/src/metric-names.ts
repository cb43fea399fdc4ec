/**
 * THE metric-name file: every metric the product registers, with its type, help text, labels and buckets.
 * Code registers metrics only from these definitions (see `makeCounter`/`makeGauge`/`makeHistogram` in
 * registry.ts); a service that adds metrics adds them here, and `docs/metrics.md` describes each one.
 * Only metrics that some code registers belong here: test/metric-names.spec.ts checks the Prometheus naming
 * rules (snake_case, base units, `_total` only on counters, no per-lock / per-transaction labels) and that
 * every definition is registered.
 *
 * Prefixes: `synod_raft_*` (consensus), `synod_lock_*` (lock service), `synod_txn_*` (transactions), and the
 * go-grpc-prometheus `grpc_server_*` family so standard gRPC dashboards work unchanged. The process_* and
 * nodejs_* defaults come from prom-client and are not listed.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  /** Histograms only: upper bounds in the metric's base unit. */
  readonly buckets?: readonly number[];
}

/** `count` buckets: start, start·factor, start·factor², ... */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(Number((start * factor ** i).toPrecision(12)));
  return out;
}

/**
 * Durations on one node, from sub-millisecond to seconds: 0.125 ms · 2^k up to 8.192 s (17 buckets). A
 * superset of etcd's fsync buckets (1 ms · 2^k, k = 0..13), so p99s compare bucket for bucket, with three
 * more below 1 ms where a fast disk's fdatasync and a batched commit live.
 */
export const LATENCY_BUCKETS: readonly number[] = exponentialBuckets(0.000125, 2, 17);

/** Network round trips: 0.1 ms · 2^k up to ~0.82 s (14 buckets) — etcd's peer_round_trip_time buckets. */
export const ROUND_TRIP_BUCKETS: readonly number[] = exponentialBuckets(0.0001, 2, 14);

/** Snapshots (serialize + write + fsync, or restore): 1 ms · 2^k up to ~32.8 s (16 buckets). */
export const SNAPSHOT_BUCKETS: readonly number[] = exponentialBuckets(0.001, 2, 16);

const GRPC_LABELS = ['grpc_type', 'grpc_service', 'grpc_method'] as const;

export const METRICS = {
  // ---- Raft (libs/observability RaftMetrics, fed by RaftNode's observer) --------------------------------
  raftHasLeader: {
    name: 'synod_raft_has_leader',
    type: 'gauge',
    help: 'Whether this member knows a leader (1) or not (0).',
    labels: [],
  },
  raftIsLeader: {
    name: 'synod_raft_is_leader',
    type: 'gauge',
    help: 'Whether this member is the leader (1) or not (0).',
    labels: [],
  },
  raftLeaderChangesSeen: {
    name: 'synod_raft_leader_changes_seen_total',
    type: 'counter',
    help: 'Times this member saw a new leader (a change to a known leader different from the previous one).',
    labels: [],
  },
  raftElectionsStarted: {
    name: 'synod_raft_elections_started_total',
    type: 'counter',
    help: 'Campaigns this member started: kind="pre_vote" (PreVote round, no term change) or kind="vote" (a real election).',
    labels: ['kind'],
  },
  raftTerm: {
    name: 'synod_raft_term',
    type: 'gauge',
    help: 'Current Raft term of this member.',
    labels: [],
  },
  raftCommitIndex: {
    name: 'synod_raft_commit_index',
    type: 'gauge',
    help: 'Highest log index this member knows to be committed.',
    labels: [],
  },
  raftAppliedIndex: {
    name: 'synod_raft_applied_index',
    type: 'gauge',
    help: 'Highest log index applied to the state machine on this member.',
    labels: [],
  },
  raftProposalsCommitted: {
    name: 'synod_raft_proposals_committed_total',
    type: 'counter',
    help: 'Command entries (proposed on any member) this member learned are committed.',
    labels: [],
  },
  raftProposalsApplied: {
    name: 'synod_raft_proposals_applied_total',
    type: 'counter',
    help: 'Command entries (proposed on any member) applied to the state machine on this member.',
    labels: [],
  },
  raftProposalsFailed: {
    name: 'synod_raft_proposals_failed_total',
    type: 'counter',
    help: 'Proposals made on this member that failed: reason="dropped" (no leader, transfer or backlog), "timeout" (outcome unknown), "stopped".',
    labels: ['reason'],
  },
  raftProposalsPending: {
    name: 'synod_raft_proposals_pending',
    type: 'gauge',
    help: 'Proposals made on this member not yet applied (nor failed).',
    labels: [],
  },
  raftProposalCommitDuration: {
    name: 'synod_raft_proposal_commit_duration_seconds',
    type: 'histogram',
    help: 'Time from propose to applied on the member that proposed (commit latency, including forwarding to the leader).',
    labels: [],
    buckets: LATENCY_BUCKETS,
  },
  raftWalFsyncDuration: {
    name: 'synod_raft_wal_fsync_duration_seconds',
    type: 'histogram',
    help: 'Latency of the fdatasync calls of the write-ahead log.',
    labels: [],
    buckets: LATENCY_BUCKETS,
  },
  raftPeerRoundTripTime: {
    name: 'synod_raft_peer_round_trip_time_seconds',
    type: 'histogram',
    help: 'Heartbeat to heartbeat-response round trip from the leader to each peer (peer = member id; bounded by the cluster size).',
    labels: ['peer'],
    buckets: ROUND_TRIP_BUCKETS,
  },
  raftSnapshotDuration: {
    name: 'synod_raft_snapshot_duration_seconds',
    type: 'histogram',
    help: 'Time to take a snapshot (kind="take": serialize, write, fsync, compact) or install one from the leader (kind="install").',
    labels: ['kind'],
    buckets: SNAPSHOT_BUCKETS,
  },

  // ---- The tree, sessions and watches of a consensus member (ConsensusMetrics) ----------------------------
  treeNodes: {
    name: 'synod_tree_nodes',
    type: 'gauge',
    help: 'Nodes in the replicated tree as applied on this member (the root included).',
    labels: [],
  },
  sessionActive: {
    name: 'synod_session_active',
    type: 'gauge',
    help: 'Live sessions in the replicated state as applied on this member.',
    labels: [],
  },
  sessionExpired: {
    name: 'synod_session_expired_total',
    type: 'counter',
    help: 'Sessions this member expired as leader (proposed and committed expiry; sum over members for the cluster).',
    labels: [],
  },
  watchActive: {
    name: 'synod_watch_active',
    type: 'gauge',
    help: 'Watches registered on this member (one-shot, persistent and recursive; on its Watch streams).',
    labels: [],
  },

  // ---- Lock service (apps/lock; label backend only, never lock names) -----------------------------------
  lockAcquisitions: {
    name: 'synod_lock_acquisitions_total',
    type: 'counter',
    help: 'Acquire requests by outcome: result="granted", "reentered", "timed_out" (wait ran out or try-once failed), "lost" (the waiter\'s lease ended), "cancelled" (the caller went away), "error".',
    labels: ['backend', 'result'],
  },
  lockContended: {
    name: 'synod_lock_contended_total',
    type: 'counter',
    help: 'Acquire requests that had to wait (were queued behind a holder) before their outcome.',
    labels: ['backend'],
  },
  lockWaitDuration: {
    name: 'synod_lock_wait_duration_seconds',
    type: 'histogram',
    help: 'Time from Acquire to grant (granted requests only).',
    labels: ['backend'],
    buckets: SNAPSHOT_BUCKETS,
  },
  lockHoldDuration: {
    name: 'synod_lock_hold_duration_seconds',
    type: 'histogram',
    help: 'Time from grant to release or loss.',
    labels: ['backend'],
    buckets: SNAPSHOT_BUCKETS,
  },
  lockHeld: {
    name: 'synod_lock_held',
    type: 'gauge',
    help: 'Grants currently held through this instance.',
    labels: ['backend'],
  },
  lockWaiters: {
    name: 'synod_lock_waiters',
    type: 'gauge',
    help: 'Acquire requests currently waiting on this instance.',
    labels: ['backend'],
  },
  lockLost: {
    name: 'synod_lock_lost_total',
    type: 'counter',
    help: 'Grants lost while held, by reason (LEASE_EXPIRED: not renewed in time; REVOKED / SESSION_LOST: the backend dropped the entry; SERVICE_SHUTDOWN).',
    labels: ['backend', 'reason'],
  },
  lockExpired: {
    name: 'synod_lock_expired_total',
    type: 'counter',
    help: 'Leases (held or waiting) that ended because they were not renewed in time.',
    labels: ['backend'],
  },
  lockReleases: {
    name: 'synod_lock_releases_total',
    type: 'counter',
    help: 'Release calls that removed a hold.',
    labels: ['backend'],
  },
  lockWakeups: {
    name: 'synod_lock_wakeups_total',
    type: 'counter',
    help: 'Times a waiter was woken by a change of the entry it waits on (herd-effect accounting: ideally one per release).',
    labels: ['backend'],
  },
  lockWakeupsPerRelease: {
    name: 'synod_lock_wakeups_per_release',
    type: 'gauge',
    help: 'Waiter wake-ups divided by releases since start (the herd-effect gauge: 1 means each release woke one waiter).',
    labels: ['backend'],
  },

  // ---- Transaction coordinator (apps/txn; no per-transaction labels) ----------------------------------
  txnTransactions: {
    name: 'synod_txn_transactions_total',
    type: 'counter',
    help: 'Global transactions by outcome: outcome="begun", "committed", "aborted" (phase two completed for the last two).',
    labels: ['outcome'],
  },
  txnCommitDuration: {
    name: 'synod_txn_commit_duration_seconds',
    type: 'histogram',
    help: 'Commit latency: stage="decision" (Commit call to durable decision), stage="end_to_end" (Begin to phase two completed); outcome committed or aborted.',
    labels: ['stage', 'outcome'],
    buckets: SNAPSHOT_BUCKETS,
  },
  txnPhaseDuration: {
    name: 'synod_txn_phase_duration_seconds',
    type: 'histogram',
    help: 'Duration of phase="prepare" (phase one, all branches), "commit" or "abort" (phase two, all branches, retries included).',
    labels: ['phase'],
    buckets: SNAPSHOT_BUCKETS,
  },
  txnVotes: {
    name: 'synod_txn_votes_total',
    type: 'counter',
    help: 'Phase-one votes: vote="yes", "no", "timeout" (the participant did not answer in time or was unreachable).',
    labels: ['vote'],
  },
  txnInFlight: {
    name: 'synod_txn_in_flight',
    type: 'gauge',
    help: 'Transactions not completed (active, preparing, or decided with phase two running), per the leader.',
    labels: [],
  },
  txnInDoubt: {
    name: 'synod_txn_in_doubt',
    type: 'gauge',
    help: 'Transactions in phase one or decided but not yet delivered to every branch.',
    labels: [],
  },
  txnOldestInDoubtAge: {
    name: 'synod_txn_oldest_in_doubt_age_seconds',
    type: 'gauge',
    help: 'Age of the oldest in-doubt transaction (0 when none).',
    labels: [],
  },
  txnNeedsAttention: {
    name: 'synod_txn_needs_attention',
    type: 'gauge',
    help: 'Transactions whose phase two failed past its retry bound (state NEEDS_ATTENTION): an operator should look.',
    labels: [],
  },
  txnRecovered: {
    name: 'synod_txn_recovered_total',
    type: 'counter',
    help: 'Unfinished transactions a new leader resumed (phase two again) or aborted (phase one interrupted).',
    labels: [],
  },
  txnIsLeader: {
    name: 'synod_txn_is_leader',
    type: 'gauge',
    help: 'Whether this coordinator replica leads (1) or stands by (0).',
    labels: [],
  },
  txnMessagesPublished: {
    name: 'synod_txn_messages_published_total',
    type: 'counter',
    help: 'Outbox messages accepted by Publish (duplicates by message id not counted).',
    labels: [],
  },
  txnMessagesDelivered: {
    name: 'synod_txn_messages_delivered_total',
    type: 'counter',
    help: 'Message deliveries acknowledged by a consumer.',
    labels: [],
  },
  txnMessagesRedelivered: {
    name: 'synod_txn_messages_redelivered_total',
    type: 'counter',
    help: 'Delivery attempts after a failed or unacknowledged one.',
    labels: [],
  },
  txnMessageDeliveryLag: {
    name: 'synod_txn_message_delivery_lag_seconds',
    type: 'histogram',
    help: 'Time from Publish to the consumer\'s acknowledgment.',
    labels: [],
    buckets: SNAPSHOT_BUCKETS,
  },

  // ---- gRPC servers (go-grpc-prometheus names and labels; instrumentService) ----------------------------
  grpcServerStarted: {
    name: 'grpc_server_started_total',
    type: 'counter',
    help: 'Total number of RPCs started on the server.',
    labels: GRPC_LABELS,
  },
  grpcServerHandled: {
    name: 'grpc_server_handled_total',
    type: 'counter',
    help: 'Total number of RPCs completed on the server, regardless of success or failure.',
    labels: [...GRPC_LABELS, 'grpc_code'],
  },
  grpcServerHandlingDuration: {
    name: 'grpc_server_handling_seconds',
    type: 'histogram',
    help: 'Response latency (seconds) of gRPC that had been application-level handled by the server.',
    labels: GRPC_LABELS,
    buckets: LATENCY_BUCKETS,
  },
} as const satisfies Record<string, MetricDef>;

export type MetricKey = keyof typeof METRICS;
