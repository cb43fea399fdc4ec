/** Tree semantics: modes, sequential numbering, stat fields, versions, multi, limits, validation, retries. */
import { EntryType } from '@app/raft';
import {
  CreateMode,
  EventType,
  GRPC_STATUS_OF,
  MultiFailure,
  Stat,
  TreeErrorCode as E,
  TreeInvariantError,
  TreeStateMachine,
  decodeCommand,
  encodeCommand,
  frame,
  COMMAND_KIND,
} from '@app/tree';
import { Cmd, Driver, bytes, hex, text } from './helpers.js';

const P = CreateMode.PERSISTENT;
const PS = CreateMode.PERSISTENT_SEQUENTIAL;
const EPH = CreateMode.EPHEMERAL;
const ES = CreateMode.EPHEMERAL_SEQUENTIAL;
const none = new Uint8Array(0);

function stat(d: Driver, path: string): Stat {
  const r = d.tree.exists(path);
  if (!r.ok || !r.stat) throw new Error(`${path} should exist`);
  return r.stat;
}

describe('create / setData / delete and their stat fields', () => {
  it('create sets every stat field and updates the parent', () => {
    const d = new Driver();
    d.now = 5000;
    const r = d.ok({ op: 'create', path: '/a', data: bytes('hello'), mode: P });
    expect(r.zxid).toBe(1);
    expect(r.path).toBe('/a');
    expect(r.stat).toEqual({
      czxid: 1, mzxid: 1, pzxid: 1, ctime: 5000, mtime: 5000, version: 0, cversion: 0, aversion: 0,
      ephemeralOwner: 0, dataLength: 5, numChildren: 0,
    });
    const root = stat(d, '/');
    expect(root).toMatchObject({ cversion: 1, pzxid: 1, numChildren: 1, mzxid: 0, version: 0 });
    expect(d.tree.lastZxid).toBe(1);
    expect(d.takeEvents()).toEqual([
      { type: EventType.NodeCreated, path: '/a', zxid: 1 },
      { type: EventType.NodeChildrenChanged, path: '/', zxid: 1 },
    ]);
    const g = d.tree.get('/a');
    expect(g.ok && text(g.data)).toBe('hello');
  });

  it('setData bumps version, mzxid, mtime and dataLength only', () => {
    const d = new Driver();
    d.now = 1000;
    d.ok({ op: 'create', path: '/a', data: bytes('x'), mode: P });
    d.ok({ op: 'create', path: '/a/kid', data: none, mode: P });
    d.takeEvents();
    d.now = 2000;
    const r = d.ok({ op: 'setData', path: '/a', data: bytes('xyz'), version: 0 });
    expect(r.zxid).toBe(3);
    expect(r.stat).toEqual({
      czxid: 1, mzxid: 3, pzxid: 2, ctime: 1000, mtime: 2000, version: 1, cversion: 1, aversion: 0,
      ephemeralOwner: 0, dataLength: 3, numChildren: 1,
    });
    expect(stat(d, '/')).toMatchObject({ cversion: 1, pzxid: 1 }); // the parent is untouched
    expect(d.takeEvents()).toEqual([{ type: EventType.NodeDataChanged, path: '/a', zxid: 3 }]);
    d.ok({ op: 'setData', path: '/a', data: none, version: -1 });
    expect(stat(d, '/a')).toMatchObject({ version: 2, mzxid: 4, dataLength: 0 });
  });

  it('delete updates the parent cversion and pzxid and emits events', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/a', data: none, mode: P });
    d.ok({ op: 'create', path: '/a/b', data: none, mode: P });
    d.takeEvents();
    const r = d.ok({ op: 'delete', path: '/a/b', version: 0 });
    expect(r).toEqual({ ok: true, zxid: 3 });
    expect(stat(d, '/a')).toMatchObject({ cversion: 2, pzxid: 3, numChildren: 0, mzxid: 1 });
    expect(d.tree.exists('/a/b')).toEqual({ ok: true, stat: null });
    expect(d.takeEvents()).toEqual([
      { type: EventType.NodeDeleted, path: '/a/b', zxid: 3 },
      { type: EventType.NodeChildrenChanged, path: '/a', zxid: 3 },
    ]);
  });

  it('structural errors: NO_NODE, NODE_EXISTS, NOT_EMPTY, NO_CHILDREN_FOR_EPHEMERALS, root', () => {
    const d = new Driver();
    const s = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    d.ok({ op: 'create', path: '/a', data: none, mode: P });
    d.ok({ op: 'create', path: '/a/b', data: none, mode: P });
    d.ok({ op: 'create', path: '/e', data: none, mode: EPH, sessionId: s });
    expect(d.err({ op: 'create', path: '/x/y', data: none, mode: P }, E.NO_NODE).message).toMatch(/parent "\/x" does not exist/);
    expect(d.err({ op: 'create', path: '/a', data: none, mode: P }, E.NODE_EXISTS).message).toMatch(/already exists/);
    expect(d.err({ op: 'create', path: '/', data: none, mode: P }, E.NODE_EXISTS).message).toMatch(/root/);
    expect(d.err({ op: 'delete', path: '/a', version: -1 }, E.NOT_EMPTY).message).toMatch(/1 children/);
    expect(d.err({ op: 'delete', path: '/nope', version: -1 }, E.NO_NODE).message).toMatch(/no such node/);
    expect(d.err({ op: 'setData', path: '/nope', data: none, version: -1 }, E.NO_NODE).code).toBe(E.NO_NODE);
    expect(d.err({ op: 'delete', path: '/', version: -1 }, E.BAD_ARGUMENTS).message).toMatch(/root/);
    for (const mode of [P, PS, EPH, ES]) {
      const r = d.err({ op: 'create', path: '/e/child', data: none, mode, sessionId: s }, E.NO_CHILDREN_FOR_EPHEMERALS);
      expect(r.message).toMatch(/ephemeral/);
    }
  });

  it('reads: children sorted, invalid paths refused, missing nodes', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/p', data: none, mode: P });
    for (const n of ['c', 'a', 'b', 'B', 'a1']) d.ok({ op: 'create', path: `/p/${n}`, data: none, mode: P });
    const c = d.tree.getChildren('/p');
    expect(c.ok && c.children).toEqual(['B', 'a', 'a1', 'b', 'c']);
    expect(c.ok && c.stat.numChildren).toBe(5);
    expect(d.tree.get('/p/zz')).toMatchObject({ ok: false, code: E.NO_NODE });
    expect(d.tree.getChildren('/zz')).toMatchObject({ ok: false, code: E.NO_NODE });
    expect(d.tree.get('p')).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(d.tree.exists('/a//b')).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(d.tree.getChildren('/p/')).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(d.tree.nodeCount).toBe(7);
  });
});

