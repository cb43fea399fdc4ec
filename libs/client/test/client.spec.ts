/**
 * SynodClient against a real 3-member cluster (apps/consensus processes on 127.0.0.1, spawned by the
 * consensus test harness). No mocks: members are SIGKILLed for failover, resume and retry tests.
 */
import * as grpc from '@grpc/grpc-js';
import { ProcessCluster, bytes, rpc, sleep, waitFor } from '../../../apps/consensus/test/harness.js';
import { SynodClient, SynodError, WatchCompactedError } from '../src/index.js';
import type { WatchEvent } from '../src/index.js';

const cluster = new ProcessCluster([1, 2, 3]);
const ep = (id: number): string => `127.0.0.1:${cluster.members.get(id)!.clientPort}`;
const clients: SynodClient[] = [];
const client = (endpoints: string[], o: { deadlineMs?: number } = {}): SynodClient => {
  const c = new SynodClient({ endpoints, deadlineMs: o.deadlineMs ?? 8000 });
  clients.push(c);
  return c;
};
let leader = 0;
let followers: number[] = [];

async function refreshLeader(): Promise<void> {
  leader = await cluster.waitLeader();
  followers = cluster.running().filter((id) => id !== leader);
}

async function restart(id: number): Promise<void> {
  cluster.spawn(id);
  await cluster.waitServing(id);
  await refreshLeader();
}

async function expectCode(p: Promise<unknown>, code: grpc.status): Promise<SynodError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SynodError);
    expect(grpc.status[(err as SynodError).code]).toBe(grpc.status[code]);
    return err as SynodError;
  }
  throw new Error(`expected ${grpc.status[code]}, but the call succeeded`);
}

beforeAll(async () => {
  await cluster.start();
  await refreshLeader();
}, 40_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cluster.stopAll();
}, 30_000);

