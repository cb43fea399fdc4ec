/** A consensus member's tree, session and watch metrics (names in metric-names.ts), read at scrape time. */
import type { Counter, Registry } from 'prom-client';
import { METRICS } from './metric-names.js';
import { makeCounter, makeGauge } from './registry.js';

export interface ConsensusSource {
  nodeCount(): number;
  sessionCount(): number;
  watchCount(): number;
}

export class ConsensusMetrics {
  readonly sessionsExpired: Counter;

  constructor(registry: Registry, source: ConsensusSource) {
    makeGauge(registry, METRICS.treeNodes, () => source.nodeCount());
    makeGauge(registry, METRICS.sessionActive, () => source.sessionCount());
    makeGauge(registry, METRICS.watchActive, () => source.watchCount());
    this.sessionsExpired = makeCounter(registry, METRICS.sessionExpired);
    this.sessionsExpired.inc(0);
  }
}