describe('sequential nodes', () => {
  it('suffix is the parent cversion, 10 digits, per parent, monotonic across deletes', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/q', data: none, mode: P });
    d.ok({ op: 'create', path: '/r', data: none, mode: P });
    expect(d.ok({ op: 'create', path: '/q/lock-', data: none, mode: PS }).path).toBe('/q/lock-0000000000');
    expect(d.ok({ op: 'create', path: '/q/lock-', data: none, mode: PS }).path).toBe('/q/lock-0000000001');
    d.ok({ op: 'create', path: '/q/plain', data: none, mode: P }); // any child change advances the counter
    expect(d.ok({ op: 'create', path: '/q/lock-', data: none, mode: PS }).path).toBe('/q/lock-0000000003');
    // another parent has its own counter
    expect(d.ok({ op: 'create', path: '/r/x', data: none, mode: PS }).path).toBe('/r/x0000000000');
    // deletes never make a number come back
    d.ok({ op: 'delete', path: '/q/lock-0000000003', version: -1 });
    d.ok({ op: 'delete', path: '/q/lock-0000000001', version: -1 });
    expect(d.ok({ op: 'create', path: '/q/lock-', data: none, mode: PS }).path).toBe('/q/lock-0000000006');
    // a trailing slash names the child by the counter alone; the root works too
    expect(d.ok({ op: 'create', path: '/q/', data: none, mode: PS }).path).toBe('/q/0000000007');
    expect(d.ok({ op: 'create', path: '/', data: none, mode: PS }).path).toBe('/0000000002');
    expect(stat(d, '/q').cversion).toBe(8);
  });

  it('ephemeral sequential nodes belong to the session and number like the others', () => {
    const d = new Driver();
    const s = d.ok({ op: 'createSession', timeoutMs: 3000 }).sessionId;
    d.ok({ op: 'create', path: '/locks', data: none, mode: P });
    const a = d.ok({ op: 'create', path: '/locks/w-', data: none, mode: ES, sessionId: s });
    const b = d.ok({ op: 'create', path: '/locks/w-', data: none, mode: PS });
    expect(a.path).toBe('/locks/w-0000000000');
    expect(a.stat.ephemeralOwner).toBe(s);
    expect(b.path).toBe('/locks/w-0000000001');
    expect(b.stat.ephemeralOwner).toBe(0);
    expect(d.tree.ephemerals(s)).toEqual(['/locks/w-0000000000']);
  });

  it('a sequential create that NODE_EXISTS-collides fails without consuming the number', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/q', data: none, mode: P });
    d.ok({ op: 'create', path: '/q/n0000000001', data: none, mode: P }); // cversion becomes 1
    d.err({ op: 'create', path: '/q/n', data: none, mode: PS }, E.NODE_EXISTS);
    expect(stat(d, '/q').cversion).toBe(1);
  });
});

