/**
 * How the simulator makes consensus engines. The simulator only talks to the {@link ConsensusEngine} interface,
 * so another engine (ZAB, Multi-Paxos) can be checked by the same simulator by supplying its own factory.
 */
import { ConsensusEngine, MemoryStorage, NodeId, PlantedBugs, RawNode } from '@app/raft';

export interface EngineOptions {
  id: NodeId;
  /** The node's log as the engine reads it; the simulator (the driver) owns and writes it. */
  storage: MemoryStorage;
  /** Last applied index on (re)start: the snapshot's index after a restart, 0 for a new node. */
  applied: number;
  /** The node's only source of randomness, derived from the run's seed. */
  random: () => number;
  electionTick: number;
  heartbeatTick: number;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  checkQuorum: boolean;
  preVote: boolean;
  /** Test-only bugs planted in the core. */
  plantedBugs: PlantedBugs;
  /** Set only for a founding member of a brand-new cluster, on empty storage: the initial voters. */
  bootstrapVoters?: NodeId[];
}

export interface EngineFactory {
  readonly name: string;
  create(opts: EngineOptions): ConsensusEngine;
}

/** The pure Raft core of libs/raft. */
export const raftEngineFactory: EngineFactory = {
  name: 'raft',
  create(o: EngineOptions): ConsensusEngine {
    const node = new RawNode({
      id: o.id,
      electionTick: o.electionTick,
      heartbeatTick: o.heartbeatTick,
      storage: o.storage,
      applied: o.applied,
      random: o.random,
      checkQuorum: o.checkQuorum,
      preVote: o.preVote,
      maxSizePerMsg: o.maxSizePerMsg,
      maxInflightMsgs: o.maxInflightMsgs,
      plantedBugs: o.plantedBugs,
    });
    if (o.bootstrapVoters) node.bootstrap(o.bootstrapVoters);
    return node;
  },
};
