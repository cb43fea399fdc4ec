/**
 * Prometheus' own tools check our output: `promtool check metrics` lints a real scrape (exposition format
 * and naming), `promtool check rules` parses every PromQL query docs/metrics.md gives a dashboard.
 * promtool comes with the Debian package `prometheus` (scripts/setup.sh installs it).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GrpcServerMetrics, RaftMetrics, createRegistry } from '@app/observability';

function promtool(): string {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return 'promtool';
  } catch {
    throw new Error('promtool not found: install the Debian package "prometheus" (npm run setup does)');
  }
}

/** Every PromQL query in the "Dashboard queries" section: promql code blocks and the table's query column. */
function docQueries(doc: string): string[] {
  const sec = doc.slice(doc.indexOf('## Dashboard queries'), doc.indexOf('## Adding a metric'));
  const out: string[] = [];
  for (const [, block] of sec.matchAll(/```promql\n([\s\S]*?)```/g)) out.push(...block.trim().split('\n'));
  for (const [, q] of sec.matchAll(/^\|[^|]*\| `(.+)`(?: \([^)|]*\))? \|$/gm)) out.push(q.replace(/\\\|/g, '|'));
  return out;
}

describe('promtool', () => {
  const tool = promtool();

  it('finds no problem in a scrape of every Synod metric', async () => {
    const registry = createRegistry({ defaultMetrics: false }); // prom-client's own nodejs_*_total gauges are not ours to rename
    const raft = new RaftMetrics(registry);
    const grpc = new GrpcServerMetrics(registry);
    raft.onLeaderChange(1, 2, true);
    raft.onElectionStarted('vote');
    raft.onRoundTrip(2, 0.0004);
    raft.onFsync(0.002);
    raft.onProposalCompleted(0.003);
    raft.onProposalFailed('timeout');
    raft.onSnapshot('take', 0.05);
    const labels = { grpc_type: 'unary', grpc_service: 'synod.test.v1.Echo', grpc_method: 'Say' };
    grpc.started.inc(labels);
    grpc.handled.inc({ ...labels, grpc_code: 'OK' });
    grpc.handling.observe(labels, 0.0002);
    const text = await registry.metrics();
    const r = spawnSync(tool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: r.status, out: `${r.stdout}${r.stderr}`.trim() }).toEqual({ status: 0, out: '' });
  });

  it('parses every query docs/metrics.md gives a dashboard', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/metrics.md', import.meta.url)), 'utf8');
    const queries = docQueries(doc);
    expect(queries.length).toBeGreaterThanOrEqual(15);
    expect(queries.some((q) => q.includes('synod_raft_proposal_commit_duration_seconds_bucket') && q.startsWith('histogram_quantile(0.99'))).toBe(true);
    expect(queries.some((q) => q.includes('synod_raft_wal_fsync_duration_seconds_bucket') && q.startsWith('histogram_quantile(0.99'))).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'promtool-'));
    try {
      const file = join(dir, 'rules.yml');
      const rules = queries.map((q, i) => `      - record: doc:query_${i}\n        expr: '${q.replace(/'/g, "''")}'`).join('\n');
      writeFileSync(file, `groups:\n  - name: docs-metrics-md\n    rules:\n${rules}\n`);
      const r = spawnSync(tool, ['check', 'rules', file], { encoding: 'utf8' });
      expect({ status: r.status, out: r.status === 0 ? '' : `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: '' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
