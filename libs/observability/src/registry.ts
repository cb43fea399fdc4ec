/**
 * One prom-client Registry per member: several RaftNodes (and servers) can live in one process — tests,
 * benchmarks, `npm start` — so nothing here touches prom-client's global default registry. Metrics are
 * created only from the definitions in metric-names.ts.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { MetricDef } from './metric-names.js';

export interface RegistryOptions {
  /** Register prom-client's process_* and nodejs_* metrics (default true). */
  defaultMetrics?: boolean;
  /** Labels added to every series of this registry (e.g. a member id when several share one scrape). */
  defaultLabels?: Record<string, string>;
}

export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

type LabelOf<D extends MetricDef> = D['labels'][number];

function check(def: MetricDef, type: MetricDef['type']): void {
  if (def.type !== type) throw new Error(`metric ${def.name} is a ${def.type}, not a ${type}`);
}

export function makeCounter<D extends MetricDef>(registry: Registry, def: D): Counter<LabelOf<D>> {
  check(def, 'counter');
  return new Counter({ name: def.name, help: def.help, labelNames: def.labels, registers: [registry] });
}

/** A gauge; with `collect`, its value is read from the source at every scrape. */
export function makeGauge<D extends MetricDef>(registry: Registry, def: D, collect?: () => number): Gauge<LabelOf<D>> {
  check(def, 'gauge');
  return new Gauge({
    name: def.name,
    help: def.help,
    labelNames: def.labels,
    registers: [registry],
    ...(collect ? { collect(this: Gauge) { this.set(collect()); } } : {}),
  });
}

export function makeHistogram<D extends MetricDef>(registry: Registry, def: D): Histogram<LabelOf<D>> {
  check(def, 'histogram');
  if (!def.buckets) throw new Error(`histogram ${def.name} has no buckets in metric-names.ts`);
  return new Histogram({ name: def.name, help: def.help, labelNames: def.labels, buckets: [...def.buckets], registers: [registry] });
}
