/**
 * The chart's Grafana dashboards and Prometheus alerts (helm/synod/dashboards, helm/synod/rules), checked
 * statically (promtool, JSON shape, metric names that exist) and against a real Prometheus scraping a running
 * local stack (3 consensus members, a lock service, two coordinator replicas, PostgreSQL participants) under a
 * short workload: every panel query and every alert expression is evaluated through the HTTP API, must be valid,
 * and every panel query must return data.
 */
import { spawnSync } from 'node:child_process';
import { METRICS } from '@app/observability';
import { sleep, waitFor } from '../apps/consensus/test/harness.js';
import { PrometheusServer } from './dashboards/prometheus.js';
import { DASHBOARD_FILES, RULES_FILE, dataPanels, loadDashboard, loadRules, substitute } from './dashboards/queries.js';
import { Stack } from './dashboards/stack.js';

const dashboards = DASHBOARD_FILES.map((f) => ({ file: f, d: loadDashboard(f) }));
const rules = loadRules().flatMap((g) => g.rules);
const KNOWN = new Set<string>(Object.values(METRICS).map((m) => m.name));

/** Every `synod_*` / `grpc_server_*` name in a query, without the histogram suffixes. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(synod_[a-z_]+|grpc_server_[a-z_]+)\b/g)].map((m) => m[1].replace(/_(bucket|sum|count)$/, ''));
}

describe('dashboards and alerts: static checks', () => {
  it('promtool check rules passes on the rules file', () => {
    const r = spawnSync('promtool', ['check', 'rules', RULES_FILE], { encoding: 'utf8', timeout: 30_000 });
    expect(`${r.stdout}${r.stderr}`).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.status).toBe(0);
  });

  it('the alerts cover the required conditions, each with for, severity, summary and description', () => {
    const names = rules.map((r) => r.alert);
    for (const a of ['SynodNoLeader', 'SynodFrequentLeaderChanges', 'SynodSlowWalFsync', 'SynodProposalsFailing', 'SynodTxnInDoubtTooLong', 'SynodLocksLost', 'SynodMemberDown']) expect(names).toContain(a);
    for (const r of rules) {
      expect(r.alert).toBeTruthy();
      expect(r.for).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info']).toContain(r.labels?.severity);
      expect(r.annotations?.summary).toBeTruthy();
      expect(r.annotations?.description).toBeTruthy();
      for (const n of metricNames(r.expr)) expect(KNOWN).toContain(n);
    }
  });

  it.each(dashboards.map((x) => [x.file, x.d] as const))('%s: Grafana JSON with a prometheus datasource variable, unique panel ids, PromQL targets on every panel, only existing metrics', (_file, d) => {
    expect(typeof d.uid).toBe('string');
    expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    const ds = d.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const ids = [...d.panels.map((p) => p.id), ...d.panels.flatMap((p) => (p.panels ?? []).map((q) => q.id))];
    expect(new Set(ids).size).toBe(ids.length);
    const panels = dataPanels(d);
    expect(panels.length).toBeGreaterThan(5);
    for (const p of panels) {
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length ?? 0).toBeGreaterThan(0);
      for (const t of p.targets!) {
        expect(t.expr?.trim()).toBeTruthy();
        for (const n of metricNames(t.expr!)) expect(KNOWN).toContain(n);
      }
    }
  });
});

describe('dashboards and alerts against a real Prometheus scraping a running stack', () => {
  const stack = new Stack();
  let prom: PrometheusServer | undefined;
  let work: Awaited<ReturnType<Stack['workload']>>;

  beforeAll(async () => {
    await stack.start();
    prom = await PrometheusServer.start(stack.scrapeJobs(), RULES_FILE);
    await waitFor('every target scraped and up', async () => {
      const t = await prom!.targets();
      return t.length === 6 && t.every((x) => x.health === 'up') ? t : undefined;
    }, 20_000, 250).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await prom!.targets())}`);
    });
    work = await stack.workload();
    // a few more scrapes after the workload so every rate window holds its samples
    await sleep(3000);
  }, 150_000);

  afterAll(async () => {
    await prom?.stop();
    await stack.stop();
  }, 60_000);

  it('the workload ran: writes, lock grants, commits, an abort, delivered messages', () => {
    expect(work.writes).toBe(30);
    expect(work.grants).toBe(13);
    expect(work.committed).toBe(6);
    expect(work.aborted).toBe(2);
    expect(work.delivered).toBeGreaterThanOrEqual(5);
  });

  it('every dashboard panel query is valid and returns data', async () => {
    const problems: string[] = [];
    let n = 0;
    for (const { file, d } of dashboards) {
      for (const p of dataPanels(d)) {
        for (const t of p.targets ?? []) {
          const expr = substitute(t.expr!);
          expect(expr).not.toMatch(/\$/);
          const r = await prom!.query(expr);
          n++;
          if (r.status !== 'success') problems.push(`${file} "${p.title}" ${t.refId}: ${r.errorType}: ${r.error}\n  ${expr}`);
          else if (!Array.isArray(r.data?.result) || r.data.result.length === 0) problems.push(`${file} "${p.title}" ${t.refId}: no data\n  ${expr}`);
          else if (!(r.data.result as { value: [number, string] }[]).some((s) => Number.isFinite(Number(s.value[1])))) problems.push(`${file} "${p.title}" ${t.refId}: only NaN (no observations in the window)\n  ${expr}`);
        }
      }
    }
    expect(problems).toEqual([]);
    expect(n).toBeGreaterThan(40);
  }, 60_000);

  it('every alert expression is valid; Prometheus loaded and evaluated the rules without errors', async () => {
    for (const r of rules) {
      const q = await prom!.query(r.expr);
      expect({ alert: r.alert, status: q.status, error: q.error }).toEqual({ alert: r.alert, status: 'success', error: undefined });
    }
    const groups = await waitFor('every rule evaluated', async () => {
      const g = (await (await fetch(`${prom!.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
      const all = g.data.groups.flatMap((x) => x.rules);
      return all.length === rules.length && all.every((x) => x.health === 'ok') ? all : undefined;
    }, 10_000, 250);
    expect(groups.map((g) => g.name).sort()).toEqual(rules.map((r) => r.alert).sort());
  });

  it('on the healthy stack the outage alerts do not match', async () => {
    for (const name of ['SynodNoLeader', 'SynodMemberDown', 'SynodConsensusMetricsAbsent', 'SynodTxnNeedsAttention', 'SynodLocksLost']) {
      const r = rules.find((x) => x.alert === name)!;
      const q = await prom!.query(r.expr);
      expect({ name, result: q.data?.result }).toEqual({ name, result: [] });
    }
  });

  it('a killed consensus member matches SynodMemberDown (the job selector fits)', async () => {
    const expr = rules.find((x) => x.alert === 'SynodMemberDown')!.expr;
    const m3 = stack.cluster.members.get(3)!;
    await stack.cluster.kill(3);
    const res = await waitFor('member 3 reported down', async () => {
      const q = await prom!.query(expr);
      const r = q.data?.result as { metric: Record<string, string> }[] | undefined;
      return r && r.length > 0 ? r : undefined;
    }, 10_000, 250);
    expect(res.map((x) => x.metric.instance)).toEqual([`127.0.0.1:${m3.metricsPort}`]);
  });
});
