/** The lock service's Prometheus metrics (names in libs/observability/src/metric-names.ts; label `backend` only). */
import type { Registry } from 'prom-client';
import { METRICS } from './metric-names.js';
import { makeCounter, makeGauge, makeHistogram } from './registry.js';

export class LockMetrics {
  readonly acquisitions;
  readonly contended;
  readonly waitDuration;
  readonly holdDuration;
  readonly held;
  readonly waiters;
  readonly lost;
  readonly expired;
  readonly releases;
  readonly wakeups;
  private readonly wakeupsPerRelease;
  private wakeCount = 0;
  private releaseCount = 0;

  constructor(
    registry: Registry,
    readonly backend: string,
  ) {
    this.acquisitions = makeCounter(registry, METRICS.lockAcquisitions);
    this.contended = makeCounter(registry, METRICS.lockContended);
    this.waitDuration = makeHistogram(registry, METRICS.lockWaitDuration);
    this.holdDuration = makeHistogram(registry, METRICS.lockHoldDuration);
    this.held = makeGauge(registry, METRICS.lockHeld);
    this.waiters = makeGauge(registry, METRICS.lockWaiters);
    this.lost = makeCounter(registry, METRICS.lockLost);
    this.expired = makeCounter(registry, METRICS.lockExpired);
    this.releases = makeCounter(registry, METRICS.lockReleases);
    this.wakeups = makeCounter(registry, METRICS.lockWakeups);
    this.wakeupsPerRelease = makeGauge(registry, METRICS.lockWakeupsPerRelease);
    const b = { backend };
    for (const result of ['granted', 'reentered', 'timed_out', 'lost', 'cancelled', 'error']) this.acquisitions.inc({ ...b, result }, 0);
    this.contended.inc(b, 0);
    this.held.set(b, 0);
    this.waiters.set(b, 0);
    this.expired.inc(b, 0);
    this.releases.inc(b, 0);
    this.wakeups.inc(b, 0);
    this.wakeupsPerRelease.set(b, 0);
    this.lost.inc({ ...b, reason: 'LEASE_EXPIRED' }, 0);
  }

  wake(): void {
    this.wakeCount++;
    this.wakeups.inc({ backend: this.backend });
    this.updateRatio();
  }

  release(): void {
    this.releaseCount++;
    this.releases.inc({ backend: this.backend });
    this.updateRatio();
  }

  /** Wake-ups and releases since start (the herd-effect ratio's parts). */
  get counts(): { wakeups: number; releases: number } {
    return { wakeups: this.wakeCount, releases: this.releaseCount };
  }

  private updateRatio(): void {
    this.wakeupsPerRelease.set({ backend: this.backend }, this.releaseCount === 0 ? 0 : this.wakeCount / this.releaseCount);
  }
}
