/**
 * @app/observability — metric names (one file: metric-names.ts), per-member prom-client registries, the Raft
 * metrics bound to a RaftNode through its observer hook, gRPC server metrics (go-grpc-prometheus names) and
 * the /metrics, /livez, /readyz HTTP endpoint. See docs/metrics.md.
 */
export { METRICS, LATENCY_BUCKETS, ROUND_TRIP_BUCKETS, SNAPSHOT_BUCKETS, exponentialBuckets } from './metric-names.js';
export type { MetricDef, MetricKey, MetricType } from './metric-names.js';
export { createRegistry, makeCounter, makeGauge, makeHistogram } from './registry.js';
export type { RegistryOptions } from './registry.js';
export { RaftMetrics } from './raft-metrics.js';
export { GrpcServerMetrics, instrumentService, grpcCodeName, splitMethodPath } from './grpc-metrics.js';
export type { GrpcType } from './grpc-metrics.js';
export { raftReadiness, raftLiveness, allOf } from './health.js';
export type { HealthCheck, HealthResult, StatusSource } from './health.js';
export { ObservabilityServer } from './http-server.js';
export type { ObservabilityServerOptions } from './http-server.js';
export { LockMetrics } from './lock-metrics.js';
export { TxnMetrics } from './txn-metrics.js';
export { LOG_LEVELS, createLogger } from './logger.js';
export type { LogLevel, Logger } from './logger.js';
export { ConsensusMetrics } from './consensus-metrics.js';
export type { ConsensusSource } from './consensus-metrics.js';
