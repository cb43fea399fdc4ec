/**
 * One nemesis run: cluster up → workloads set up and started → warm-up (the load must reach 100 operations/s)
 * → one fault, held → heal → recovery (one leader agreed by every member) → more load → stop → every member
 * converges to the same applied index and the same /nemesis subtree → each workload's checks → teardown.
 * See docs/reliability.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SynodClient } from '@app/client';
import { Rng } from '@app/testing';
import { sleep } from '../../apps/consensus/test/harness.js';
import { NemesisCluster } from './cluster.js';
import { inject } from './faults.js';
import type { FaultKind, RunContext, Workload, WorkloadResult } from './types.js';

export interface RunPlan {
  seed: number;
  fault: FaultKind;
  nodes: 3 | 5;
  /** Workloads besides `tree` (which always runs: it is the load and the source of the state check). */
  workloads: string[];
  /** A partition or clock variant (faults.ts); default: picked by the seed. */
  variant?: string;
  /**
   * Canary runs must show violations: 'lock' switches the resource's fencing off; 'tree' plants the
   * `stale-reads` bug in every member (LINEARIZABLE reads served locally).
   */
  canary?: 'lock' | 'tree';
}

export interface RunTimings {
  warmMs: number;
  holdMs: number;
  afterMs: number;
}

export const DEFAULT_TIMINGS: RunTimings = { warmMs: 3000, holdMs: 3500, afterMs: 2000 };

export interface RunOutcome {
  plan: RunPlan;
  fault: string;
  ratePerSec: number;
  results: Record<string, WorkloadResult>;
  violations: string[];
  lost: string[];
  durationMs: number;
  /** Kept when the run failed: member and workload logs. */
  dir?: string;
}

export type WorkloadFactory = (name: string) => Workload;

/** Reads the /nemesis subtree from one member only (SEQUENTIAL reads served by that member). */
async function dump(endpoint: string): Promise<string> {
  const c = new SynodClient({ endpoints: [endpoint], deadlineMs: 10_000 });
  try {
    const out: string[] = [];
    const walk = async (path: string): Promise<void> => {
      const g = await c.get(path, { consistency: 'SEQUENTIAL' });
      out.push(`${path} v${g.stat.version} c${g.stat.czxid} m${g.stat.mzxid} ${g.data.toString('utf8')}`);
      const kids = (await c.getChildren(path, { consistency: 'SEQUENTIAL' })).children.sort();
      for (const k of kids) await walk(`${path}/${k}`);
    };
    await walk('/nemesis');
    return out.join('\n');
  } finally {
    c.close();
  }
}

export async function runOnce(plan: RunPlan, timings: RunTimings, make: WorkloadFactory, log: (msg: string) => void): Promise<RunOutcome> {
  const t0 = performance.now();
  const rng = new Rng(plan.seed);
  const ids = Array.from({ length: plan.nodes }, (_, i) => i + 1);
  const cluster = new NemesisCluster(ids, plan.canary === 'tree' ? ['stale-reads'] : []);
  const dir = mkdtempSync(join(tmpdir(), 'synod-nemesis-'));
  const workloads: Workload[] = [make('tree'), ...plan.workloads.map(make)];
  const violations: string[] = [];
  const lost: string[] = [];
  const results: Record<string, WorkloadResult> = {};
  let fault = plan.fault as string;
  let ratePerSec = 0;
  try {
    await cluster.start();
    const ctx: RunContext = {
      seed: plan.seed,
      rng: rng.fork('workload'),
      endpoints: cluster.endpoints,
      dir,
      fault: plan.fault,
      canary: plan.canary === 'lock',
      log,
    };
    for (const w of workloads) await w.setup(ctx);
    for (const w of workloads) w.start();
    const total = (): number => workloads.reduce((a, w) => a + w.completed(), 0);
    const before = total();
    await sleep(timings.warmMs);
    ratePerSec = Math.round(((total() - before) * 1000) / timings.warmMs);
    if (ratePerSec < 100) violations.push(`load before the fault was ${ratePerSec} operations/s, below the 100/s a run needs (the machine is overloaded?)`);

    for (const w of workloads) await w.onFault?.(plan.fault);
    const injected = await inject(plan.fault, cluster, rng.fork('fault'), timings.holdMs, plan.variant);
    fault = injected.description;
    log(`fault: ${fault}`);
    await injected.heal();
    cluster.healAll();
    for (const w of workloads) await w.onHeal?.(plan.fault);
    const healedAt = performance.now();
    const leader = await cluster.waitRecovered();
    log(`recovered: leader ${leader} after ${Math.round(performance.now() - healedAt)} ms`);
    await sleep(timings.afterMs);
    for (const w of workloads) await w.stop();

    for (const w of workloads) {
      const r = await w.check();
      results[w.name] = r;
      violations.push(...r.violations.map((v) => `${w.name}: ${v}`));
      lost.push(...r.lost.map((v) => `${w.name}: ${v}`));
    }

    // Equal state on every member.
    const applied = await cluster.waitConverged();
    const dumps = await Promise.all(cluster.endpoints.map((ep) => dump(ep)));
    for (let i = 1; i < dumps.length; i++) {
      if (dumps[i] !== dumps[0]) {
        const a = dumps[0].split('\n');
        const b = dumps[i].split('\n');
        const at = a.findIndex((l, j) => l !== b[j]);
        violations.push(`member ${ids[i]} differs from member ${ids[0]} at applied index ${applied}: "${b[at] ?? '(missing)'}" vs "${a[at] ?? '(missing)'}"`);
      }
    }
  } catch (err) {
    violations.push(`run failed: ${(err as Error).stack ?? String(err)}`);
  } finally {
    for (const w of workloads) await w.teardown().catch((e: unknown) => log(`teardown of ${w.name}: ${(e as Error).message}`));
    const failed = (violations.length > 0 || lost.length > 0) && !plan.canary; // a canary is meant to fail
    if (failed) {
      process.env.SYNOD_KEEP_TEST_DIRS = '1';
      log(`logs kept: members in ${cluster.dir}, workloads in ${dir}`);
    }
    await cluster.stop().catch((e: unknown) => log(`stopping the cluster: ${(e as Error).message}`));
    if (failed) delete process.env.SYNOD_KEEP_TEST_DIRS;
    else rmSync(dir, { recursive: true, force: true });
  }
  const failed = (violations.length > 0 || lost.length > 0) && !plan.canary;
  return { plan, fault, ratePerSec, results, violations, lost, durationMs: Math.round(performance.now() - t0), dir: failed ? dir : undefined };
}
