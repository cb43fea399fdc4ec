/**
 * A real Prometheus server (Debian package `prometheus`) for tests: scrapes the given loopback targets every
 * second from a temp config and data dir, on a free loopback port; queried through its HTTP API; stopped by pid.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, waitFor } from '../../apps/consensus/test/harness.js';

export interface ScrapeJob {
  job: string;
  /** host:port of each target's metrics endpoint. */
  targets: string[];
}

export interface QueryResult {
  status: string;
  error?: string;
  errorType?: string;
  data?: { resultType: string; result: unknown };
}

export class PrometheusServer {
  proc: ChildProcess | undefined;
  port = 0;
  private dir = '';
  private exited: Promise<unknown> | undefined;

  static async start(jobs: ScrapeJob[], rulesFile?: string): Promise<PrometheusServer> {
    const p = new PrometheusServer();
    await p.run(jobs, rulesFile);
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async logText(): Promise<string> {
    return readFile(join(this.dir, 'prometheus.log'), 'utf8').catch(() => '');
  }

  private async run(jobs: ScrapeJob[], rulesFile?: string): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'synod-prometheus-'));
    this.port = await freePort();
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
      ...(rulesFile ? { rule_files: [rulesFile] } : {}),
      scrape_configs: jobs.map((j) => ({ job_name: j.job, static_configs: [{ targets: j.targets }] })),
    };
    const configFile = join(this.dir, 'prometheus.yml');
    await writeFile(configFile, stringify(config));
    const { openSync, closeSync } = await import('node:fs');
    const log = openSync(join(this.dir, 'prometheus.log'), 'a');
    const proc = spawn('prometheus', [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(this.dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${this.port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ], { cwd: this.dir, stdio: ['ignore', log, log] });
    closeSync(log);
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', r));
    try {
      await waitFor('prometheus ready', async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}`);
        const r = await fetch(`${this.url}/-/ready`).catch(() => undefined);
        return r?.ok === true;
      }, 20_000, 100);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- prometheus log ---\n${await this.logText()}`);
    }
  }

  async query(expr: string): Promise<QueryResult> {
    const r = await fetch(`${this.url}/api/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr }).toString(),
      signal: AbortSignal.timeout(10_000),
    });
    return (await r.json()) as QueryResult;
  }

  /** Active targets with their health (`up`, `down`, `unknown`). */
  async targets(): Promise<{ job: string; instance: string; health: string; lastError: string }[]> {
    const r = (await (await fetch(`${this.url}/api/v1/targets?state=active`, { signal: AbortSignal.timeout(10_000) })).json()) as {
      data: { activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] };
    };
    return r.data.activeTargets.map((t) => ({ job: t.labels.job, instance: t.labels.instance, health: t.health, lastError: t.lastError }));
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      process.kill(p.pid!, 'SIGTERM');
      const t = setTimeout(() => p.exitCode === null && p.signalCode === null && process.kill(p.pid!, 'SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
    this.proc = undefined;
    if (this.dir && !process.env.SYNOD_KEEP_TEST_DIRS) await rm(this.dir, { recursive: true, force: true });
  }
}
