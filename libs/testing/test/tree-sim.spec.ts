/**
 * Tree mode (`--app tree`): the simulator runs the real TreeStateMachine on every node, with a seeded workload of
 * tree commands and the leaders' session bookkeeping, and its checks pass on correct code and bite on planted
 * tree-level bugs.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EntryType } from '@app/raft';
import { CreateMode, SNAPSHOT_KIND, TreeStateMachine, encodeCommand, frame, unframe } from '@app/tree';
import { BugName, SimResult, TreeModel, Violation, runSeed, treeProblem } from '@app/testing';

describe('tree mode without planted bugs', () => {
  const seeds = Array.from({ length: 30 }, (_, i) => i + 1);
  const results: SimResult[] = [];

  beforeAll(() => {
    for (const seed of seeds) results.push(runSeed({ seed, app: 'tree' }));
  });

  it('finds no violation in seeds 1..30 and every run converges with byte-identical trees', () => {
    const failures = results
      .filter((r) => r.violation)
      .map((r) => `seed ${r.seed}: [${r.violation!.checker}] ${r.violation!.detail}`);
    expect(failures).toEqual([]);
    for (const r of results) {
      expect(r.app).toBe('tree');
      expect(r.convergedAfter).toBeDefined();
    }
  });

  it('exercised the tree: every error code, retries, stale duplicates, multi both ways, sessions closed and expired', () => {
    const total = (k: string): number => results.reduce((s, r) => s + (r.stats[k] ?? 0), 0);
    const kinds = [
      'treeCommands',
      'treeRetriesDeduplicated',
      'treeStale',
      'sessionsCreated',
      'sessionsClosed',
      'sessionsExpired',
      'ephemeralsExpired',
      'checkpointsApplied',
      'multiApplied',
      'multiFailed',
      'sequentialCreates',
      'ephemeralCreates',
      'fullTreeChecks',
      'answersLost',
      'clientStops',
      'promotions',
      'snapshotsInstalled',
    ];
    expect(kinds.filter((k) => !(total(k) > 0))).toEqual([]);
    const codes = [
      'NO_NODE',
      'NODE_EXISTS',
      'BAD_VERSION',
      'NOT_EMPTY',
      'NO_CHILDREN_FOR_EPHEMERALS',
      'BAD_ARGUMENTS',
      'SESSION_EXPIRED',
      'DATA_TOO_LARGE',
      'STALE_REQUEST',
    ];
    expect(codes.filter((c) => !(total(`failed:${c}`) > 0))).toEqual([]);
    // Sessions of stopped clients are expired, never earlier than their timeout after the last keep-alive here.
    for (const r of results) if (Number.isFinite(r.stats.expiryIdleMarginMs)) expect(r.stats.expiryIdleMarginMs).toBeGreaterThanOrEqual(0);
  });
});

describe('tree mode determinism', () => {
  it.each([3, 9])('replays seed %i exactly (same trace hash and stats), verbose or not', (seed) => {
    const a = runSeed({ seed, app: 'tree' });
    const b = runSeed({ seed, app: 'tree' });
    const v = runSeed({ seed, app: 'tree', verbose: true });
    expect(b.traceHash).toBe(a.traceHash);
    expect(v.traceHash).toBe(a.traceHash);
    expect(b.stats).toEqual(a.stats);
    expect(b.violation).toEqual(a.violation);
    expect(v.trace!.some((l) => / tree-final /.test(l))).toBe(true);
  });

  it('the digest app stays the default: same run as app "digest", and a different one from the tree app', () => {
    const d = runSeed({ seed: 4, ticks: 300 });
    expect(runSeed({ seed: 4, ticks: 300, app: 'digest' }).traceHash).toBe(d.traceHash);
    expect(d.app).toBe('digest');
    expect(d.params.tree).toBeUndefined();
    const t = runSeed({ seed: 4, ticks: 300, app: 'tree' });
    expect(t.traceHash).not.toBe(d.traceHash);
    // The fault schedule and cluster are the digest mode's: only the workload differs.
    expect({ ...t.params, tree: undefined }).toEqual({ ...d.params, tree: undefined });
  });
});

describe('tree-level planted bugs are caught', () => {
  const first = (bug: BugName, max: number): SimResult | undefined => {
    for (let seed = 1; seed <= max; seed++) {
      const r = runSeed({ seed, app: 'tree', bug });
      if (r.violation) return r;
    }
    return undefined;
  };

  it('tree-double-apply (a retry applied again) is reported by exactly-once, and replays', () => {
    const r = first('tree-double-apply', 10);
    expect(r?.violation?.checker).toBe('exactly-once');
    expect(r!.violation!.detail).toMatch(/applied .* again at index|the retry of .* got/);
    const again = runSeed({ seed: r!.seed, app: 'tree', bug: 'tree-double-apply' });
    expect(again.violation).toEqual(r!.violation);
    expect(again.traceHash).toBe(r!.traceHash);
  });

  it('tree-stale-tracker (a re-elected leader keeps old deadlines) is reported by session-expiry, and replays', () => {
    const r = first('tree-stale-tracker', 60);
    expect(r?.violation?.checker).toBe('session-expiry');
    expect(r!.violation!.detail).toMatch(/its client touched it at \d+ ms/);
    const again = runSeed({ seed: r!.seed, app: 'tree', bug: 'tree-stale-tracker' });
    expect(again.violation).toEqual(r!.violation);
  });

  it('the tree bugs do nothing to the digest app', () => {
    expect(runSeed({ seed: 1, ticks: 300, bug: 'tree-double-apply' }).traceHash).toBe(runSeed({ seed: 1, ticks: 300 }).traceHash);
  });
});

describe('tree structure checks', () => {
  /** A snapshot of `tree` with its header rewritten (every node's data must be empty). */
  const rewrite = (tree: TreeStateMachine, edit: (h: { lastZxid: number; nodes: unknown[][]; sessions: unknown[][] }) => void): Uint8Array => {
    const { header } = unframe(SNAPSHOT_KIND, tree.snapshot(), 'snapshot');
    const h = header as { lastZxid: number; nodes: unknown[][]; sessions: unknown[][]; clients: unknown[] };
    edit(h);
    return frame(SNAPSHOT_KIND, h, []);
  };
  const sane = (): TreeStateMachine => {
    const t = new TreeStateMachine();
    const apply = (index: number, cmd: Parameters<typeof encodeCommand>[0]) =>
      t.apply({ index, term: 1, type: EntryType.Normal, data: encodeCommand(cmd) });
    apply(1, { op: 'createSession', nowMs: 1, timeoutMs: 5000 });
    apply(2, { op: 'create', nowMs: 2, path: '/e', data: new Uint8Array(0), mode: CreateMode.EPHEMERAL, sessionId: 1 });
    apply(3, { op: 'create', nowMs: 3, path: '/p', data: new Uint8Array(0), mode: CreateMode.PERSISTENT });
    return t;
  };

  it('a sound tree passes', () => {
    expect(treeProblem(sane())).toBeUndefined();
  });

  it('an ephemeral with a child is reported', () => {
    const bytes = rewrite(sane(), (h) => {
      h.nodes.push(['/e/c', 3, 3, 3, 3, 3, 0, 0, 0, 0]);
      h.nodes.find((n) => n[0] === '/e')![7] = 1; // its cversion
    });
    const t = new TreeStateMachine();
    t.restore(bytes); // restore does not look for this
    expect(treeProblem(t)).toMatch(/ephemeral "\/e" has children|child of an ephemeral/);
  });

  it('a cversion that does not match the children is reported', () => {
    const bytes = rewrite(sane(), (h) => {
      h.nodes.find((n) => n[0] === '/')![7] = 3; // 2 children, 3 changes: impossible
    });
    const t = new TreeStateMachine();
    t.restore(bytes);
    expect(treeProblem(t)).toMatch(/"\/" has cversion 3 with 2 children/);
  });

  it('a node restoring such a snapshot in the simulator is a tree-invariants violation', () => {
    const model = new TreeModel({ tree: {}, digestEvery: 8, electionTimeoutMs: 100 }, 10);
    const bytes = rewrite(sane(), (h) => {
      h.nodes.find((n) => n[0] === '/')![7] = 3;
    });
    let err: unknown;
    try {
      model.decode(bytes, 1, 3);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Violation);
    expect((err as Violation).checker).toBe('tree-invariants');
  });
});

