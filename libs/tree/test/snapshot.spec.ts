/**
 * Snapshots and determinism: restore(snapshot(x)) equals x, and a fast-check property that random command
 * sequences give byte-identical state on a replica that was restored from a snapshot half-way.
 */
import fc from 'fast-check';
import { EntryType } from '@app/raft';
import {
  Command,
  CommandResult,
  CreateMode,
  Op,
  TreeErrorCode,
  TreeInvariantError,
  TreeStateMachine,
  WatchEvent,
  encodeCommand,
  joinPath,
} from '@app/tree';
import { Driver, bytes, hex } from './helpers.js';

const P = CreateMode.PERSISTENT;

/** Every node with its data and stat, depth first, via the read API only. */
function dump(t: TreeStateMachine): unknown[] {
  const out: unknown[] = [];
  const walk = (path: string): void => {
    const g = t.get(path);
    const c = t.getChildren(path);
    if (!g.ok || !c.ok) throw new Error(`${path} vanished`);
    out.push([path, hex(g.data), g.stat]);
    for (const k of c.children) walk(joinPath(path, k));
  };
  walk('/');
  return out;
}

/** Structural invariants of a tree, checked through the read API. */
function checkInvariants(t: TreeStateMachine): void {
  const live = new Set(t.sessions().map((s) => s.id));
  const owned = new Map<number, string[]>();
  const walk = (path: string): void => {
    const c = t.getChildren(path);
    if (!c.ok) throw new Error(`${path}: ${c.message}`);
    const s = c.stat;
    expect(s.numChildren).toBe(c.children.length);
    expect(s.mzxid).toBeGreaterThanOrEqual(s.czxid);
    expect(s.pzxid).toBeGreaterThanOrEqual(s.czxid);
    expect(s.czxid).toBeLessThanOrEqual(t.lastZxid);
    expect(s.cversion).toBeGreaterThanOrEqual(s.numChildren);
    if (s.ephemeralOwner !== 0) {
      expect(live.has(s.ephemeralOwner)).toBe(true);
      expect(s.numChildren).toBe(0);
      owned.set(s.ephemeralOwner, [...(owned.get(s.ephemeralOwner) ?? []), path]);
    }
    for (const k of c.children) {
      const child = t.exists(joinPath(path, k));
      expect(child.ok && child.stat && child.stat.czxid <= s.pzxid).toBe(true);
      walk(joinPath(path, k));
    }
  };
  walk('/');
  for (const id of live) expect(t.ephemerals(id)).toEqual((owned.get(id) ?? []).sort());
}

function richState(): Driver {
  const d = new Driver();
  const s1 = d.ok({ op: 'createSession', timeoutMs: 4000 }).sessionId;
  const s2 = d.ok({ op: 'createSession', timeoutMs: 9000 }).sessionId;
  d.ok({ op: 'create', path: '/app', data: bytes('root of app'), mode: P, clientId: 'alpha', seq: 1 });
  d.ok({ op: 'create', path: '/app/cfg', data: new Uint8Array([0, 1, 2, 255]), mode: P });
  d.ok({ op: 'create', path: '/app/lock-', data: bytes('me'), mode: CreateMode.EPHEMERAL_SEQUENTIAL, sessionId: s1, clientId: 'beta', seq: 4 });
  d.ok({ op: 'create', path: '/app/lock-', data: bytes('you'), mode: CreateMode.EPHEMERAL_SEQUENTIAL, sessionId: s2 });
  d.ok({ op: 'create', path: '/app/tmp', data: new Uint8Array(0), mode: P });
  d.ok({ op: 'delete', path: '/app/tmp', version: 0 });
  d.ok({ op: 'setData', path: '/app/cfg', data: bytes('v2'), version: 0 });
  d.err({ op: 'create', path: '/app', data: new Uint8Array(0), mode: P, clientId: 'gamma', seq: 2 }, TreeErrorCode.NODE_EXISTS);
  d.ok({ op: 'checkpointSessions', remaining: [[s1, 1500]] });
  d.ok({ op: 'create', path: '/deep', data: new Uint8Array(0), mode: P });
  d.ok({ op: 'create', path: '/deep/a', data: new Uint8Array(0), mode: P });
  d.ok({ op: 'create', path: '/deep/a/b', data: bytes('deep'), mode: P });
  return d;
}

