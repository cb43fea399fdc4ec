/**
 * Failover with real processes: SIGKILL the leader under light load; a new leader takes over, writes resume,
 * no acknowledged write is lost, and the killed member restarts from its WAL and catches up. Then a graceful
 * SIGTERM of the leader hands leadership over before the process exits.
 */
import * as grpc from '@grpc/grpc-js';
import { ProcessCluster, bytes, rpc, sleep, waitFor } from './harness.js';

const cluster = new ProcessCluster([1, 2, 3]);

beforeAll(async () => {
  await cluster.start();
}, 40_000);

afterAll(async () => {
  await cluster.stopAll();
});

const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);

test('SIGKILL of the leader under load: new leader, writes resume, nothing acknowledged is lost, the member catches up', async () => {
  const leader = await cluster.waitLeader();
  await rpc(cluster.coordination(leader), 'Create', { path: '/load' });
  const acked: string[] = [];
  let stop = false;
  let seq = 0;
  let retries = 0;
  // Two writers, each with its own client id; a failed write is retried (same header) on the next member.
  const writer = async (w: number): Promise<void> => {
    let target = w;
    while (!stop) {
      const path = `/load/w${w}-${++seq}`;
      const request = { clientId: `writer-${w}`, seq };
      for (;;) {
        const id = cluster.running()[target % cluster.running().length];
        try {
          await rpc(cluster.coordination(id), 'Create', { path, request }, 2000);
          acked.push(path);
          break;
        } catch (err) {
          const code = (err as grpc.ServiceError).code;
          if (!RETRYABLE.has(code)) throw err;
          retries++;
          target++;
          await sleep(50);
        }
      }
      await sleep(10);
    }
  };
  const writers = [writer(1), writer(2)];
  await waitFor('some writes', () => acked.length >= 20, 10_000);
  const killedAt = acked.length;
  await cluster.kill(leader, 'SIGKILL');
  const survivors = [1, 2, 3].filter((id) => id !== leader);
  const next = await cluster.waitLeader(survivors);
  expect(next).not.toBe(leader);
  await waitFor('writes resumed after the failover', () => acked.length >= killedAt + 20, 15_000);
  stop = true;
  await Promise.all(writers);

  cluster.spawn(leader);
  await cluster.waitServing(leader);
  const target = (await cluster.status(next)).commitIndex as number;
  await waitFor('the restarted member caught up', async () => (await cluster.status(leader)).appliedIndex >= target);
  for (const id of [1, 2, 3]) {
    const kids = (await rpc(cluster.coordination(id), 'GetChildren', { path: '/load' })).children as string[];
    const have = new Set(kids.map((k) => `/load/${k}`));
    const lost = acked.filter((p) => !have.has(p));
    expect(lost).toEqual([]);
  }
  // Writers on followers usually see no error at all: the member retries the forward to the new leader itself.
  expect(retries).toBeLessThan(1000);
  await rpc(cluster.coordination(leader), 'Set', { path: '/load', data: bytes('after'), version: -1 });
}, 60_000);

test('a leader change neither expires a live session nor keeps a dead one alive (tracker reset from checkpoints)', async () => {
  const leader = await cluster.waitLeader();
  const [target, pinger] = [1, 2, 3].filter((id) => id !== leader);
  const C = (id: number) => cluster.coordination(id);
  await rpc(C(pinger), 'Create', { path: '/sess' });
  const live = await rpc(C(pinger), 'CreateSession', { timeoutMs: 1500 });
  const dead = await rpc(C(pinger), 'CreateSession', { timeoutMs: 1500 });
  await rpc(C(pinger), 'Create', { path: '/sess/live', mode: 'EPHEMERAL', sessionId: live.sessionId });
  await rpc(C(pinger), 'Create', { path: '/sess/dead', mode: 'EPHEMERAL', sessionId: dead.sessionId });
  const ka = (C(pinger).KeepAlive as () => grpc.ClientDuplexStream<Record<string, unknown>, Record<string, unknown>>).call(C(pinger));
  ka.on('data', () => undefined);
  ka.on('error', () => undefined);
  const timer = setInterval(() => ka.write({ sessionId: live.sessionId }), 250);
  try {
    await sleep(700); // at least one checkpoint (every 500 ms) records the dead session's shrinking TTL
    const moved = await rpc(cluster.cluster(leader), 'TransferLeadership', { targetId: target });
    expect(moved.leader).toBe(target);
    const t0 = Date.now();
    await waitFor('the dead session expired under the new leader', async () => !(await rpc(C(target), 'Exists', { path: '/sess/dead' })).exists, 6000);
    // Bound: remaining TTL (< 1500 ms) + one election timeout (300 ms) + the loop and commit latency.
    expect(Date.now() - t0).toBeLessThan(3500);
    await sleep(1600); // longer than the live session's timeout
    for (const id of [1, 2, 3]) expect((await rpc(C(id), 'Exists', { path: '/sess/live' })).exists).toBe(true);
  } finally {
    clearInterval(timer);
    ka.end();
  }
  await rpc(C(pinger), 'CloseSession', { sessionId: live.sessionId });
}, 30_000);

test('SIGTERM of the leader hands leadership to another member before it exits', async () => {
  const leader = await cluster.waitLeader();
  const others = [1, 2, 3].filter((id) => id !== leader);
  const t0 = Date.now();
  await cluster.kill(leader, 'SIGTERM');
  const next = await cluster.waitLeader(others, 5000);
  expect(others).toContain(next);
  expect(cluster.logOf(leader)).toMatch(/leadership transferred to member \d/);
  expect(Date.now() - t0).toBeLessThan(5000);
  await rpc(cluster.coordination(next), 'Create', { path: '/after-term' });
}, 30_000);

test('without a quorum a member answers UNAVAILABLE (no leader), and nothing is applied', async () => {
  const alive = cluster.running();
  expect(alive).toHaveLength(2);
  const [victim, last] = alive;
  await cluster.kill(victim, 'SIGKILL');
  await waitFor('member without a leader', async () => (await cluster.status(last)).leader === 0, 10_000);
  const before = (await cluster.status(last)).appliedIndex as number;
  const t0 = Date.now();
  const err = await rpc(cluster.coordination(last), 'Create', { path: '/no-quorum' }, 10_000).then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  expect(err?.code).toBe(grpc.status.UNAVAILABLE);
  expect(err?.details).toMatch(/no leader/);
  expect(Date.now() - t0).toBeLessThan(5000); // bounded by two election timeouts, not the 10 s deadline
  const reads = await rpc(cluster.coordination(last), 'Exists', { path: '/no-quorum', consistency: 'SEQUENTIAL' });
  expect(reads.exists).toBe(false);
  expect((await cluster.status(last)).appliedIndex).toBe(before);
}, 30_000);