describe('sim CLI in tree mode', () => {
  const cli = fileURLToPath(new URL('../src/sim/cli.ts', import.meta.url));
  const run = (...args: string[]) => spawnSync('npx', ['tsx', cli, ...args], { encoding: 'utf8', timeout: 120_000 });

  it('prints per-seed tree statistics and the summary line last', () => {
    const r = run('--seeds', '2', '--app', 'tree', '--stats');
    const lines = r.stdout.trim().split('\n');
    expect(lines[lines.length - 1]).toBe('sim: 2 seeds, 0 violations');
    expect(r.stdout).toMatch(/seed 1: tree: \d+ commands applied .* \d+ sessions expired .* \d+ ephemerals deleted/);
    expect(r.status).toBe(0);
  });

  it('names --app tree in the replay command of a failing seed', () => {
    const r = run('--seed', '1', '--app', 'tree', '--bug', 'tree-double-apply');
    expect(r.stdout).toMatch(/FAIL seed 1: \[exactly-once\] .* replay: npm run sim -- --seed 1 --app tree --bug tree-double-apply/);
    expect(r.stdout.trim().split('\n').pop()).toBe('sim: 1 seeds, 1 violations');
    expect(r.status).toBe(1);
  });

  it('refuses a tree bug without --app tree', () => {
    const r = run('--seed', '1', '--bug', 'tree-stale-tracker');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--app tree/);
  });
});
