/**
 * The checkers bite: every planted bug is reported, by the checker of the property it breaks, within a bounded
 * number of random seeds or by a scripted scenario.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BugName, CheckerName, SimResult, runScenario, runSeed } from '@app/testing';

function firstFailingSeed(bug: BugName, maxSeed: number): SimResult | undefined {
  for (let seed = 1; seed <= maxSeed; seed++) {
    const r = runSeed({ seed, bug });
    if (r.violation) return r;
  }
  return undefined;
}

describe('planted bugs are caught', () => {
  const cases: [BugName, CheckerName[]][] = [
    ['vote-without-log-check', ['leader-completeness']],
    ['forget-vote-on-restart', ['durable-state']],
    ['ack-before-fsync', ['durable-state', 'leader-completeness']],
  ];

  it.each(cases)('%s: a seed within 1..200 is reported by %j', (bug, checkers) => {
    const r = firstFailingSeed(bug, 200);
    expect(r).toBeDefined();
    expect(checkers).toContain(r!.violation!.checker);
    // The replay of that seed reproduces the same violation.
    const again = runSeed({ seed: r!.seed, bug });
    expect(again.violation).toEqual(r!.violation);
    expect(again.traceHash).toBe(r!.traceHash);
  });

  it.each([1, 2, 3])('commit-old-term: Figure 8 (scenario seed %i) is reported by leader-completeness', (seed) => {
    const r = runScenario('figure8', { seed, bug: 'commit-old-term' });
    expect(r.violation?.checker).toBe('leader-completeness');
    expect(r.violation?.detail).toMatch(/committed in term/);
  });

  it.each([1, 2, 3])('ack-before-fsync: lost-ack (scenario seed %i) is reported by durable-state at the crash', (seed) => {
    const r = runScenario('lost-ack', { seed, bug: 'ack-before-fsync' });
    expect(r.violation?.checker).toBe('durable-state');
    expect(r.violation?.detail).toMatch(/acknowledged entry/);
  });

  it('the bugs that live in the driver do not fire in scenarios meant for another bug', () => {
    expect(runScenario('figure8', { bug: 'ack-before-fsync' }).violation).toBeUndefined();
    expect(runScenario('lost-ack', { bug: 'commit-old-term' }).violation).toBeUndefined();
  });
});

describe('sim CLI', () => {
  const cli = fileURLToPath(new URL('../src/sim/cli.ts', import.meta.url));
  const run = (...args: string[]) => spawnSync('npx', ['tsx', cli, ...args], { encoding: 'utf8', timeout: 120_000 });

  it('prints the failing seed with its replay command, the summary line last, and exits non-zero', () => {
    const r = run('--seeds', '2', '--bug', 'forget-vote-on-restart');
    const lines = r.stdout.trim().split('\n');
    expect(lines[lines.length - 1]).toMatch(/^sim: 2 seeds, [12] violations$/);
    expect(r.stdout).toMatch(/FAIL seed \d+: \[durable-state\] .* replay: npm run sim -- --seed \d+ --bug forget-vote-on-restart/);
    expect(r.status).not.toBe(0);
  });

  it('exits zero with no violations', () => {
    const r = run('--scenario', 'figure8');
    expect(r.stdout.trim().split('\n').pop()).toBe('sim: 1 seeds, 0 violations');
    expect(r.status).toBe(0);
  });

  it('rejects an unknown bug name', () => {
    const r = run('--seed', '1', '--bug', 'no-such-bug');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/no-such-bug/);
  });
});
