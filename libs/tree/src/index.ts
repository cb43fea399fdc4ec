/**
 * @app/tree — the replicated state machine of the consensus cluster: a ZooKeeper-style tree with sessions,
 * watches bookkeeping and retry deduplication. Pure and deterministic. See docs/tree.md.
 */
export * from './errors.js';
export * from './path.js';
export * from './types.js';
export * from './codec.js';
export * from './tree.js';
export * from './sessions.js';
export * from './watches.js';
