/**
 * @app/client — a typed TypeScript client for Synod's consensus cluster: failover over several endpoints,
 * exactly-once retried writes, self-renewing sessions, resumable watches (docs/cli.md, docs/api.md).
 */
export { SynodClient, toBytes } from './client.js';
export type { CallOptions, CreateOptions, ReadOptions, SynodClientOptions, TlsOptions, VersionOptions } from './client.js';
export { Session } from './session.js';
export type { SessionOptions, SessionState } from './session.js';
export { Watch } from './watch.js';
export type { WatchOptions } from './watch.js';
export { LEADER_ADDRESS_KEY, LEADER_ID_KEY, NON_RETRYABLE, SessionExpiredError, SynodError, WatchCompactedError, isRetryable, leaderHint, toSynodError } from './errors.js';
export type * from './types.js';
export { FencedResource, StaleTokenError } from './fenced.js';
export { LockClient, LockHandle, LockLostError, LockTimeoutError } from './lock.js';
export type { AcquireOptions, LockClientOptions, LockEntry, LockMode } from './lock.js';
export { TxnClient, TXN_LEADER_KEY } from './txn.js';
export type { TxnBranch, TxnClientOptions, TxnInfo, TxnState } from './txn.js';
