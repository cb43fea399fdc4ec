/**
 * Clock faults (found by the nemesis, docs/reliability.md): a step of the leader's wall clock must not expire
 * live sessions. Before the fix the session tracker read the wall clock: `npm run nemesis -- --runs 1 --seed 201
 * --fault clock --nodes 3 --workload tree` stepped the leader's clock back 41.6 s and forward again, and every
 * session was expired at once although its client kept it alive. Session deadlines now use the monotonic clock
 * (apps/consensus/src/clock.ts); the wall clock only stamps ctime/mtime.
 */
import { SynodClient } from '@app/client';
import { NemesisCluster } from '../../../scripts/nemesis/cluster.js';
import { sleep } from './harness.js';

let cluster: NemesisCluster;
let client: SynodClient;

beforeAll(async () => {
  cluster = new NemesisCluster([1, 2, 3]);
  await cluster.start();
  client = new SynodClient({ endpoints: cluster.endpoints, deadlineMs: 5000 });
}, 60_000);

afterAll(async () => {
  client?.close();
  await cluster?.stop();
});

it.each([
  ['forward', 60_000],
  ['back', -60_000],
])('a wall-clock step %s on the leader expires no live session', async (_dir, offset) => {
  const session = await client.session({ timeoutMs: 1500 });
  let expired: Error | undefined;
  session.once('expired', (e: Error) => (expired = e));
  const path = `/clock-${offset > 0 ? 'fwd' : 'back'}`;
  await client.create(path, '', { mode: 'EPHEMERAL', session });
  const leader = await cluster.leader();
  cluster.setClock(leader, offset, 1);
  await sleep(2500); // longer than the session timeout
  cluster.setClock(leader, 0, 1);
  await sleep(2500);
  expect(expired).toBeUndefined();
  expect(session.state).toBe('open');
  expect((await client.exists(path, { consistency: 'LINEARIZABLE' })).exists).toBe(true);
  // The step is still visible where it belongs: mtime comes from the leader's wall clock.
  cluster.setClock(leader, offset, 1);
  await sleep(200);
  const s = await client.set(path, 'x');
  cluster.setClock(leader, 0, 1);
  expect(Math.abs(s.stat.mtime - (Date.now() + offset))).toBeLessThan(10_000);
  await session.close();
  expect((await client.exists(path, { consistency: 'LINEARIZABLE' })).exists).toBe(false);
}, 30_000);

it('a monotonic clock running 2x fast on the leader keeps a session renewed every timeout/3 alive', async () => {
  const session = await client.session({ timeoutMs: 1500 });
  let expired: Error | undefined;
  session.once('expired', (e: Error) => (expired = e));
  const leader = await cluster.leader();
  cluster.setClock(leader, 0, 2);
  await sleep(3000);
  cluster.setClock(leader, 0, 1);
  expect(expired).toBeUndefined();
  await session.close();
}, 30_000);
