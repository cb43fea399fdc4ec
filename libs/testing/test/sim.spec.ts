import { SimResult, runScenario, runSeed, sampleParams } from '@app/testing';

describe('simulator determinism', () => {
  it.each([1, 2, 7, 11])('replays seed %i exactly (same event-trace hash), verbose or not', (seed) => {
    const a = runSeed({ seed });
    const b = runSeed({ seed });
    const v = runSeed({ seed, verbose: true });
    expect(a.traceHash).toMatch(/^[0-9a-f]{16}$/);
    expect(b.traceHash).toBe(a.traceHash);
    expect(v.traceHash).toBe(a.traceHash);
    expect(b.violation).toEqual(a.violation);
    expect(b.stats).toEqual(a.stats);
    expect(v.trace!.length).toBeGreaterThan(1000);
  });

  it('different seeds give different runs', () => {
    const hashes = new Set([1, 2, 3, 4, 5, 6].map((seed) => runSeed({ seed, ticks: 200 }).traceHash));
    expect(hashes.size).toBe(6);
  });

  it('samples cluster sizes 1, 3 and 5 and every kind of fault', () => {
    const params = Array.from({ length: 60 }, (_, i) => sampleParams(i + 1));
    expect(new Set(params.map((p) => p.size))).toEqual(new Set([1, 3, 5]));
    expect(params.some((p) => p.network.dropRate > 0)).toBe(true);
    expect(params.some((p) => p.network.dupRate > 0)).toBe(true);
    expect(params.some((p) => p.network.maxDelay > 1)).toBe(true);
    expect(params.some((p) => p.faults.partitionRate > 0)).toBe(true);
    expect(params.some((p) => p.faults.crashRate > 0 && p.faults.midReadyCrashRate > 0)).toBe(true);
    expect(params.some((p) => p.faults.confChangeRate > 0)).toBe(true);
    expect(params.some((p) => p.faults.transferRate > 0)).toBe(true);
    expect(Math.min(...params.map((p) => p.snapshotEvery))).toBeLessThanOrEqual(10);
  });
});

describe('simulator without planted bugs', () => {
  const seeds = Array.from({ length: 40 }, (_, i) => i + 1);
  const results: SimResult[] = [];

  beforeAll(() => {
    for (const seed of seeds) results.push(runSeed({ seed }));
  });

  it('finds no violation in seeds 1..40 and every run converges after healing', () => {
    const failures = results
      .filter((r) => r.violation)
      .map((r) => `seed ${r.seed}: [${r.violation!.checker}] ${r.violation!.detail}`);
    expect(failures).toEqual([]);
    for (const r of results) expect(r.convergedAfter).toBeDefined();
  });

  it('actually exercised the faults: crashes mid-Ready, partitions, conf changes, snapshots sent to followers', () => {
    const total = (k: string): number => results.reduce((s, r) => s + (r.stats[k] ?? 0), 0);
    const kinds = [
      'crashes',
      'midReadyCrashes',
      'restarts',
      'partitions',
      'confChanges',
      'transfers',
      'snapshotsTaken',
      'snapshotsInstalled',
      'dropped',
      'duplicated',
      'unreachable',
      'lostInFlight',
    ];
    expect(kinds.filter((k) => !(total(k) > 0))).toEqual([]);
    expect(Math.max(...results.map((r) => r.stats.maxTerm))).toBeGreaterThan(5);
    expect(Math.min(...results.map((r) => r.stats.committed))).toBeGreaterThan(10);
  });
});

describe('scripted scenarios without planted bugs', () => {
  it.each([1, 2, 3])('figure8 (seed %i): the old-term entry is not committed, and the cluster converges', (seed) => {
    const r = runScenario('figure8', { seed });
    expect(r.violation).toBeUndefined();
    expect(r.note).toMatch(/\(d\) .* overwrites index/);
    expect(r.note).toMatch(/healed and converged/);
  });

  it.each([1, 2, 3])('lost-ack (seed %i): a crash before fsync loses an unacknowledged entry only', (seed) => {
    const r = runScenario('lost-ack', { seed });
    expect(r.violation).toBeUndefined();
    expect(r.note).toMatch(/healed and converged/);
  });
});