describe('conditional updates', () => {
  it('setData, delete and check compare the version; -1 means any', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/v', data: none, mode: P });
    d.ok({ op: 'setData', path: '/v', data: bytes('1'), version: 0 });
    const bad = d.err({ op: 'setData', path: '/v', data: bytes('2'), version: 0 }, E.BAD_VERSION);
    expect(bad.message).toMatch(/expected version 0 but it is at version 1/);
    expect(GRPC_STATUS_OF[bad.code]).toBe('FAILED_PRECONDITION');
    d.ok({ op: 'check', path: '/v', version: 1 });
    d.ok({ op: 'check', path: '/v', version: -1 });
    d.err({ op: 'check', path: '/v', version: 7 }, E.BAD_VERSION);
    d.err({ op: 'check', path: '/w', version: -1 }, E.NO_NODE);
    d.err({ op: 'delete', path: '/v', version: 0 }, E.BAD_VERSION);
    d.ok({ op: 'delete', path: '/v', version: 1 });
  });

  it('versions other than integers >= -1 are BAD_ARGUMENTS', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/v', data: none, mode: P });
    for (const version of [-2, 1.5, NaN, '1' as unknown as number, null as unknown as number]) {
      expect(d.err({ op: 'setData', path: '/v', data: none, version }, E.BAD_ARGUMENTS).message).toMatch(/version must be an integer/);
      d.err({ op: 'delete', path: '/v', version }, E.BAD_ARGUMENTS);
      d.err({ op: 'check', path: '/v', version }, E.BAD_ARGUMENTS);
    }
  });

  it('a check-only command changes nothing, not even lastZxid', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/v', data: none, mode: P });
    const before = d.tree.snapshot();
    d.ok({ op: 'check', path: '/v', version: 0 });
    d.ok({ op: 'multi', ops: [{ op: 'check', path: '/v', version: 0 }] });
    expect(d.tree.lastZxid).toBe(1);
    expect(hex(d.tree.snapshot())).toBe(hex(before));
  });
});

