/** Builds the configured LockBackend. */
import { ConsensusQueueStore, EtcdQueueStore, PostgresQueueStore, QueueLockBackend, RedisQueueStore, RedlockBackend } from '@app/lock';
import type { LockBackend } from '@app/lock';
import type { LockConfig } from './config.js';

export function createBackend(cfg: LockConfig): LockBackend {
  switch (cfg.backend) {
    case 'consensus':
      return new QueueLockBackend(new ConsensusQueueStore({ endpoints: cfg.consensusEndpoints, sessionTimeoutMs: cfg.sessionTimeoutMs, tls: cfg.tls }));
    case 'etcd':
      return new QueueLockBackend(new EtcdQueueStore({ endpoints: cfg.etcdEndpoints }));
    case 'redis':
      return new QueueLockBackend(new RedisQueueStore({ url: cfg.redisUrl }));
    case 'postgres':
      return new QueueLockBackend(new PostgresQueueStore({ connectionString: cfg.postgresUrl }));
    case 'redlock':
      return new RedlockBackend({ instances: cfg.redlockUrls.map((url) => ({ url })) });
  }
}
