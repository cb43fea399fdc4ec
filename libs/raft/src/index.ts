/**
 * @app/raft — the pure, deterministic Raft core. See docs/raft.md for the driver boundary.
 */
export * from './types.js';
export * from './errors.js';
export * from './storage.js';
export * from './config.js';
export * from './codec.js';
export * from './quorum.js';
export * from './progress.js';
export * from './tracker.js';
export * from './log.js';
export * from './readonly.js';
export * from './raft.js';
export * from './engine.js';
export * from './rawnode.js';