describe('multi', () => {
  it('applies dependent ops atomically at one zxid', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/m', data: none, mode: P });
    d.takeEvents();
    const r = d.ok({
      op: 'multi',
      ops: [
        { op: 'create', path: '/m/a', data: bytes('a'), mode: P },
        { op: 'create', path: '/m/a/s-', data: none, mode: PS },
        { op: 'create', path: '/m/a/s-', data: none, mode: PS },
        { op: 'setData', path: '/m/a', data: bytes('aa'), version: 0 },
        { op: 'check', path: '/m/a', version: 1 },
        { op: 'delete', path: '/m/a/s-0000000000', version: 0 },
      ],
    });
    expect(r.zxid).toBe(2);
    expect(r.results.map((x) => x.op)).toEqual(['create', 'create', 'create', 'setData', 'check', 'delete']);
    expect(r.results[1]).toMatchObject({ path: '/m/a/s-0000000000' });
    expect(r.results[2]).toMatchObject({ path: '/m/a/s-0000000001' });
    expect(r.results[3]).toMatchObject({ stat: { version: 1, dataLength: 2, czxid: 2, mzxid: 2 } });
    expect(stat(d, '/m/a')).toMatchObject({ cversion: 3, pzxid: 2, numChildren: 1 });
    const evs = d.takeEvents();
    expect(evs.every((e) => e.zxid === 2)).toBe(true);
    expect(evs.map((e) => `${e.type} ${e.path}`)).toEqual([
      'NodeCreated /m/a', 'NodeChildrenChanged /m',
      'NodeCreated /m/a/s-0000000000', 'NodeChildrenChanged /m/a',
      'NodeCreated /m/a/s-0000000001', 'NodeChildrenChanged /m/a',
      'NodeDataChanged /m/a',
      'NodeDeleted /m/a/s-0000000000', 'NodeChildrenChanged /m/a',
    ]);
  });

  it('a failing op in the middle leaves the state byte-identical and reports every op', () => {
    const d = new Driver();
    const s = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    d.ok({ op: 'create', path: '/m', data: bytes('m'), mode: P });
    d.ok({ op: 'create', path: '/m/old', data: none, mode: P });
    d.takeEvents();
    const before = d.tree.snapshot();
    const lastZxid = d.tree.lastZxid;
    const failing = [
      { op: 'create', path: '/m/new', data: bytes('n'), mode: P },
      { op: 'create', path: '/m/seq-', data: none, mode: PS },
      { op: 'create', path: '/m/eph', data: none, mode: EPH },
      { op: 'setData', path: '/m', data: bytes('changed'), version: 0 },
      { op: 'delete', path: '/m/old', version: 0 },
      { op: 'check', path: '/m', version: 0 }, // fails: /m is at version 1 by now
      { op: 'create', path: '/m/after', data: none, mode: P },
    ] as const;
    const r = d.err({ op: 'multi', sessionId: s, ops: [...failing] }, E.BAD_VERSION) as MultiFailure;
    expect(r.failedOp).toBe(5);
    expect(r.message).toMatch(/^multi op 5: check failed/);
    expect(r.results.map((x) => x.code)).toEqual([
      E.ROLLED_BACK, E.ROLLED_BACK, E.ROLLED_BACK, E.ROLLED_BACK, E.ROLLED_BACK, E.BAD_VERSION, E.RUNTIME_INCONSISTENCY,
    ]);
    expect(hex(d.tree.snapshot())).toBe(hex(before));
    expect(d.tree.lastZxid).toBe(lastZxid);
    expect(d.tree.ephemerals(s)).toEqual([]);
    expect(d.takeEvents()).toEqual([]);
    // the sequence number was not consumed
    expect(d.ok({ op: 'create', path: '/m/seq-', data: none, mode: PS }).path).toBe('/m/seq-0000000001');
  });

  it('argument errors inside a multi fail the whole multi, and an empty multi is fine', () => {
    const d = new Driver({ maxDataBytes: 4 });
    d.ok({ op: 'create', path: '/m', data: none, mode: P });
    const before = d.tree.snapshot();
    const r = d.err({ op: 'multi', ops: [{ op: 'create', path: '/m/a', data: none, mode: P }, { op: 'create', path: 'bad', data: none, mode: P }] }, E.BAD_ARGUMENTS) as MultiFailure;
    expect(r.failedOp).toBe(1);
    d.err({ op: 'multi', ops: [{ op: 'create', path: '/m/a', data: none, mode: P }, { op: 'setData', path: '/m', data: bytes('12345'), version: -1 }] }, E.DATA_TOO_LARGE);
    d.err({ op: 'multi', ops: [{ op: 'rename', path: '/m' } as never] }, E.BAD_ARGUMENTS);
    d.err({ op: 'multi', ops: 'nope' as never }, E.BAD_ARGUMENTS);
    expect(hex(d.tree.snapshot())).toBe(hex(before));
    expect(d.ok({ op: 'multi', ops: [] }).results).toEqual([]);
  });
});

describe('size limit', () => {
  it('data up to maxDataBytes is accepted, larger is DATA_TOO_LARGE (RESOURCE_EXHAUSTED)', () => {
    const d = new Driver({ maxDataBytes: 16 });
    d.ok({ op: 'create', path: '/a', data: new Uint8Array(16), mode: P });
    const r = d.err({ op: 'create', path: '/b', data: new Uint8Array(17), mode: P }, E.DATA_TOO_LARGE);
    expect(r.message).toMatch(/17 bytes; the limit is 16 bytes/);
    expect(GRPC_STATUS_OF[r.code]).toBe('RESOURCE_EXHAUSTED');
    d.err({ op: 'setData', path: '/a', data: new Uint8Array(17), version: -1 }, E.DATA_TOO_LARGE);
    expect(d.tree.exists('/b')).toEqual({ ok: true, stat: null });
  });

  it('the default limit is 1 MiB', () => {
    const d = new Driver();
    expect(d.tree.maxDataBytes).toBe(1024 * 1024);
    d.ok({ op: 'create', path: '/big', data: new Uint8Array(1024 * 1024), mode: P });
    d.err({ op: 'setData', path: '/big', data: new Uint8Array(1024 * 1024 + 1), version: -1 }, E.DATA_TOO_LARGE);
  });
});

