/**
 * One 3-member cluster of real processes on 127.0.0.1, shared by the tests below (each uses its own paths).
 */
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Client, Msg, ProcessCluster, WatchClient, bytes, rpc, rpcError, sleep, waitFor } from './harness.js';

const cluster = new ProcessCluster([1, 2, 3]);
let leader = 0;
let follower = 0;
let other = 0;
const C = (id: number): Client => cluster.coordination(id);

beforeAll(async () => {
  await cluster.start();
  leader = await cluster.waitLeader();
  [follower, other] = [1, 2, 3].filter((id) => id !== leader);
}, 40_000);

afterAll(async () => {
  await cluster.stopAll();
});

describe('consensus cluster (3 processes)', () => {
  test('elects one leader; Status and Members agree on every member', async () => {
    const st = await Promise.all([1, 2, 3].map((id) => cluster.status(id)));
    for (const s of st) {
      expect(s.leader).toBe(leader);
      expect(s.term).toBe(st[0].term);
      expect(s.members.map((m: Msg) => m.id)).toEqual([1, 2, 3]);
      expect(s.errors).toEqual([]);
    }
    expect(st.find((s) => s.id === leader)!.role).toBe('LEADER');
    expect(st.filter((s) => s.role === 'FOLLOWER')).toHaveLength(2);
    const members = await rpc(cluster.cluster(follower), 'Members', {});
    expect(members.members.map((m: Msg) => [m.id, m.isLearner, m.peerUrls.length, m.clientUrls.length])).toEqual([
      [1, false, 1, 1],
      [2, false, 1, 1],
      [3, false, 1, 1],
    ]);
  });

  test('a write on a follower is seen by a linearizable read on every member; a retried write applies once', async () => {
    const created = await rpc(C(follower), 'Create', { path: '/lin', data: bytes('v1') });
    expect(created.path).toBe('/lin');
    expect(created.header.memberId).toBe(follower);
    for (const id of [1, 2, 3]) {
      const g = await rpc(C(id), 'Get', { path: '/lin' });
      expect(g.data.toString()).toBe('v1');
      expect(g.stat.czxid).toBe(created.stat.czxid);
    }
    const request = { clientId: 'test-client-1', seq: 7 };
    const a = await rpc(C(follower), 'Set', { path: '/lin', data: bytes('v2'), version: -1, request });
    const b = await rpc(C(other), 'Set', { path: '/lin', data: bytes('v2'), version: -1, request });
    expect(b.stat).toEqual(a.stat);
    const g = await rpc(C(leader), 'Get', { path: '/lin' });
    expect(g.stat.version).toBe(1);
  });

  test('SEQUENTIAL reads never go backwards for a session, and see the session\'s own writes', async () => {
    const s = await rpc(C(follower), 'CreateSession', { timeoutMs: 10_000 });
    await rpc(C(leader), 'Create', { path: '/seq', data: bytes('0') });
    let lastZxid = 0;
    let lastVersion = -1;
    for (let i = 1; i <= 15; i++) {
      const w = await rpc(C(i % 2 ? leader : follower), 'Set', { path: '/seq', data: bytes(String(i)), version: -1 });
      const r = await rpc(C(follower), 'Get', { path: '/seq', consistency: 'SEQUENTIAL', sessionId: s.sessionId, minZxid: w.header.zxid });
      expect(r.header.zxid).toBeGreaterThanOrEqual(lastZxid);
      expect(r.header.zxid).toBeGreaterThanOrEqual(w.stat.mzxid);
      expect(r.stat.version).toBeGreaterThanOrEqual(lastVersion);
      expect(r.data.toString()).toBe(String(i));
      lastZxid = r.header.zxid;
      lastVersion = r.stat.version;
      // Reading on another member with the highest zxid seen never returns older state either.
      const o = await rpc(C(other), 'Get', { path: '/seq', consistency: 'SEQUENTIAL', minZxid: lastZxid });
      expect(o.stat.version).toBeGreaterThanOrEqual(lastVersion);
    }
    await rpc(C(follower), 'CloseSession', { sessionId: s.sessionId });
  });

  test('create modes: sequential numbering per parent, ephemeral nodes removed on close and on expiry, with watch events', async () => {
    await rpc(C(leader), 'Create', { path: '/q' });
    const names: string[] = [];
    for (let i = 0; i < 3; i++) names.push((await rpc(C(i === 1 ? follower : leader), 'Create', { path: '/q/item-', mode: 'PERSISTENT_SEQUENTIAL' })).path);
    expect(names).toEqual(['/q/item-0000000000', '/q/item-0000000001', '/q/item-0000000002']);

    await rpc(C(leader), 'Create', { path: '/eph' });
    const w = new WatchClient(C(other));
    w.add({ path: '/eph', kind: 'PERSISTENT_RECURSIVE', watchId: 1 });
    await w.waitFor('added', (x) => x.responses.some((r) => r.added));

    // Closed session: its ephemeral nodes go in one zxid.
    const s1 = await rpc(C(follower), 'CreateSession', { timeoutMs: 10_000 });
    const e1 = await rpc(C(follower), 'Create', { path: '/eph/lock-', mode: 'EPHEMERAL_SEQUENTIAL', sessionId: s1.sessionId });
    const e2 = await rpc(C(follower), 'Create', { path: '/eph/owner', mode: 'EPHEMERAL', sessionId: s1.sessionId });
    expect(e1.path).toBe('/eph/lock-0000000000');
    expect(e2.stat.ephemeralOwner).toBe(s1.sessionId);
    await rpcError(rpc(C(leader), 'Create', { path: '/eph/owner/child', sessionId: 0 }), grpc.status.FAILED_PRECONDITION);
    await rpc(C(leader), 'CloseSession', { sessionId: s1.sessionId });
    await rpc(C(leader), 'CloseSession', { sessionId: s1.sessionId }); // idempotent
    for (const id of [1, 2, 3]) expect((await rpc(C(id), 'GetChildren', { path: '/eph' })).children).toEqual([]);
    await w.waitFor('two NODE_DELETED events', (x) => x.events(1).filter((e) => e.type === 'NODE_DELETED').length === 2);
    const deleted = w.events(1).filter((e) => e.type === 'NODE_DELETED');
    expect(deleted.map((e) => e.path).sort()).toEqual(['/eph/lock-0000000000', '/eph/owner']);
    expect(deleted[0].zxid).toBe(deleted[1].zxid);

    // Expired session (short timeout, no keep-alive) vs a session kept alive through a follower.
    const dying = await rpc(C(follower), 'CreateSession', { timeoutMs: 800 });
    const living = await rpc(C(follower), 'CreateSession', { timeoutMs: 1500 });
    expect(dying.timeoutMs).toBe(800);
    await rpc(C(follower), 'Create', { path: '/eph/dying', mode: 'EPHEMERAL', sessionId: dying.sessionId });
    await rpc(C(follower), 'Create', { path: '/eph/living', mode: 'EPHEMERAL', sessionId: living.sessionId });
    const ka = (C(follower).KeepAlive as () => grpc.ClientDuplexStream<Msg, Msg>).call(C(follower));
    const acks: Msg[] = [];
    ka.on('data', (r: Msg) => acks.push(r));
    ka.on('error', () => undefined);
    const pinger = setInterval(() => ka.write({ sessionId: living.sessionId }), 200);
    try {
      await w.waitFor('the expired session\'s node deleted', (x) => x.events(1).some((e) => e.type === 'NODE_DELETED' && e.path === '/eph/dying'), 8000);
      await sleep(1700); // well past the living session's 1500 ms timeout since its creation
      expect((await rpc(C(leader), 'Exists', { path: '/eph/living' })).exists).toBe(true);
      expect((await rpc(C(leader), 'Exists', { path: '/eph/dying' })).exists).toBe(false);
      expect(acks.length).toBeGreaterThan(3);
      expect(acks.every((a) => a.sessionId === living.sessionId && !a.expired && a.ttlMs > 0)).toBe(true);
      await rpcError(rpc(C(other), 'Create', { path: '/eph/x', mode: 'EPHEMERAL', sessionId: dying.sessionId }), grpc.status.FAILED_PRECONDITION);
      ka.write({ sessionId: dying.sessionId });
      await waitFor('expired answer', () => acks.some((a) => a.sessionId === dying.sessionId && a.expired), 3000);
    } finally {
      clearInterval(pinger);
      ka.end();
      w.close();
    }
    await rpc(C(leader), 'CloseSession', { sessionId: living.sessionId });
  });

  test('version conflict → FAILED_PRECONDITION and nothing changes', async () => {
    const c = await rpc(C(leader), 'Create', { path: '/cas', data: bytes('a') });
    await rpc(C(follower), 'Set', { path: '/cas', data: bytes('b'), version: 0 });
    const e = await rpcError(rpc(C(follower), 'Set', { path: '/cas', data: bytes('c'), version: 0 }), grpc.status.FAILED_PRECONDITION);
    expect(e.details).toMatch(/version/);
    await rpcError(rpc(C(other), 'Delete', { path: '/cas', version: 5 }), grpc.status.FAILED_PRECONDITION);
    for (const id of [1, 2, 3]) {
      const g = await rpc(C(id), 'Get', { path: '/cas' });
      expect(g.data.toString()).toBe('b');
      expect(g.stat.version).toBe(1);
      expect(g.stat.czxid).toBe(c.stat.czxid);
    }
  });

  test('multi is atomic: all ops in one zxid, or none', async () => {
    const ok = await rpc(C(follower), 'Multi', {
      ops: [{ create: { path: '/m' } }, { create: { path: '/m/a', data: bytes('1') } }, { check: { path: '/m', version: 0 } }, { set: { path: '/m/a', data: bytes('2'), version: 0 } }],
    });
    expect(ok.succeeded).toBe(true);
    expect(ok.results.map((r: Msg) => r.result)).toEqual(['create', 'create', 'ok', 'set']);
    expect(ok.results[0].create.stat.czxid).toBe(ok.results[1].create.stat.czxid);
    const bad = await rpc(C(other), 'Multi', {
      ops: [{ create: { path: '/m/b' } }, { delete: { path: '/m/a', version: 1 } }, { set: { path: '/m/missing', data: bytes('x'), version: -1 } }, { create: { path: '/m/c' } }],
    });
    expect(bad.succeeded).toBe(false);
    expect(bad.failedOp).toBe(2);
    expect(bad.results.map((r: Msg) => r.result)).toEqual(['rolledBack', 'rolledBack', 'error', 'notRun']);
    expect(bad.results[2].error.code).toBe(grpc.status.NOT_FOUND);
    const kids = await rpc(C(leader), 'GetChildren', { path: '/m' });
    expect(kids.children).toEqual(['a']);
    expect((await rpc(C(leader), 'Get', { path: '/m/a' })).data.toString()).toBe('2');
  });

  test('watches: one-shot fires once, persistent keeps firing, a reconnect resumes from a zxid', async () => {
    // Created through the member that serves the watch: it answers once it has applied the create itself.
    await rpc(C(follower), 'Create', { path: '/w', data: bytes('0') });
    const w = new WatchClient(C(follower));
    w.add({ path: '/w', kind: 'DATA', watchId: 10 });
    w.add({ path: '/w', kind: 'PERSISTENT', watchId: 11 });
    w.add({ path: '/w', kind: 'CHILDREN', watchId: 12 });
    await w.waitFor('3 added', (x) => x.responses.filter((r) => r.added).length === 3);
    const s1 = await rpc(C(other), 'Set', { path: '/w', data: bytes('1'), version: -1 });
    const s2 = await rpc(C(leader), 'Set', { path: '/w', data: bytes('2'), version: -1 });
    await rpc(C(leader), 'Create', { path: '/w/kid' });
    await w.waitFor('persistent saw 3 events', (x) => x.events(11).length === 3);
    expect(w.events(10).map((e) => [e.type, e.zxid])).toEqual([['NODE_DATA_CHANGED', s1.stat.mzxid]]);
    expect(w.events(11).map((e) => e.type)).toEqual(['NODE_DATA_CHANGED', 'NODE_DATA_CHANGED', 'NODE_CHILDREN_CHANGED']);
    expect(w.events(11)[1].stat.version).toBe(2);
    expect(w.events(11)[1].zxid).toBe(s2.stat.mzxid);
    expect(w.events(12).map((e) => e.type)).toEqual(['NODE_CHILDREN_CHANGED']);
    const removed = w.responses.filter((r) => r.removed).map((r) => [r.removed.watchId, r.removed.reason]);
    expect(removed).toEqual([
      [10, 'fired'],
      [12, 'fired'],
    ]);
    const zxids = w.events().map((e) => e.zxid);
    expect([...zxids].sort((a, b) => a - b)).toEqual(zxids);
    const resumeFrom = w.events(11).at(-1)!.zxid as number;
    w.close();

    // Changes while disconnected are replayed first, in order, when the watch is added again from that zxid.
    const m1 = await rpc(C(leader), 'Set', { path: '/w', data: bytes('3'), version: -1 });
    const m2 = await rpc(C(follower), 'Delete', { path: '/w/kid', version: -1 });
    const w2 = new WatchClient(C(other));
    w2.add({ path: '/w', kind: 'PERSISTENT', watchId: 1, startZxid: resumeFrom });
    await w2.waitFor('2 replayed events', (x) => x.events(1).length === 2);
    expect(w2.events(1).map((e) => [e.type, e.zxid])).toEqual([
      ['NODE_DATA_CHANGED', m1.stat.mzxid],
      ['NODE_CHILDREN_CHANGED', m2.header.zxid],
    ]);
    const m3 = await rpc(C(leader), 'Set', { path: '/w', data: bytes('4'), version: -1 });
    await w2.waitFor('live event after the replay', (x) => x.events(1).length === 3);
    expect(w2.events(1)[2].zxid).toBe(m3.stat.mzxid);
    // One-shot watch left by a read, delivered on the session's stream.
    const sess = await rpc(C(other), 'CreateSession', { timeoutMs: 10_000 });
    w2.add({ path: '/', kind: 'PERSISTENT', watchId: 2, sessionId: sess.sessionId });
    await w2.waitFor('bound', (x) => x.responses.some((r) => r.added?.watchId === 2));
    await rpc(C(other), 'Get', { path: '/w', watch: true, sessionId: sess.sessionId });
    await rpc(C(leader), 'Set', { path: '/w', data: bytes('5'), version: -1 });
    await w2.waitFor('read watch fired', (x) => x.events().some((e) => e.watchId < 0 && e.type === 'NODE_DATA_CHANGED'));
    w2.close();
    await rpc(C(leader), 'CloseSession', { sessionId: sess.sessionId });
  });

  test('bad input gets the right status code and changes nothing', async () => {
    const before = await rpc(C(leader), 'GetChildren', { path: '/' });
    await rpcError(rpc(C(follower), 'Create', { path: '/bad//path' }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(follower), 'Create', { path: 'relative' }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(follower), 'Create', { path: '/trailing/' }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(leader), 'Get', { path: '/a/../b' }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(leader), 'Create', { path: '/eph-no-session', mode: 'EPHEMERAL' }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(leader), 'Create', { path: '/eph-unknown', mode: 'EPHEMERAL', sessionId: 987654 }), grpc.status.FAILED_PRECONDITION);
    await rpcError(rpc(C(other), 'CreateSession', { timeoutMs: 0 }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(other), 'Set', { path: '/nope', data: bytes('x'), version: -1 }), grpc.status.NOT_FOUND);
    await rpcError(rpc(C(other), 'Create', { path: '/missing-parent/x' }), grpc.status.NOT_FOUND);
    await rpcError(rpc(C(other), 'Create', { path: '/lin' }), grpc.status.ALREADY_EXISTS);
    await rpcError(rpc(C(other), 'Set', { path: '/lin', data: bytes('x'), version: -1, request: { clientId: 'c', seq: 0 } }), grpc.status.INVALID_ARGUMENT);
    await rpcError(rpc(C(follower), 'Multi', { ops: [] }), grpc.status.INVALID_ARGUMENT);
    const big = Buffer.alloc(1024 * 1024 + 1, 1);
    await rpcError(rpc(C(follower), 'Create', { path: '/big', data: big }), grpc.status.RESOURCE_EXHAUSTED);
    await rpcError(rpc(C(follower), 'Create', { path: '/huge', data: Buffer.alloc(2 * 1024 * 1024, 1) }), grpc.status.RESOURCE_EXHAUSTED);
    // A SEQUENTIAL read that asks for a zxid this member will not reach within the deadline.
    await rpcError(rpc(C(other), 'Get', { path: '/lin', consistency: 'SEQUENTIAL', minZxid: 1e9 }, 300), grpc.status.DEADLINE_EXCEEDED);
    const w = new WatchClient(C(other));
    w.add({ path: 'no-slash', kind: 'DATA' });
    await w.waitFor('stream ended', (x) => x.error !== undefined);
    expect(w.error!.code).toBe(grpc.status.INVALID_ARGUMENT);
    const after = await rpc(C(leader), 'GetChildren', { path: '/' });
    expect(after.children).toEqual(before.children);
    expect((await rpc(C(leader), 'Get', { path: '/lin' })).stat.version).toBe(1);
  });

  test('metrics, health and snapshot endpoints answer', async () => {
    const m = cluster.members.get(follower)!;
    await rpc(C(follower), 'Create', { path: '/metered' });
    const metrics = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`, { headers: { connection: 'close' } })).text();
    expect(metrics).toMatch(/synod_raft_has_leader 1/);
    expect(metrics).toMatch(/grpc_server_handled_total\{[^}]*grpc_method="Create"/);
    // the tree, sessions and watches, read from the member's applied state at scrape time
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('synod_tree_nodes')).toBeGreaterThanOrEqual(2); // the root and /metered at least
    expect(value('synod_session_active')).toBeGreaterThanOrEqual(0);
    expect(value('synod_watch_active')).toBeGreaterThanOrEqual(0);
    expect(value('synod_session_expired_total')).toBeGreaterThanOrEqual(0);
    expect((await fetch(`http://127.0.0.1:${m.metricsPort}/readyz`, { headers: { connection: 'close' } })).status).toBe(200);
    const health = await import('grpc-health-check');
    const pkg = grpc.loadPackageDefinition((await import('@grpc/proto-loader')).loadSync(health.protoPath, { enums: String })) as Msg;
    const hc = new pkg.grpc.health.v1.Health(`127.0.0.1:${m.clientPort}`, grpc.credentials.createInsecure());
    const h = await rpc(hc, 'Check', { service: 'synod.consensus.v1.Coordination' });
    expect(h.status).toBe('SERVING');
    hc.close();
    // Server reflection lists the services (what grpcurl uses).
    const reflectionProto = join(dirname(fileURLToPath(import.meta.resolve('@grpc/reflection'))), '../proto/grpc/reflection/v1/reflection.proto');
    const rpkg = grpc.loadPackageDefinition((await import('@grpc/proto-loader')).loadSync(reflectionProto)) as Msg;
    const rc = new rpkg.grpc.reflection.v1.ServerReflection(`127.0.0.1:${m.clientPort}`, grpc.credentials.createInsecure());
    const services: string[] = await new Promise((res, rej) => {
      const call = rc.ServerReflectionInfo();
      call.on('data', (r: Msg) => {
        res(r.listServicesResponse.service.map((x: Msg) => x.name));
        call.end();
      });
      call.on('error', rej);
      call.write({ listServices: '' });
    });
    rc.close();
    expect(services).toEqual(expect.arrayContaining(['synod.consensus.v1.Coordination', 'synod.consensus.v1.Cluster']));
    const chunks: Msg[] = await new Promise((res, rej) => {
      const out: Msg[] = [];
      const call = (cluster.cluster(leader).Snapshot as (r: Msg) => grpc.ClientReadableStream<Msg>).call(cluster.cluster(leader), { fresh: true });
      call.on('data', (c: Msg) => out.push(c));
      call.on('error', rej);
      call.on('end', () => res(out));
    });
    const data = Buffer.concat(chunks.map((c) => c.data));
    expect(data.length).toBe(chunks[0].totalBytes);
    expect(chunks.at(-1)!.remainingBytes).toBe(0);
    expect(Buffer.from(chunks.at(-1)!.sha256).equals(createHash('sha256').update(data).digest())).toBe(true);
  });

  test('AddMember (learner) → PromoteMember → RemoveMember with a fourth process', async () => {
    leader = await cluster.waitLeader(); // (re)read: a busy machine may have held an election meanwhile
    [follower, other] = [1, 2, 3].filter((id) => id !== leader);
    const m4 = await cluster.prepare(4);
    const redirect = await rpcError(rpc(cluster.cluster(follower), 'AddMember', { id: 4, peerUrls: [`127.0.0.1:${m4.peerPort}`] }), grpc.status.UNAVAILABLE);
    const leaderAddress = `127.0.0.1:${cluster.members.get(leader)!.clientPort}`;
    expect(redirect.details).toContain(`leader is member ${leader} at ${leaderAddress}`);
    expect(redirect.metadata.get('synod-leader-id')).toEqual([String(leader)]);
    expect(redirect.metadata.get('synod-leader-address')).toEqual([leaderAddress]);
    const added = await rpc(cluster.cluster(leader), 'AddMember', { id: 4, peerUrls: [`127.0.0.1:${m4.peerPort}`], clientUrls: [`127.0.0.1:${m4.clientPort}`], name: 'n4' });
    expect(added.member.isLearner).toBe(true);
    expect(added.members.map((m: Msg) => [m.id, m.isLearner])).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, true],
    ]);
    await rpcError(rpc(cluster.cluster(leader), 'AddMember', { id: 4, peerUrls: ['127.0.0.1:1'] }), grpc.status.ALREADY_EXISTS);
    cluster.spawn(4, 'existing', [1, 2, 3, 4]);
    await cluster.waitServing(4);
    const target = (await cluster.status(leader)).appliedIndex as number;
    await waitFor('member 4 caught up', async () => {
      const s = await cluster.status(4);
      return s.appliedIndex >= target && s.role === 'LEARNER';
    });
    expect((await rpc(C(4), 'Get', { path: '/lin' })).data.toString()).toBe('v2');
    const promoted = await rpc(cluster.cluster(leader), 'PromoteMember', { id: 4 });
    expect(promoted.members.map((m: Msg) => m.isLearner)).toEqual([false, false, false, false]);
    await waitFor('member 4 a follower', async () => (await cluster.status(4)).role === 'FOLLOWER');
    await rpc(C(4), 'Create', { path: '/from-4' });
    const removed = await rpc(cluster.cluster(leader), 'RemoveMember', { id: 4 });
    expect(removed.members.map((m: Msg) => m.id)).toEqual([1, 2, 3]);
    await rpcError(rpc(cluster.cluster(leader), 'RemoveMember', { id: 4 }), grpc.status.NOT_FOUND);
    await cluster.kill(4, 'SIGTERM');
    for (const id of [1, 2, 3]) expect((await rpc(C(id), 'Exists', { path: '/from-4' })).exists).toBe(true);
    expect((await rpc(cluster.cluster(follower), 'Members', {})).members.map((m: Msg) => m.id)).toEqual([1, 2, 3]);
  });
});
