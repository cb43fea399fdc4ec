/** The coordinator's Prometheus metrics (names in libs/observability/src/metric-names.ts). */
import type { Registry } from 'prom-client';
import { METRICS } from './metric-names.js';
import { makeCounter, makeGauge, makeHistogram } from './registry.js';

export class TxnMetrics {
  readonly transactions;
  readonly commitDuration;
  readonly phaseDuration;
  readonly votes;
  readonly inFlight;
  readonly inDoubt;
  readonly oldestInDoubt;
  readonly needsAttention;
  readonly recovered;
  readonly isLeader;
  readonly published;
  readonly delivered;
  readonly redelivered;
  readonly deliveryLag;

  constructor(registry: Registry) {
    this.transactions = makeCounter(registry, METRICS.txnTransactions);
    this.commitDuration = makeHistogram(registry, METRICS.txnCommitDuration);
    this.phaseDuration = makeHistogram(registry, METRICS.txnPhaseDuration);
    this.votes = makeCounter(registry, METRICS.txnVotes);
    this.inFlight = makeGauge(registry, METRICS.txnInFlight);
    this.inDoubt = makeGauge(registry, METRICS.txnInDoubt);
    this.oldestInDoubt = makeGauge(registry, METRICS.txnOldestInDoubtAge);
    this.needsAttention = makeGauge(registry, METRICS.txnNeedsAttention);
    this.recovered = makeCounter(registry, METRICS.txnRecovered);
    this.isLeader = makeGauge(registry, METRICS.txnIsLeader);
    this.published = makeCounter(registry, METRICS.txnMessagesPublished);
    this.delivered = makeCounter(registry, METRICS.txnMessagesDelivered);
    this.redelivered = makeCounter(registry, METRICS.txnMessagesRedelivered);
    this.deliveryLag = makeHistogram(registry, METRICS.txnMessageDeliveryLag);
    for (const outcome of ['begun', 'committed', 'aborted']) this.transactions.inc({ outcome }, 0);
    for (const vote of ['yes', 'no', 'timeout']) this.votes.inc({ vote }, 0);
    this.recovered.inc(0);
    this.published.inc(0);
    this.delivered.inc(0);
    this.redelivered.inc(0);
    this.setGauges({ inFlight: 0, inDoubt: 0, oldestInDoubtS: 0, needsAttention: 0 });
    this.isLeader.set(0);
  }

  begun(): void {
    this.transactions.inc({ outcome: 'begun' });
  }

  vote(v: 'YES' | 'NO' | 'TIMEOUT'): void {
    this.votes.inc({ vote: v.toLowerCase() });
  }

  phase(phase: 'prepare' | 'commit' | 'abort', seconds: number): void {
    this.phaseDuration.observe({ phase }, seconds);
  }

  decisionLatency(outcome: 'committed' | 'aborted', seconds: number): void {
    this.commitDuration.observe({ stage: 'decision', outcome }, seconds);
  }

  finished(outcome: 'committed' | 'aborted', endToEndSeconds: number): void {
    this.transactions.inc({ outcome });
    this.commitDuration.observe({ stage: 'end_to_end', outcome }, endToEndSeconds);
  }

  setGauges(g: { inFlight: number; inDoubt: number; oldestInDoubtS: number; needsAttention: number }): void {
    this.inFlight.set(g.inFlight);
    this.inDoubt.set(g.inDoubt);
    this.oldestInDoubt.set(g.oldestInDoubtS);
    this.needsAttention.set(g.needsAttention);
  }
}