describe('validation: every bad field is BAD_ARGUMENTS and changes nothing', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['relative path', { op: 'create', path: 'a', data: none, mode: P }, /must start with/],
    ['trailing slash', { op: 'create', path: '/a/', data: none, mode: P }, /must not end/],
    ['dot component', { op: 'setData', path: '/a/.', data: none, version: -1 }, /relative paths/],
    ['reserved prefix', { op: 'create', path: '/synod', data: none, mode: P }, /reserved for the system/],
    ['reserved subtree', { op: 'create', path: '/synod/x', data: none, mode: P }, /reserved/],
    ['reserved sequential', { op: 'create', path: '/synod/', data: none, mode: PS }, /reserved/],
    ['unknown mode', { op: 'create', path: '/a', data: none, mode: 'CONTAINER' }, /unknown create mode "CONTAINER"/],
    ['ephemeral without session', { op: 'create', path: '/a', data: none, mode: EPH }, /sessionId/],
    ['unknown op', { op: 'rename', path: '/a' }, /unknown command op "rename"/],
    ['bad nowMs', { op: 'create', path: '/a', data: none, mode: P, nowMs: -1 }, /nowMs/],
    ['fractional nowMs', { op: 'create', path: '/a', data: none, mode: P, nowMs: 1.5 }, /nowMs/],
    ['seq without clientId', { op: 'create', path: '/a', data: none, mode: P, seq: 1 }, /without a clientId/],
    ['clientId without seq', { op: 'create', path: '/a', data: none, mode: P, clientId: 'c' }, /seq must be/],
    ['empty clientId', { op: 'create', path: '/a', data: none, mode: P, clientId: '', seq: 1 }, /clientId/],
    ['zero seq', { op: 'create', path: '/a', data: none, mode: P, clientId: 'c', seq: 0 }, /seq must be/],
    ['bad sessionId', { op: 'create', path: '/a', data: none, mode: P, sessionId: -3 }, /sessionId must be/],
    ['createSession timeout', { op: 'createSession', timeoutMs: 0 }, /timeoutMs/],
    ['createSession with sessionId', { op: 'createSession', timeoutMs: 1000, sessionId: 4 }, /must not carry/],
    ['closeSession without id', { op: 'closeSession' }, /closeSession needs/],
    ['expire ids', { op: 'expireSessions', ids: [1, -1] }, /session ids/],
    ['checkpoint pairs', { op: 'checkpointSessions', remaining: [[1]] }, /pairs/],
    ['checkpoint negative', { op: 'checkpointSessions', remaining: [[1, -5]] }, /pairs/],
  ];
  it.each(cases)('%s', (_name, cmd, why) => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/base', data: none, mode: P });
    const before = d.tree.snapshot();
    const r = d.run(cmd as never);
    expect(r).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(!r.ok && r.message).toMatch(why);
    expect(GRPC_STATUS_OF[E.BAD_ARGUMENTS]).toBe('INVALID_ARGUMENT');
    expect(hex(d.tree.snapshot())).toBe(hex(before));
  });

  it('data that is not bytes (a command built by hand)', () => {
    const t = new TreeStateMachine();
    const r = t.applyCommand({ op: 'create', path: '/a', data: 'text' as never, mode: P, nowMs: 0 }, 1);
    expect(r).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS, message: 'data must be bytes, got "text"' });
  });

  it('malformed entry bytes are BAD_ARGUMENTS; a newer format version stops the node', () => {
    const t = new TreeStateMachine();
    const entry = (index: number, data: Uint8Array) => ({ term: 1, index, type: EntryType.Normal, data });
    expect(t.apply(entry(1, new Uint8Array([1, 2, 3])))).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(t.apply(entry(2, frame(COMMAND_KIND, { op: 'create', path: '/a', data: 99, mode: P, nowMs: 0 }, [])))).toMatchObject({
      ok: false, code: E.BAD_ARGUMENTS, message: expect.stringMatching(/bad data length 99/),
    });
    expect(t.apply(entry(3, frame(COMMAND_KIND, [1, 2], [])))).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    const future = encodeCommand({ op: 'check', path: '/', version: -1, nowMs: 0 });
    future[1] = 2;
    expect(() => t.apply(entry(4, future))).toThrow(TreeInvariantError);
    expect(() => t.apply(entry(4, future))).toThrow(/upgrade this node/);
  });

  it('entries must be applied in increasing index order', () => {
    const t = new TreeStateMachine();
    const data = encodeCommand({ op: 'check', path: '/', version: -1, nowMs: 0 });
    t.apply({ term: 1, index: 5, type: EntryType.Normal, data });
    expect(() => t.apply({ term: 1, index: 5, type: EntryType.Normal, data })).toThrow(TreeInvariantError);
    expect(() => t.apply({ term: 1, index: 3, type: EntryType.Normal, data })).toThrow(/applied once, in order/);
  });
});

