/** Moved to libs/observability (one home for every metric). */
export { LockMetrics } from '@app/observability';
