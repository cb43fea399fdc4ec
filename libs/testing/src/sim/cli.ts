/**
 * The simulator's command line (`npm run sim -- ...`).
 *
 *   npm run sim -- --seeds 500            run seeds 1..500
 *   npm run sim -- --seed 42 --verbose    replay seed 42 exactly and print its event trace
 *   npm run sim -- --seeds 200 --bug commit-old-term
 *   npm run sim -- --scenario figure8 --bug commit-old-term
 *   npm run sim -- --seeds 100 --app tree --stats   the nodes run the real TreeStateMachine
 *
 * One line per failing seed (the violation and the command that replays it); the last line is always
 * `sim: N seeds, V violations`, and the exit code is non-zero when V > 0.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { BUG_NAMES, BugName, TREE_BUGS } from './bugs.js';
import { SCENARIOS, ScenarioName, runScenario } from './scenarios.js';
import { APP_NAMES, AppName, SimResult, runSeed } from './simulate.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

interface CliOptions {
  seeds?: number;
  seed?: number;
  from: number;
  app: AppName;
  bug?: BugName;
  ticks?: number;
  scenario?: ScenarioName;
  verbose?: boolean;
  stats?: boolean;
}

function replayCommand(seed: number, o: CliOptions): string {
  const parts = ['npm run sim --', `--seed ${seed}`];
  if (o.app !== 'digest') parts.push(`--app ${o.app}`);
  if (o.bug) parts.push(`--bug ${o.bug}`);
  if (o.ticks) parts.push(`--ticks ${o.ticks}`);
  return parts.join(' ');
}

function describe(r: SimResult): string {
  const p = r.params;
  const f = p.faults;
  const t = p.tree;
  const tree = t
    ? `; tree: tick ${t.tickMs} ms, session timeouts ${t.sessionTimeoutTicks.join('-')} ticks, checkpoint every ${t.checkpointEveryTicks}, ` +
      `digest every ${t.digestEvery}, maxData ${t.maxDataBytes}, retry after ${t.retryAfterTicks}, answer loss ${t.responseLossRate}, ` +
      `client stops ${t.clientStopRate}, sessions ${t.sessionUse}`
    : '';
  return (
    `seed ${r.seed} (${r.app}): ${p.size} nodes, electionTick ${p.electionTick}, heartbeatTick ${p.heartbeatTick}, ` +
    `${p.faultTicks} fault ticks; net drop ${p.network.dropRate} dup ${p.network.dupRate} delay ${p.network.minDelay}-${p.network.maxDelay}; ` +
    `partitions ${f.partitionRate}, crashes ${f.crashRate} (mid-ready ${f.midReadyCrashRate}), conf changes ${f.confChangeRate}, ` +
    `transfers ${f.transferRate}; maxSizePerMsg ${p.maxSizePerMsg} maxInflight ${p.maxInflightMsgs}; snapshot every ${p.snapshotEvery} keep ${p.snapshotKeep}; ${p.clients} clients at ${p.clientRate}/tick${tree}`
  );
}

function main(argv: string[]): number {
  const program = new Command()
    .name('sim')
    .description('Deterministic Raft simulator: random faults, safety checkers after every step, then a liveness phase.')
    .option('--seeds <n>', 'run seeds from..from+n-1', positiveInt)
    .option('--seed <s>', 'replay exactly one seed', positiveInt)
    .option('--from <s>', 'first seed for --seeds', positiveInt, 1)
    .addOption(new Option('--app <name>', 'the state machine the nodes run').choices(APP_NAMES).default('digest'))
    .addOption(new Option('--bug <name>', 'plant a known bug (test only) to prove the checkers bite').choices(BUG_NAMES))
    .option('--ticks <n>', 'override the length of the fault phase (ticks)', positiveInt)
    .addOption(new Option('--scenario <name>', 'run a scripted scenario instead of random seeds').choices(Object.keys(SCENARIOS)))
    .option('--verbose', 'print the parameters and the event trace of each run')
    .option('--stats', 'print per-seed statistics')
    .exitOverride();
  try {
    program.parse(argv);
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    return code ?? 2;
  }
  const o = program.opts<CliOptions>();
  if (o.bug && TREE_BUGS.includes(o.bug) && o.app !== 'tree') {
    console.error(`--bug ${o.bug} lives in the tree state machine: add --app tree`);
    return 2;
  }

  if (o.scenario) {
    const r = runScenario(o.scenario, { bug: o.bug, verbose: o.verbose, seed: o.seed });
    if (o.verbose && r.trace) for (const line of r.trace) console.log(line);
    const v = r.violation ? 1 : 0;
    if (r.violation) {
      console.log(
        `FAIL scenario ${o.scenario}${o.bug ? ` (bug ${o.bug})` : ''}: [${r.violation.checker}] at tick ${r.violation.tick}: ` +
          `${r.violation.detail} — replay: npm run sim -- --scenario ${o.scenario}` +
          `${o.seed !== undefined ? ` --seed ${o.seed}` : ''}${o.bug ? ` --bug ${o.bug}` : ''}`,
      );
    } else if (o.verbose) console.log(`scenario ${o.scenario}: ${r.note}`);
    console.log(`sim: 1 seeds, ${v} violations`);
    return v > 0 ? 1 : 0;
  }

  let seeds: number[];
  if (o.seed !== undefined) seeds = [o.seed];
  else seeds = Array.from({ length: o.seeds ?? 100 }, (_, i) => o.from + i);

  let violations = 0;
  const started = performance.now();
  for (const seed of seeds) {
    const r = runSeed({ seed, app: o.app, bug: o.bug, ticks: o.ticks, verbose: o.verbose });
    if (o.verbose) {
      console.log(describe(r));
      for (const line of r.trace ?? []) console.log(line);
      console.log(`seed ${seed}: trace hash ${r.traceHash}, ${r.ticks} ticks`);
    }
    if (o.stats && r.app === 'tree') {
      const s = r.stats;
      console.log(
        `seed ${seed}: tree: ${s.treeCommands} commands applied (${s.treeFailed} failed, ${s.treeRetriesDeduplicated} retries deduplicated, ` +
          `${s.treeStale} stale), ${s.sessionsExpired} sessions expired (${s.sessionsCreated} created, ${s.sessionsClosed} closed), ` +
          `${s.ephemeralsDeleted} ephemerals deleted (${s.ephemeralsExpired} by expiry), ${s.checkpointsApplied} checkpoints`,
      );
    }
    if (o.stats) console.log(`seed ${seed}: ${r.ticks} ticks, converged after ${r.convergedAfter ?? '-'}; ${JSON.stringify(r.stats)}`);
    if (r.violation) {
      violations++;
      console.log(
        `FAIL seed ${seed}: [${r.violation.checker}] at tick ${r.violation.tick}: ${r.violation.detail} — replay: ${replayCommand(seed, o)}`,
      );
    }
  }
  if (o.stats || o.verbose) console.error(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
  console.log(`sim: ${seeds.length} seeds, ${violations} violations`);
  return violations > 0 ? 1 : 0;
}

process.exitCode = main(process.argv);