describe('retried commands (clientId + seq)', () => {
  it('a duplicate returns the cached result and applies nothing', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/c', data: none, mode: P });
    const cmd = { op: 'setData', path: '/c', data: bytes('v'), version: -1, clientId: 'cli-1', seq: 1 } as const;
    const first = d.ok(cmd);
    d.takeEvents();
    const before = d.tree.snapshot();
    const again = d.run(cmd);
    expect(again).toEqual(first);
    expect(again).toMatchObject({ zxid: 2, stat: { version: 1 } });
    expect(stat(d, '/c').version).toBe(1);
    expect(hex(d.tree.snapshot())).toBe(hex(before));
    expect(d.takeEvents()).toEqual([]);
    // a sequential create retried does not create a second node
    const seqCreate = { op: 'create', path: '/c/s-', data: none, mode: PS, clientId: 'cli-1', seq: 2 } as const;
    const a = d.ok(seqCreate);
    const b = d.ok(seqCreate);
    expect(b.path).toBe(a.path);
    expect(d.tree.getChildren('/c')).toMatchObject({ children: ['s-0000000000'] });
  });

  it('failures are cached too: a retry never turns a reported failure into a later success', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/c', data: none, mode: P });
    const cmd = { op: 'create', path: '/c', data: none, mode: P, clientId: 'k', seq: 7 } as const;
    d.err(cmd, E.NODE_EXISTS);
    d.ok({ op: 'delete', path: '/c', version: -1 });
    d.err(cmd, E.NODE_EXISTS);
    expect(d.tree.exists('/c')).toEqual({ ok: true, stat: null });
    expect(d.tree.lastRequest('k')?.seq).toBe(7);
  });

  it('an older seq is STALE_REQUEST; a newer one applies', () => {
    const d = new Driver();
    d.ok({ op: 'create', path: '/c', data: none, mode: P, clientId: 'k', seq: 5 });
    const r = d.err({ op: 'create', path: '/d', data: none, mode: P, clientId: 'k', seq: 4 }, E.STALE_REQUEST);
    expect(r.message).toMatch(/already sent seq 5/);
    expect(GRPC_STATUS_OF[r.code]).toBe('ABORTED');
    expect(d.tree.exists('/d')).toEqual({ ok: true, stat: null });
    d.ok({ op: 'create', path: '/d', data: none, mode: P, clientId: 'k', seq: 9 });
    expect(d.tree.lastRequest('k')?.seq).toBe(9);
  });

  it('records are bounded: the least recently used client is evicted first', () => {
    const d = new Driver({ maxClients: 3 });
    for (const c of ['a', 'b', 'c']) d.ok({ op: 'check', path: '/', version: -1, clientId: c, seq: 1 });
    d.ok({ op: 'check', path: '/', version: -1, clientId: 'a', seq: 2 }); // a is now the most recent
    d.ok({ op: 'check', path: '/', version: -1, clientId: 'd', seq: 1 });
    expect(d.tree.clientCount).toBe(3);
    expect(d.tree.lastRequest('b')).toBeNull();
    expect(d.tree.lastRequest('a')?.seq).toBe(2);
    expect(d.tree.lastRequest('c')?.seq).toBe(1);
    expect(d.tree.lastRequest('d')?.seq).toBe(1);
  });

  it("records are dropped when the client's session ends", () => {
    const d = new Driver();
    const s = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    const cmd = { op: 'create', path: '/e', data: none, mode: EPH, sessionId: s, clientId: 'k', seq: 1 } as const;
    d.ok(cmd);
    d.ok({ op: 'create', path: '/other', data: none, mode: P, clientId: 'no-session', seq: 1 });
    d.ok({ op: 'closeSession', sessionId: s, clientId: 'closer', seq: 1 });
    expect(d.tree.lastRequest('k')).toBeNull();
    expect(d.tree.lastRequest('no-session')?.seq).toBe(1);
    // the retried closeSession still gets its result (its record is not bound to the dead session)
    expect(d.run({ op: 'closeSession', sessionId: s, clientId: 'closer', seq: 1 })).toMatchObject({ ok: true, deleted: ['/e'] });
    // the retry of the ephemeral create now meets the dead session
    d.err(cmd, E.SESSION_EXPIRED);
    expect(d.tree.exists('/e')).toEqual({ ok: true, stat: null });
  });
});

