/**
 * The fault harness: `npm run nemesis -- --runs N [--fault kill|pause|partition|clock|restart-all|membership] [--seed S]`.
 * Real consensus members on loopback with a TcpProxy on every peer link; workloads on the tree (always), the
 * lock service and the transaction coordinator; one fault per run; checks after healing (docs/reliability.md).
 *
 * Without --fault the runs cycle through every fault kind; without --workload the extra workload cycles through
 * none, lock, txn; every fourth run has 5 members. The last line is
 *   nemesis: N runs, V violations, L lost acknowledged writes
 * and the exit status is non-zero when V or L > 0, after the command that replays each failing run.
 * `--canary` switches lock fencing off and expects violations (the proof that the faults bite).
 */
import { Command, Option } from 'commander';
import { positiveInt } from './bench/common.js';
import { DEFAULT_TIMINGS, RunOutcome, RunPlan, runOnce } from './nemesis/runner.js';
import { FAULT_KINDS, FaultKind, Workload } from './nemesis/types.js';
import { LockWorkload } from './nemesis/workloads/lock.js';
import { TreeWorkload } from './nemesis/workloads/tree.js';
import { TxnWorkload } from './nemesis/workloads/txn.js';

const EXTRA = ['', 'lock', 'txn'] as const;

function makeWorkload(name: string): Workload {
  switch (name) {
    case 'tree':
      return new TreeWorkload();
    case 'lock':
      return new LockWorkload();
    case 'txn':
      return new TxnWorkload();
    default:
      throw new Error(`unknown workload ${name} (tree, lock, txn)`);
  }
}

function replayCommand(p: RunPlan): string {
  const variant = p.variant ? ` --variant ${p.variant}` : '';
  return `npm run nemesis -- --runs 1 --seed ${p.seed} --fault ${p.fault}${variant} --nodes ${p.nodes} --workload ${['tree', ...p.workloads].join(',')}${p.canary ? ` --canary ${p.canary}` : ''}`;
}

/** What a canary run needs: the workload whose safety net is removed, and a fault that makes it matter. */
const CANARY: Record<'lock' | 'tree', { fault: FaultKind; variant?: string; workloads: string[] }> = {
  lock: { fault: 'pause', workloads: ['lock'] }, // a holder paused inside its critical section past its lease
  tree: { fault: 'partition', variant: 'isolate-leader', workloads: [] }, // the old leader keeps answering reads
};

const program = new Command('nemesis')
  .description('Jepsen-style fault runs against real Synod processes (docs/reliability.md)')
  .option('--runs <n>', 'number of runs', positiveInt, 5)
  .addOption(new Option('--fault <kind>', 'only this fault kind').choices([...FAULT_KINDS]))
  .option('--seed <n>', 'seed of the first run (run i uses seed + i); default: random', (v) => Number.parseInt(v, 10))
  .addOption(new Option('--nodes <n>', 'cluster size (default: 5 every fourth run, else 3)').choices(['3', '5']))
  .option('--workload <list>', 'workloads, comma separated, among tree,lock,txn (tree always runs); default: tree plus none/lock/txn in turn')
  .addOption(new Option('--canary [workload]', 'remove a safety mechanism (lock: fencing off; tree: plant stale reads): every run must show violations in that workload (proves the faults bite and the checks see)').choices(['lock', 'tree']))
  .option('--variant <name>', 'partition: isolate-leader|split|one-way|delay|drop; clock: step|rate|both')
  .option('--hold-ms <ms>', 'how long each fault is held', positiveInt, DEFAULT_TIMINGS.holdMs)
  .showHelpAfterError();
program.parse(process.argv);
const opts = program.opts<{ runs: number; fault?: FaultKind; seed?: number; nodes?: string; workload?: string; canary?: 'lock' | 'tree' | true; variant?: string; holdMs: number }>();
const canary = opts.canary === true ? 'lock' : opts.canary;
const o = { ...opts, canary };

