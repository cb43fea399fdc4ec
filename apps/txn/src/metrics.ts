/** Moved to libs/observability (one home for every metric). */
export { TxnMetrics } from '@app/observability';