describe('sessions in the tree', () => {
  it('createSession: id from the zxid, timeout clamped to the configured bounds', () => {
    const d = new Driver({ minSessionTimeoutMs: 1000, maxSessionTimeoutMs: 60_000 });
    d.ok({ op: 'create', path: '/x', data: none, mode: P });
    const a = d.ok({ op: 'createSession', timeoutMs: 10 });
    expect(a).toEqual({ ok: true, zxid: 2, sessionId: 2, timeoutMs: 1000 });
    expect(d.ok({ op: 'createSession', timeoutMs: 10_000_000 }).timeoutMs).toBe(60_000);
    expect(d.ok({ op: 'createSession', timeoutMs: 5000 }).timeoutMs).toBe(5000);
    expect(d.tree.sessions()).toEqual([
      { id: 2, timeoutMs: 1000, remainingMs: null },
      { id: 3, timeoutMs: 60_000, remainingMs: null },
      { id: 4, timeoutMs: 5000, remainingMs: null },
    ]);
    expect(d.tree.lastZxid).toBe(4);
  });

  it('commands on an unknown or ended session are SESSION_EXPIRED', () => {
    const d = new Driver();
    const s = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    d.ok({ op: 'create', path: '/p', data: none, mode: P, sessionId: s });
    d.ok({ op: 'closeSession', sessionId: s });
    const cmds: Cmd[] = [
      { op: 'create', path: '/q', data: none, mode: P, sessionId: s },
      { op: 'create', path: '/q', data: none, mode: EPH, sessionId: s },
      { op: 'setData', path: '/p', data: none, version: -1, sessionId: s },
      { op: 'delete', path: '/p', version: -1, sessionId: s },
      { op: 'multi', ops: [], sessionId: s },
      { op: 'closeSession', sessionId: s },
      { op: 'closeSession', sessionId: 999 },
    ];
    for (const cmd of cmds) {
      const r = d.err(cmd, E.SESSION_EXPIRED);
      expect(r.message).toMatch(/open a new session/);
    }
  });

  it('closeSession deletes its ephemerals atomically at one zxid, with events', () => {
    const d = new Driver();
    const s = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    const other = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    d.ok({ op: 'create', path: '/app', data: none, mode: P });
    d.ok({ op: 'create', path: '/app/b', data: none, mode: EPH, sessionId: s });
    d.ok({ op: 'create', path: '/app/a', data: none, mode: EPH, sessionId: s });
    d.ok({ op: 'create', path: '/z', data: none, mode: ES, sessionId: s });
    d.ok({ op: 'create', path: '/app/keep', data: none, mode: EPH, sessionId: other });
    d.ok({ op: 'create', path: '/app/gone', data: none, mode: EPH, sessionId: s });
    d.ok({ op: 'delete', path: '/app/gone', version: -1 }); // explicit delete leaves the session's list
    expect(d.tree.ephemerals(s)).toEqual(['/app/a', '/app/b', '/z0000000001']);
    d.takeEvents();
    const r = d.ok({ op: 'closeSession', sessionId: s });
    expect(r.deleted).toEqual(['/app/a', '/app/b', '/z0000000001']);
    const evs = d.takeEvents();
    expect(new Set(evs.map((e) => e.zxid))).toEqual(new Set([r.zxid]));
    expect(evs.map((e) => `${e.type} ${e.path}`)).toEqual([
      'NodeDeleted /app/a', 'NodeChildrenChanged /app',
      'NodeDeleted /app/b', 'NodeChildrenChanged /app',
      'NodeDeleted /z0000000001', 'NodeChildrenChanged /',
    ]);
    expect(d.tree.getChildren('/app')).toMatchObject({ children: ['keep'] });
    expect(stat(d, '/app').pzxid).toBe(r.zxid);
    expect(d.tree.session(s)).toBeNull();
    expect(d.tree.ephemerals(other)).toEqual(['/app/keep']);
  });

  it('expireSessions ends several sessions in one zxid and ignores unknown ids', () => {
    const d = new Driver();
    const a = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    const b = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    const c = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    d.ok({ op: 'create', path: '/a', data: none, mode: EPH, sessionId: a });
    d.ok({ op: 'create', path: '/b', data: none, mode: EPH, sessionId: b });
    d.ok({ op: 'create', path: '/c', data: none, mode: EPH, sessionId: c });
    d.takeEvents();
    const r = d.ok({ op: 'expireSessions', ids: [b, 424242, a, b] });
    expect(r.expired).toEqual([a, b]);
    expect(r.deleted).toEqual(['/a', '/b']);
    expect(d.takeEvents().map((e) => e.zxid)).toEqual([r.zxid, r.zxid, r.zxid, r.zxid]);
    expect(d.tree.sessions().map((s) => s.id)).toEqual([c]);
    // nothing to expire: success, no change
    const z = d.tree.lastZxid;
    expect(d.ok({ op: 'expireSessions', ids: [a] }).expired).toEqual([]);
    expect(d.tree.lastZxid).toBe(z);
  });

  it('checkpointSessions records remaining TTLs (clamped to the timeout) for live sessions', () => {
    const d = new Driver();
    const a = d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId;
    const b = d.ok({ op: 'createSession', timeoutMs: 2000 }).sessionId;
    const r = d.ok({ op: 'checkpointSessions', remaining: [[a, 1234], [b, 999_999], [77, 5]] });
    expect(r.updated).toBe(2);
    expect(d.tree.sessions()).toEqual([
      { id: a, timeoutMs: 5000, remainingMs: 1234 },
      { id: b, timeoutMs: 2000, remainingMs: 2000 },
    ]);
    expect(d.tree.lastZxid).toBe(r.zxid);
  });
});