describe('SynodClient', () => {
  test.each(['leader', 'follower'])('create/get/set/delete through the %s', async (which) => {
    const c = client([which === 'leader' ? ep(leader) : ep(followers[0])]);
    const p = `/crud-${which}`;
    const cr = await c.create(p, 'v0');
    expect(cr.path).toBe(p);
    expect(cr.stat.version).toBe(0);
    const g = await c.get(p);
    expect(g.data.toString()).toBe('v0');
    expect(g.header.memberId).toBe(which === 'leader' ? leader : followers[0]);
    const s = await c.set(p, 'v1', { version: 0 });
    expect(s.stat.version).toBe(1);
    const e = await expectCode(c.set(p, 'v2', { version: 0 }), grpc.status.FAILED_PRECONDITION);
    expect(e.details).toMatch(/version/);
    await expectCode(c.create(p, 'again'), grpc.status.ALREADY_EXISTS);
    await expectCode(c.create('/no/parent', ''), grpc.status.NOT_FOUND);
    await expectCode(c.create('bad//path', ''), grpc.status.INVALID_ARGUMENT);
    expect((await c.getChildren('/')).children).toContain(p.slice(1));
    expect((await c.exists(p, { consistency: 'SEQUENTIAL' })).exists).toBe(true);
    await c.delete(p, { version: 1 });
    expect((await c.exists(p)).exists).toBe(false);
    await expectCode(c.get(p), grpc.status.NOT_FOUND);
    const m = await c.multi([
      { op: 'create', path: `${p}-m`, data: 'x' },
      { op: 'create', path: `${p}-m/child`, data: 'y' },
    ]);
    expect(m.succeeded).toBe(true);
    const bad = await c.multi([{ op: 'create', path: `${p}-m2` }, { op: 'check', path: `${p}-m`, version: 7 }]);
    expect(bad.succeeded).toBe(false);
    expect(bad.failedOp).toBe(1);
    expect(bad.results.map((r) => r.kind)).toEqual(['rolledBack', 'error']);
    expect((await c.exists(`${p}-m2`)).exists).toBe(false);
  });

  test('status, members, and admin calls follow the leader hint from a follower', async () => {
    const c = client([ep(followers[0])]);
    const st = await c.status();
    expect(st.id).toBe(followers[0]);
    expect(st.leader).toBe(leader);
    expect((await c.members()).map((m) => m.id)).toEqual([1, 2, 3]);
    // A follower answers UNAVAILABLE with the leader's address; the client retries there.
    expect(await c.transferLeadership(leader)).toBe(leader);
    expect(c.endpoints).toEqual([ep(followers[0]), ep(leader)]);
    await expectCode(c.promoteMember(2), grpc.status.FAILED_PRECONDITION);
    await expectCode(c.removeMember(99), grpc.status.NOT_FOUND);
  });

  test('a retried write with the same (client_id, seq) is applied once (raw RPC on two members)', async () => {
    const c = client([ep(leader)]);
    await c.create('/once');
    const req = { path: '/once/item-', data: bytes('x'), mode: 'PERSISTENT_SEQUENTIAL', request: { clientId: 'raw-retry', seq: 1 } };
    const a = await rpc(cluster.coordination(leader), 'Create', req);
    const b = await rpc(cluster.coordination(followers[0]), 'Create', req);
    expect(b.path).toBe(a.path);
    expect((await c.getChildren('/once')).children).toEqual([a.path.slice('/once/'.length)]);
  });

  test('SEQUENTIAL reads never go backwards when the client switches members', async () => {
    const c = client([ep(leader), ep(followers[0]), ep(followers[1])]);
    await c.create('/seq', '0');
    let lastZxid = 0;
    for (let i = 1; i <= 30; i++) {
      c.use(ep(leader));
      const w = await c.set('/seq', String(i));
      c.use(ep(followers[i % 2]));
      const r = await c.get('/seq', { consistency: 'SEQUENTIAL' });
      expect(r.header.memberId).toBe(followers[i % 2]);
      expect(r.data.toString()).toBe(String(i));
      expect(r.stat.mzxid).toBe(w.stat.mzxid);
      expect(r.header.zxid).toBeGreaterThanOrEqual(lastZxid);
      lastZxid = r.header.zxid;
    }
  });

  test('a session keeps its ephemeral node alive over 3x its timeout; close() removes it', async () => {
    const c = client([ep(followers[0]), ep(leader)]);
    const s = await c.session({ timeoutMs: 600 });
    expect(s.timeoutMs).toBe(600);
    let expired = false;
    s.on('expired', () => (expired = true));
    await c.create('/eph', 'mine', { mode: 'EPHEMERAL', session: s });
    await sleep(3 * 600 + 200);
    expect(expired).toBe(false);
    const st = await c.exists('/eph');
    expect(st.stat?.ephemeralOwner).toBe(s.id);
    await s.close();
    expect((await c.exists('/eph')).exists).toBe(false);
    expect(s.state).toBe('closed');
  });

  test('await using closes a session; an abandoned session expires on the server', async () => {
    const c = client([ep(leader)]);
    {
      await using s = await c.session({ timeoutMs: 600 });
      await c.create('/eph-using', '', { mode: 'EPHEMERAL_SEQUENTIAL', sessionId: s.id });
      expect((await c.getChildren('/')).children.some((n) => n.startsWith('eph-using'))).toBe(true);
    }
    expect((await c.getChildren('/')).children.some((n) => n.startsWith('eph-using'))).toBe(false);
    const s2 = await c.session({ timeoutMs: 500 });
    await c.create('/eph-abandoned', '', { mode: 'EPHEMERAL', session: s2 });
    s2.abandon();
    await waitFor('the abandoned session to expire', async () => !(await c.exists('/eph-abandoned')).exists, 8000);
    await expectCode(c.create('/eph-late', '', { mode: 'EPHEMERAL', sessionId: s2.id }), grpc.status.FAILED_PRECONDITION);
  });

  test('get({watch: true}) returns a one-shot watch started at the read', async () => {
    const c = client([ep(leader)]);
    await c.create('/gw', 'a');
    const r = await c.get('/gw', { watch: true });
    await c.set('/gw', 'b');
    const ev = await r.watch!.next();
    expect(ev?.type).toBe('NODE_DATA_CHANGED');
    expect(await r.watch!.next()).toBeUndefined();
  });

  test('a watch resumes after its member is SIGKILLed: no gap, no duplicate', async () => {
    const writer = client([ep(leader)]);
    await writer.create('/w');
    await writer.create('/w/a', '0');
    const victim = followers[0];
    const wc = client([ep(victim), ep(leader), ep(followers[1])]);
    const w = wc.watch('/w', 'PERSISTENT_RECURSIVE');
    await w.ready;
    const got: WatchEvent[] = [];
    const reading = (async () => {
      for await (const e of w) {
        got.push(e);
        if (got.length === 12) break;
      }
    })();
    const zxids: number[] = [];
    for (let i = 1; i <= 6; i++) zxids.push((await writer.set('/w/a', String(i))).stat.mzxid);
    await waitFor('the first 6 events', () => got.length >= 6, 5000);
    expect(w.currentEndpoint).toBe(ep(victim));
    await cluster.kill(victim, 'SIGKILL');
    for (let i = 7; i <= 12; i++) zxids.push((await writer.set('/w/a', String(i))).stat.mzxid);
    await Promise.race([reading, sleep(10_000).then(() => Promise.reject(new Error(`watch got ${got.length} events`)))]);
    expect(w.reconnects).toBeGreaterThanOrEqual(1);
    expect(w.currentEndpoint).not.toBe(ep(victim));
    expect(got.map((e) => e.zxid)).toEqual(zxids);
    expect(got.every((e) => e.type === 'NODE_DATA_CHANGED' && e.path === '/w/a')).toBe(true);
    await restart(victim);
  }, 30_000);

  test('failover: the first endpoint is SIGKILLed, calls keep working through the others', async () => {
    const victim = followers[0];
    const others = [leader, followers[1]];
    const c = client([ep(victim), ...others.map(ep)]);
    await c.create('/fo', 'before');
    await cluster.kill(victim, 'SIGKILL');
    await c.set('/fo', 'after');
    expect((await c.get('/fo')).data.toString()).toBe('after');
    expect((await c.get('/fo', { consistency: 'SEQUENTIAL' })).data.toString()).toBe('after');
    expect(others.map(ep)).toContain(c.currentEndpoint);
    await restart(victim);
  }, 30_000);

  test('a write whose member is killed mid-call is retried with the same seq and applied once', async () => {
    const victim = followers[0];
    const c = client([ep(victim), ep(leader), ep(followers[1])]);
    await c.create('/mid');
    await c.status(); // connection up
    const p = c.create('/mid/item-', 'x', { mode: 'PERSISTENT_SEQUENTIAL' });
    await sleep(2);
    await cluster.kill(victim, 'SIGKILL');
    const r = await p;
    expect((await c.getChildren('/mid')).children).toEqual([r.path.slice('/mid/'.length)]);
    await restart(victim);
  }, 30_000);
});

describe('SynodClient against a member with a short watch history', () => {
  const small = new ProcessCluster([1], ['--tick-ms', '10', '--heartbeat-ms', '50', '--election-ms', '300', '--election-max-ms', '600', '--watch-history', '4']);
  afterAll(() => small.stopAll(), 20_000);

  test('a watch from a compacted zxid throws WatchCompactedError', async () => {
    await small.start();
    await small.waitLeader();
    const c = client([`127.0.0.1:${small.members.get(1)!.clientPort}`]);
    const first = await c.create('/h', '0');
    for (let i = 1; i <= 8; i++) await c.set('/h', String(i));
    const w = c.watch('/h', 'PERSISTENT', { startZxid: first.stat.czxid });
    const err = await w.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WatchCompactedError);
    expect((err as WatchCompactedError).compactZxid).toBeGreaterThan(first.stat.czxid);
    expect((err as Error).message).toMatch(/compacted/);
  }, 30_000);
});
