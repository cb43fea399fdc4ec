/**
 * @app/testing — the deterministic Raft simulator (seeded PRNG, simulated network, disk and clock, safety and
 * liveness checkers, planted bugs, scripted scenarios). See docs/simulator.md.
 */
export { Rng, fnv1a32 } from './sim/prng.js';
export { Hash64, bytesToString, stringToBytes } from './sim/hash.js';
export { AppState, DIGEST_APP } from './sim/app.js';
export type { AppModel, SimApp } from './sim/app.js';
export { TreeApp, TreeModel, pathProblem, treeProblem } from './sim/tree-app.js';
export type { TreeBugs, TreeModelOptions } from './sim/tree-app.js';
export { TreeWorkload, sampleTreeParams } from './sim/tree-workload.js';
export type { TreeParams, TreeWorkloadBugs } from './sim/tree-workload.js';
export { SimDisk } from './sim/disk.js';
export type { DiskImage, DiskOptions } from './sim/disk.js';
export { SimNetwork, RELIABLE_NETWORK } from './sim/network.js';
export type { NetworkProfile, SendOutcome } from './sim/network.js';
export { raftEngineFactory } from './sim/engine-factory.js';
export type { EngineFactory, EngineOptions } from './sim/engine-factory.js';
export { SafetyChecker, Violation, CHECKERS, hardStateRegression, entryKey, noPromises } from './sim/checkers.js';
export type { CheckerName, CheckedNode, Promises } from './sim/checkers.js';
export { Trace } from './sim/trace.js';
export { SimCluster, SimNode, DEFAULT_CLUSTER_CONFIG } from './sim/cluster.js';
export type { ClusterConfig, ProposeOutcome } from './sim/cluster.js';
export { BUG_NAMES, BUG_DESCRIPTIONS, TREE_BUGS, bugSwitches, isBugName } from './sim/bugs.js';
export type { BugName, BugSwitches } from './sim/bugs.js';
export { APP_NAMES, runSeed, sampleParams } from './sim/simulate.js';
export type { AppName, SimOptions, SimParams, SimResult, SimViolation, FaultProfile } from './sim/simulate.js';
export { runScenario, SCENARIOS, ScenarioError } from './sim/scenarios.js';
export type { ScenarioName, ScenarioOptions, ScenarioResult } from './sim/scenarios.js';
export { TcpProxy } from './proxy.js';
export type { ProxyMode } from './proxy.js';
export * from './linearizability/index.js';