describe('encoding', () => {
  it('round-trips every command shape, data as raw bytes', () => {
    const cmds = [
      { op: 'create', path: '/a', data: bytes('x'), mode: P, nowMs: 1, clientId: 'c', seq: 3, sessionId: 9 },
      { op: 'setData', path: '/a', data: new Uint8Array([0, 255, 7]), version: -1, nowMs: 2 },
      { op: 'delete', path: '/a', version: 4, nowMs: 3 },
      { op: 'check', path: '/a', version: 0, nowMs: 4 },
      { op: 'multi', nowMs: 5, ops: [
        { op: 'create', path: '/m', data: bytes('one'), mode: PS },
        { op: 'check', path: '/m', version: -1 },
        { op: 'setData', path: '/m', data: bytes('two'), version: -1 },
        { op: 'delete', path: '/m', version: -1 },
      ] },
      { op: 'createSession', timeoutMs: 3000, nowMs: 6 },
      { op: 'closeSession', sessionId: 3, nowMs: 7 },
      { op: 'expireSessions', ids: [1, 2], nowMs: 8 },
      { op: 'checkpointSessions', remaining: [[1, 500]], nowMs: 9 },
    ] as const;
    for (const c of cmds) expect(decodeCommand(encodeCommand(c as never))).toEqual(c);
  });

  it('is compact and cheap: a 256-byte create is the JSON header plus the raw bytes', () => {
    const data = new Uint8Array(256).fill(7);
    const cmd = { op: 'create', path: '/service/config', data, mode: P, nowMs: 1_700_000_000_000, clientId: 'c0ffee', seq: 12, sessionId: 42 } as const;
    const encoded = encodeCommand(cmd);
    expect(encoded.length).toBeLessThan(256 + 160);
    // decoding copies the data: it does not alias the log entry
    const decoded = decodeCommand(encoded) as typeof cmd;
    encoded[encoded.length - 1] = 0;
    expect(decoded.data[255]).toBe(7);
    expect(() => encodeCommand({ ...cmd, data: 'str' as never })).toThrow(/data must be a Uint8Array/);
  });
});