const base = o.seed ?? Math.floor(Math.random() * 1_000_000);
const outcomes: RunOutcome[] = [];
const started = Date.now();
console.log(`nemesis: ${o.runs} runs from seed ${base}${o.canary ? ` (canary: ${o.canary === 'lock' ? 'lock fencing off' : 'stale reads planted in every member'})` : ''}`);
for (let i = 0; i < o.runs; i++) {
  const c = o.canary ? CANARY[o.canary] : undefined;
  const extra = o.workload !== undefined ? o.workload.split(',').map((s) => s.trim()).filter((s) => s && s !== 'tree') : c ? c.workloads : EXTRA[i % EXTRA.length] ? [EXTRA[i % EXTRA.length]] : [];
  const plan: RunPlan = {
    seed: base + i,
    fault: o.fault ?? c?.fault ?? FAULT_KINDS[i % FAULT_KINDS.length],
    nodes: o.nodes ? (Number(o.nodes) as 3 | 5) : i % 4 === 3 ? 5 : 3,
    workloads: extra,
    variant: o.variant ?? (o.fault === undefined ? c?.variant : undefined),
    canary: o.canary,
  };
  const tag = `run ${i + 1}/${o.runs} seed ${plan.seed}`;
  const log = (m: string): void => console.log(`  [${tag}] ${m}`);
  console.log(`${tag}: ${plan.fault}, ${plan.nodes} members, workloads ${['tree', ...plan.workloads].join('+')}`);
  const r = await runOnce(plan, { ...DEFAULT_TIMINGS, holdMs: o.holdMs }, makeWorkload, log);
  outcomes.push(r);
  for (const [name, res] of Object.entries(r.results)) {
    log(`${name}: ${res.ops} ops, ${res.indeterminate} indeterminate, ${res.violations.length} violations, ${res.lost.length} lost${res.stats ? ` ${JSON.stringify(res.stats)}` : ''}`);
  }
  for (const v of r.violations) log(`VIOLATION ${v}`);
  for (const l of r.lost) log(`LOST ${l}`);
  const bad = r.violations.length > 0 || r.lost.length > 0;
  const verdict = o.canary ? (bad ? 'violations found (canary: expected)' : 'no violation (canary: NOT expected)') : bad ? 'FAILED' : 'ok';
  console.log(`${tag}: ${verdict} in ${(r.durationMs / 1000).toFixed(1)} s (${r.ratePerSec} ops/s before the fault; ${r.fault})`);
  if (bad && !o.canary) console.log(`  replay: ${replayCommand(plan)}`);
}

const V = outcomes.reduce((a, r) => a + r.violations.length, 0);
const L = outcomes.reduce((a, r) => a + r.lost.length, 0);
console.log(`elapsed ${((Date.now() - started) / 1000).toFixed(0)} s`);
if (o.canary) {
  // The canary's own workload must fail; everything else must still hold.
  const w = o.canary;
  const mine = (r: RunOutcome): number => (r.results[w]?.violations.length ?? 0) + (r.results[w]?.lost.length ?? 0);
  const bitten = outcomes.filter((r) => mine(r) > 0).length;
  const others = outcomes.flatMap((r) => [...r.violations, ...r.lost].filter((v) => !v.startsWith(`${w}:`)));
  for (const r of outcomes.filter((x) => mine(x) === 0)) console.log(`canary did not bite: ${replayCommand(r.plan)}`);
  console.log(`nemesis canary (${w}): ${outcomes.length} runs, ${bitten} showed ${w} violations (expected: all), ${others.length} other violations or lost writes`);
  process.exit(bitten === outcomes.length && others.length === 0 ? 0 : 1);
}
console.log(`nemesis: ${outcomes.length} runs, ${V} violations, ${L} lost acknowledged writes`);
process.exit(V > 0 || L > 0 ? 1 : 0);
