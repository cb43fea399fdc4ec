/**
 * @app/lock — the lock service's algorithm and backends: types and validation, the queue algorithm written once
 * over any QueueStore (queue.ts), the stores (consensus, etcd, Redis, PostgreSQL) and RedLock, FencedResource.
 * See docs/locks.md.
 */
export * from './types.js';
export * from './backend.js';
export { decide, holders, shapeConflict, QueueLockBackend } from './queue.js';
export type { Decision } from './queue.js';
export { LIMITS, validateAcquire, validateLease, validateListLimit, validateName, validateTtl } from './validate.js';
export { FencedResource, StaleTokenError } from '@app/client';
export { ConsensusQueueStore } from './backends/consensus.js';
export type { ConsensusQueueStoreOptions } from './backends/consensus.js';
export { EtcdQueueStore } from './backends/etcd.js';
export { RedisQueueStore } from './backends/redis.js';
export { RedlockBackend } from './backends/redlock.js';
export { PostgresQueueStore } from './backends/postgres.js';