describe('snapshot / restore', () => {
  it('restore(snapshot(x)) equals x: bytes, nodes, stats, sessions, retry records, lastZxid', () => {
    const d = richState();
    const snap = d.tree.snapshot();
    const t = new TreeStateMachine();
    t.restore(snap);
    expect(hex(t.snapshot())).toBe(hex(snap));
    expect(dump(t)).toEqual(dump(d.tree));
    expect(t.sessions()).toEqual(d.tree.sessions());
    expect(t.lastZxid).toBe(d.tree.lastZxid);
    for (const c of ['alpha', 'beta', 'gamma']) expect(t.lastRequest(c)).toEqual(d.tree.lastRequest(c));
    for (const s of d.tree.sessions()) expect(t.ephemerals(s.id)).toEqual(d.tree.ephemerals(s.id));
    checkInvariants(t);
  });

  it('the restored copy behaves the same: duplicates, sequence numbers, session close', () => {
    const d = richState();
    const copy = new TreeStateMachine();
    copy.restore(d.tree.snapshot());
    const next: Command[] = [
      { op: 'create', path: '/app/lock-', data: new Uint8Array(0), mode: CreateMode.EPHEMERAL_SEQUENTIAL, sessionId: 2, clientId: 'beta', seq: 4, nowMs: 1 },
      { op: 'create', path: '/app/lock-', data: new Uint8Array(0), mode: CreateMode.PERSISTENT_SEQUENTIAL, nowMs: 2 },
      { op: 'closeSession', sessionId: 1, nowMs: 3 },
      { op: 'create', path: '/app', data: new Uint8Array(0), mode: P, clientId: 'gamma', seq: 2, nowMs: 4 },
    ];
    for (const cmd of next) {
      const index = d.index + 1;
      const a = d.run(cmd);
      const b = copy.apply({ term: 2, index, type: EntryType.Normal, data: encodeCommand(cmd) });
      expect(b).toEqual(a);
    }
    expect(hex(copy.snapshot())).toBe(hex(d.tree.snapshot()));
  });

  it('restore replaces everything that was there', () => {
    const d = richState();
    const t = new TreeStateMachine();
    t.applyCommand({ op: 'create', path: '/stale', data: new Uint8Array(0), mode: P, nowMs: 0, clientId: 'zzz', seq: 1 }, 1);
    t.applyCommand({ op: 'createSession', timeoutMs: 5000, nowMs: 0 }, 2);
    t.restore(d.tree.snapshot());
    expect(t.exists('/stale')).toEqual({ ok: true, stat: null });
    expect(t.lastRequest('zzz')).toBeNull();
    expect(hex(t.snapshot())).toBe(hex(d.tree.snapshot()));
    // an empty tree round-trips too
    const empty = new TreeStateMachine();
    t.restore(empty.snapshot());
    expect(t.nodeCount).toBe(1);
    expect(t.lastZxid).toBe(0);
  });

  it('a corrupt snapshot is a broken invariant', () => {
    const snap = richState().tree.snapshot();
    const t = new TreeStateMachine();
    expect(() => t.restore(snap.subarray(0, snap.length - 1))).toThrow(TreeInvariantError);
    expect(() => t.restore(new Uint8Array([0x53, 1, 0, 0, 0, 2, 0x7b, 0x7d]))).toThrow(/missing fields/);
    expect(() => t.restore(encodeCommand({ op: 'check', path: '/', version: -1, nowMs: 0 }))).toThrow(/not a snapshot/);
  });
});

// ------------------------------------------------------------------------------------------------------------------
// Property: replicas that restore from a snapshot mid-way end byte-identical; applying is deterministic.

const paths = ['/a', '/a/b', '/a/b/c', '/a/s-', '/b', '/b/x', '/b/', '/e/x', '/', '/synod/x', 'rel', '/a//x'];
const path = fc.constantFrom(...paths);
const version = fc.integer({ min: -2, max: 3 });
const data = fc.uint8Array({ maxLength: 8 });
const mode = fc.constantFrom<CreateMode | 'BOGUS'>(...Object.values(CreateMode), 'BOGUS');
const sessionId = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 12 }) },
);

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('create' as const), path, data, mode: mode as fc.Arbitrary<CreateMode> }),
  fc.record({ op: fc.constant('delete' as const), path, version }),
  fc.record({ op: fc.constant('setData' as const), path, data, version }),
  fc.record({ op: fc.constant('check' as const), path, version }),
);

const header = fc.record({
  nowMs: fc.integer({ min: 0, max: 1e12 }),
  sessionId,
  retry: fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.record({ clientId: fc.constantFrom('c1', 'c2', 'c3'), seq: fc.integer({ min: 1, max: 12 }) }) },
  ),
});

