/** @app/txn — the transaction coordinator's replicated store (versioned KV + guarded leader election). docs/txn.md. */
export * from './store.js';
export * from './etcd.js';
