import { CRASH_MODES, CrashingFileOps, Wal } from '@app/storage';
import { StateType } from '@app/raft';
import { KvStateMachine, Member, TestCluster, put, waitFor } from './helpers.js';

describe('RaftNode: recovery', () => {
  let c: TestCluster;

  afterEach(async () => {
    await c.destroy();
  });

  it('starts from a data dir whose hard state is behind its snapshot (crash between the two saves of a Ready)', async () => {
    c = new TestCluster([1, 2, 3]);
    await c.init();
    // What a follower leaves behind when it crashes after wal.saveSnapshot of an installed snapshot and before
    // the wal.save of the same Ready's hard state.
    const { wal } = await Wal.open(c.dataDir(1));
    await wal.save({ term: 1, vote: 0, commit: 0 }, [], true);
    const app = new KvStateMachine();
    app.data.set('from-snapshot', 'yes');
    app.lastIndex = 10;
    await wal.saveSnapshot({ metadata: { index: 10, term: 2, confState: { voters: [1, 2, 3], learners: [] } }, data: app.snapshot() });
    await wal.close();

    c.hub.isolate(1, [1, 2, 3]);
    const m = await c.start(1);
    const st = m.node.status();
    expect(st.phase).toBe('running');
    expect(st.commit).toBe(10);
    expect(st.applied).toBe(10);
    expect(st.term).toBe(2);
    expect(m.kv.data.get('from-snapshot')).toBe('yes');
    expect(c.log.lines.some((l) => l.includes('is behind snapshot 10'))).toBe(true);

    // It then serves as a normal member of a cluster with that history.
    c.hub.heal();
    await c.start(2);
    await c.start(3); // 2 and 3 are new: bootstrapped at index 3, they catch up from node 1 (the only full log)
    const leader = await c.waitForLeader(8000);
    expect(leader.node.id).toBe(1); // the only log that is up to date
    await leader.node.propose(put('after', '1'));
    await c.waitForValue('from-snapshot', 'yes');
    await c.waitForValue('after', '1');
  });

  it('loses no acknowledged write while its nodes crash at arbitrary storage operations and restart', async () => {
    c = new TestCluster([1, 2, 3], { snapshotEvery: 30, snapshotCatchUpEntries: 10, proposalTimeoutMs: 1000 });
    await c.init();
    let crashes = 0;
    const plannedCrashes = new Map<number, number>([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    const fileOpsFor = (id: number): CrashingFileOps | undefined => {
      const left = plannedCrashes.get(id)!;
      if (left === 0) return undefined; // real file system from now on
      plannedCrashes.set(id, left - 1);
      const mode = CRASH_MODES[(id + left) % CRASH_MODES.length];
      return new CrashingFileOps({ crashAtOp: 25 + 11 * id + 7 * left, mode });
    };
    const startWithCrashes = async (id: number): Promise<void> => {
      const fileOps = fileOpsFor(id);
      await c.start(id, fileOps ? { wal: { fileOps } } : {});
    };
    for (const id of [1, 2, 3]) await startWithCrashes(id);

    // Restart every node that failed (its CrashingFileOps rewrote its files to what a power loss leaves).
    let done = false;
    const monitor = (async () => {
      while (!done) {
        for (const id of [1, 2, 3]) {
          if (c.m(id).node.status().phase !== 'failed') continue;
          crashes++;
          await c.stop(id);
          await startWithCrashes(id);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    const acked = new Map<string, string>();
    const target = (): Member => c.running().find((m) => m.node.status().role === StateType.Leader) ?? c.running()[0];
    try {
      for (let i = 0; i < 150; i++) {
        const key = `k${i}`;
        const deadline = Date.now() + 15_000;
        for (;;) {
          const m = target();
          try {
            if (!m) throw new Error('no running node');
            await m.node.propose(put(key, `v${i}`));
            acked.set(key, `v${i}`);
            break;
          } catch (err) {
            if (Date.now() > deadline) throw new Error(`could not write ${key}: ${String(err)}\n${c.describe()}`);
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      }
    } finally {
      done = true;
      await monitor;
    }
    expect(crashes).toBeGreaterThanOrEqual(3);

    // Everything acknowledged is on every node, after one more full restart on the real file system.
    await c.stopAll();
    for (const id of [1, 2, 3]) plannedCrashes.set(id, 0);
    for (const id of [1, 2, 3]) await startWithCrashes(id);
    await c.waitForLeader(8000);
    await c.waitForConvergence([1, 2, 3], 8000);
    for (const id of [1, 2, 3]) {
      const kv = c.m(id).kv.data;
      for (const [k, v] of acked) if (kv.get(k) !== v) throw new Error(`node ${id} lost acknowledged ${k}=${v} (has ${kv.get(k)})\n${c.describe()}`);
    }
    await waitFor('identical state machines', () => [2, 3].every((id) => JSON.stringify([...c.m(id).kv.data]) === JSON.stringify([...c.m(1).kv.data])), 3000, () => c.describe());
  }, 60_000);
});