const body = fc.oneof(
  { weight: 6, arbitrary: op },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('multi' as const), ops: fc.array(op, { maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('createSession' as const), timeoutMs: fc.integer({ min: 0, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('closeSession' as const), sessionId: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expireSessions' as const), ids: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('checkpointSessions' as const), remaining: fc.array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 30_000 })), { maxLength: 3 }) }) },
);

const command: fc.Arbitrary<Command> = fc.tuple(header, body).map(([h, b]) => {
  const c: Record<string, unknown> = { nowMs: h.nowMs, ...b };
  if (h.sessionId !== undefined && c.sessionId === undefined && b.op !== 'createSession') c.sessionId = h.sessionId;
  if (h.retry) Object.assign(c, h.retry);
  return c as unknown as Command;
});

/** Bias towards ops that succeed: the first commands build some structure. */
const prelude: Command[] = [
  { op: 'createSession', timeoutMs: 5000, nowMs: 0 },
  { op: 'create', path: '/a', data: new Uint8Array([1]), mode: P, nowMs: 0 },
  { op: 'create', path: '/b', data: new Uint8Array(0), mode: P, nowMs: 0 },
  { op: 'create', path: '/a/b', data: new Uint8Array(0), mode: CreateMode.EPHEMERAL, sessionId: 1, nowMs: 0 },
  { op: 'create', path: '/b/x', data: new Uint8Array(0), mode: P, nowMs: 0 },
  { op: 'createSession', timeoutMs: 5000, nowMs: 0 },
  { op: 'create', path: '/e', data: new Uint8Array(0), mode: CreateMode.EPHEMERAL, sessionId: 6, nowMs: 0 },
];

function replica(events: WatchEvent[]): TreeStateMachine {
  return new TreeStateMachine({ maxDataBytes: 6, maxClients: 2, minSessionTimeoutMs: 100, maxSessionTimeoutMs: 10_000, onEvents: (e) => events.push(...e) });
}

function run(t: TreeStateMachine, cmds: Command[], from: number, results: CommandResult[]): void {
  cmds.forEach((cmd, i) => {
    if (i < from) return;
    results.push(t.apply({ term: 1, index: i + 1, type: EntryType.Normal, data: encodeCommand(cmd) }));
  });
}

describe('property: determinism and snapshot equivalence', () => {
  const seen = new Map<string, number>();

  it('a replica restored from a snapshot mid-way ends byte-identical, with the same results and events', () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 60, size: 'max' }), fc.nat(), (tail, cut) => {
        const cmds = [...prelude, ...tail];
        const k = cut % (cmds.length + 1);
        const evA: WatchEvent[] = [];
        const a = replica(evA);
        const resA: CommandResult[] = [];
        run(a, cmds.slice(0, k), 0, resA);
        const mid = a.snapshot();
        run(a, cmds, k, resA);

        const evB: WatchEvent[] = [];
        const b = replica(evB);
        b.restore(mid);
        const resB: CommandResult[] = [];
        run(b, cmds, k, resB);

        const evC: WatchEvent[] = [];
        const c = replica(evC);
        const resC: CommandResult[] = [];
        run(c, cmds, 0, resC);

        const snapA = hex(a.snapshot());
        expect(hex(b.snapshot())).toBe(snapA);
        expect(hex(c.snapshot())).toBe(snapA);
        expect(resB).toEqual(resA.slice(k));
        expect(resC).toEqual(resA);
        for (const r of resA) seen.set(r.ok ? 'ok' : r.code, (seen.get(r.ok ? 'ok' : r.code) ?? 0) + 1);
        expect(evC).toEqual(evA);
        expect(evB).toEqual(evA.filter((e) => e.zxid > k));
        // events come in zxid order, each zxid at most once per batch sequence
        for (let i = 1; i < evA.length; i++) expect(evA[i].zxid).toBeGreaterThanOrEqual(evA[i - 1].zxid);
        checkInvariants(a);
        const fresh = new TreeStateMachine();
        fresh.restore(a.snapshot());
        expect(dump(fresh)).toEqual(dump(a));
      }),
      { numRuns: 300 },
    );
    // the generator reaches every outcome (else the property proves little)
    const total = [...seen.values()].reduce((x, y) => x + y, 0);
    expect((seen.get('ok') ?? 0) / total).toBeGreaterThan(0.2);
    for (const code of ['NO_NODE', 'NODE_EXISTS', 'BAD_VERSION', 'NOT_EMPTY', 'NO_CHILDREN_FOR_EPHEMERALS', 'BAD_ARGUMENTS', 'SESSION_EXPIRED', 'DATA_TOO_LARGE', 'STALE_REQUEST']) {
      expect(seen.has(code) ? code : `${code} was never produced`).toBe(code);
    }
  });

  it('a failed command (no retry identity) never changes the snapshot', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40, size: 'max' }), (tail) => {
        const t = replica([]);
        let index = 0;
        for (const cmd of [...prelude, ...tail]) {
          const before = t.snapshot();
          const { clientId: _c, seq: _s, ...bare } = cmd as Command & { clientId?: string; seq?: number };
          const r = t.apply({ term: 1, index: ++index, type: EntryType.Normal, data: encodeCommand(bare as Command) });
          if (!r.ok) expect(hex(t.snapshot())).toBe(hex(before));
        }
      }),
      { numRuns: 200 },
    );
  });
});
