/**
 * The metric-name file obeys the Prometheus naming rules, and names exactly what the code registers.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConsensusMetrics, GrpcServerMetrics, LATENCY_BUCKETS, LockMetrics, METRICS, MetricDef, RaftMetrics, ROUND_TRIP_BUCKETS, SNAPSHOT_BUCKETS, TxnMetrics, createRegistry } from '@app/observability';

const defs: MetricDef[] = Object.values(METRICS);

/** Unit words that are not base units (Prometheus: seconds, bytes, ratios, ...). */
const NON_BASE_UNITS = [
  'milliseconds', 'millis', 'ms', 'microseconds', 'us', 'nanoseconds', 'ns', 'minutes', 'hours', 'days',
  'kilobytes', 'kb', 'megabytes', 'mb', 'gigabytes', 'gb', 'kib', 'mib', 'gib', 'percent', 'bits',
];
/** Labels whose values would be one per lock, transaction, key or session: unbounded cardinality. */
const FORBIDDEN_LABELS = ['lock', 'lock_id', 'lock_name', 'txn', 'txn_id', 'transaction', 'xid', 'key', 'path', 'session', 'session_id', 'client_id', 'request_id', 'fencing_token', 'zxid'];
const PREFIXES = ['synod_raft_', 'synod_lock_', 'synod_txn_', 'synod_tree_', 'synod_session_', 'synod_watch_', 'grpc_server_'];

describe('metric-names.ts: Prometheus naming rules', () => {
  it('has unique, snake_case names with a known prefix', () => {
    const names = defs.map((d) => d.name);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) {
      expect(n).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
      expect(PREFIXES.some((p) => n.startsWith(p))).toBe(true);
    }
  });

  it('uses _total only on counters, and every counter ends in _total', () => {
    for (const d of defs) {
      if (d.type === 'counter') expect(d.name).toMatch(/_total$/);
      else expect(d.name).not.toMatch(/_total$/);
    }
  });

  it('uses base units: histograms end in _seconds or _bytes, no name carries another unit', () => {
    for (const d of defs) {
      const words = d.name.split('_');
      for (const u of NON_BASE_UNITS) expect({ name: d.name, unit: words.includes(u) ? u : undefined }).toEqual({ name: d.name, unit: undefined });
      if (d.type === 'histogram') expect(d.name).toMatch(/_(seconds|bytes)$/);
      // A unit goes before _total on a counter, and is never followed by anything else.
      const unit = words.findIndex((w) => w === 'seconds' || w === 'bytes');
      if (unit >= 0) expect(words.slice(unit + 1)).toEqual(d.type === 'counter' ? ['total'] : []);
    }
  });

  it('has help text for every metric', () => {
    for (const d of defs) {
      expect(d.help.trim().length).toBeGreaterThan(10);
      expect(d.help).not.toMatch(/\n/);
    }
  });

  it('uses snake_case labels, never reserved ones nor per-lock / per-transaction ones', () => {
    for (const d of defs) {
      expect(new Set(d.labels).size).toBe(d.labels.length);
      for (const l of d.labels) {
        expect(l).toMatch(/^[a-z][a-z0-9_]*$/);
        expect(l.startsWith('__')).toBe(false);
        expect(['le', 'quantile', 'instance', 'job']).not.toContain(l);
        expect(FORBIDDEN_LABELS).not.toContain(l);
      }
    }
  });

  it('gives every histogram increasing buckets from a millisecond or less', () => {
    for (const d of defs.filter((x) => x.type === 'histogram')) {
      const b = d.buckets!;
      expect(b.length).toBeGreaterThan(5);
      for (let i = 1; i < b.length; i++) expect(b[i]).toBeGreaterThan(b[i - 1]);
      expect(b[0]).toBeLessThanOrEqual(0.001);
    }
    expect(LATENCY_BUCKETS[0]).toBe(0.000125);
    expect(LATENCY_BUCKETS).toContain(0.001); // etcd's fsync buckets are a subset
    expect(LATENCY_BUCKETS.at(-1)).toBe(8.192);
    expect(ROUND_TRIP_BUCKETS[0]).toBe(0.0001);
    expect(SNAPSHOT_BUCKETS.at(-1)).toBeCloseTo(32.768, 6);
  });
});

describe('metric-names.ts names exactly what the code registers', () => {
  it('every definition is registered by RaftMetrics, GrpcServerMetrics, ConsensusMetrics, LockMetrics or TxnMetrics, and nothing else outside the defaults', async () => {
    const registry = createRegistry();
    new RaftMetrics(registry);
    new GrpcServerMetrics(registry);
    new LockMetrics(registry, 'consensus');
    new TxnMetrics(registry);
    new ConsensusMetrics(registry, { nodeCount: () => 1, sessionCount: () => 0, watchCount: () => 0 });
    const registered = (await registry.getMetricsAsJSON()).map((m) => ({ name: m.name, type: String(m.type) }));
    const ours = registered.filter((m) => !m.name.startsWith('process_') && !m.name.startsWith('nodejs_'));
    expect(ours.map((m) => m.name).sort()).toEqual(defs.map((d) => d.name).sort());
    for (const m of ours) expect(m.type).toBe(defs.find((d) => d.name === m.name)!.type);
    // prom-client's defaults are there too (process and Node.js runtime).
    expect(registered.some((m) => m.name === 'process_cpu_user_seconds_total')).toBe(true);
    expect(registered.some((m) => m.name === 'nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('registries are independent: two members in one process do not collide', async () => {
    const a = createRegistry({ defaultMetrics: false });
    const b = createRegistry({ defaultMetrics: false });
    const ma = new RaftMetrics(a);
    new RaftMetrics(b);
    ma.onHardState(7, 42);
    expect(await a.metrics()).toContain('synod_raft_term 7');
    expect(await b.metrics()).toContain('synod_raft_term 0');
    expect(() => new RaftMetrics(a)).toThrow(/already been registered/);
  });

  it('docs/metrics.md describes every metric', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/metrics.md', import.meta.url)), 'utf8');
    for (const d of defs) expect({ name: d.name, documented: doc.includes(`\`${d.name}\``) }).toEqual({ name: d.name, documented: true });
  });
});
