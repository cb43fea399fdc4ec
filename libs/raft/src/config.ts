import { invariant } from './errors.js';
import { LogStorage } from './storage.js';
import { NodeId } from './types.js';

/** How ReadIndex requests are confirmed. */
export enum ReadOnlyOption {
  /** Confirm leadership with a heartbeat round to a quorum (safe; default). */
  Safe = 'Safe',
  /** Rely on the leader lease (needs CheckQuorum and bounded clock drift). */
  LeaseBased = 'LeaseBased',
}

/** Optional logger the driver may inject; the core only formats strings. */
export interface RaftLogger {
  debug?(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
}

/**
 * Test-only switches that plant known Raft bugs, so the simulator can prove its checkers bite.
 * Never set in production; the driver refuses them unless SYNOD_TESTING_BUGS is set.
 */
export interface PlantedBugs {
  /** Commit an entry of an earlier term by counting its replicas (violates Raft §5.4.2, Figure 8). */
  commitOldTermByCount?: boolean;
  /** Grant a vote without checking the candidate's log is up to date (violates §5.4.1). */
  voteWithoutLogCheck?: boolean;
}

export interface Config {
  /** This node's id; must not be 0. */
  id: NodeId;
  /**
   * Minimum election timeout, in ticks. A follower that hears from no leader for a randomized timeout in
   * [electionTick, maxElectionTick) starts an election. With a 10 ms tick, electionTick 15 and
   * maxElectionTick 30 give the seeds' 150–300 ms range.
   */
  electionTick: number;
  /** Exclusive upper bound of the randomized election timeout; default 2 × electionTick (etcd's choice). */
  maxElectionTick?: number;
  /** A leader sends heartbeats every heartbeatTick ticks. Must be < electionTick. */
  heartbeatTick: number;
  /** Stable storage, read-only from the core's point of view. */
  storage: LogStorage;
  /** The last applied index on restart (entries ≤ applied are not returned again). */
  applied?: number;
  /** Max bytes of entries in one append message (batching); default 1 MiB. */
  maxSizePerMsg?: number;
  /** Max bytes of committed entries returned in one Ready; default = maxSizePerMsg × 4. */
  maxCommittedSizePerReady?: number;
  /** Max append messages in flight to one follower in replicate state (flow control); default 256. */
  maxInflightMsgs?: number;
  /** Max bytes of uncommitted entries a leader accepts before dropping proposals; 0 = no limit. */
  maxUncommittedEntriesSize?: number;
  /** A leader steps down when it has not heard from a quorum for an election timeout. Default true. */
  checkQuorum?: boolean;
  /** Run a pre-election before disrupting the cluster with a term bump. Default true. */
  preVote?: boolean;
  readOnlyOption?: ReadOnlyOption;
  /** Injected randomness in [0, 1): the only source of nondeterminism the core sees. */
  random: () => number;
  logger?: RaftLogger;
  plantedBugs?: PlantedBugs;
}

export interface ResolvedConfig extends Required<Omit<Config, 'logger' | 'plantedBugs'>> {
  logger: RaftLogger | undefined;
  plantedBugs: PlantedBugs;
}

export function resolveConfig(c: Config): ResolvedConfig {
  invariant(c.id !== 0, 'cannot use none (0) as id');
  invariant(c.heartbeatTick > 0, 'heartbeat tick must be greater than 0');
  invariant(c.electionTick > c.heartbeatTick, 'election tick must be greater than heartbeat tick');
  const maxElectionTick = c.maxElectionTick ?? 2 * c.electionTick;
  invariant(maxElectionTick > c.electionTick, 'maxElectionTick must be greater than electionTick');
  const maxSizePerMsg = c.maxSizePerMsg ?? 1024 * 1024;
  const maxInflightMsgs = c.maxInflightMsgs ?? 256;
  invariant(maxInflightMsgs > 0, 'max inflight messages must be greater than 0');
  const checkQuorum = c.checkQuorum ?? true;
  const readOnlyOption = c.readOnlyOption ?? ReadOnlyOption.Safe;
  // A lease is only sound if a leader that lost its quorum steps down (etcd's Config.validate).
  invariant(
    readOnlyOption !== ReadOnlyOption.LeaseBased || checkQuorum,
    'CheckQuorum must be enabled when readOnlyOption is LeaseBased',
  );
  return {
    id: c.id,
    electionTick: c.electionTick,
    maxElectionTick,
    heartbeatTick: c.heartbeatTick,
    storage: c.storage,
    applied: c.applied ?? 0,
    maxSizePerMsg,
    maxCommittedSizePerReady: c.maxCommittedSizePerReady ?? maxSizePerMsg * 4,
    maxInflightMsgs,
    maxUncommittedEntriesSize: c.maxUncommittedEntriesSize ?? 0,
    checkQuorum,
    preVote: c.preVote ?? true,
    readOnlyOption,
    random: c.random,
    logger: c.logger,
    plantedBugs: c.plantedBugs ?? {},
  };
}
