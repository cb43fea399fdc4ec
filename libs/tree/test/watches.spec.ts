/** WatchManager: one-shot, persistent and recursive watches, zxid order, resume from a zxid, compacted history. */
import {
  CreateMode,
  EventType,
  GRPC_STATUS_OF,
  Notification,
  TreeErrorCode as E,
  TreeInvariantError,
  TreeStateMachine,
  WatchKind,
  WatchManager,
  encodeCommand,
} from '@app/tree';
import { EntryType } from '@app/raft';
import { Driver, bytes } from './helpers.js';

const P = CreateMode.PERSISTENT;
const none = new Uint8Array(0);

/** A tree whose events feed a WatchManager; notifications are collected. */
class Node {
  readonly d: Driver;
  readonly wm: WatchManager;
  readonly got: Notification[] = [];

  constructor(historySize = 1000) {
    this.wm = new WatchManager({ historySize });
    this.d = new Driver({ onEvents: (evs) => this.got.push(...this.wm.publish(evs)) });
  }

  take(): string[] {
    return this.got.splice(0).map((n) => `${n.watcher} ${n.event.type} ${n.event.path} @${n.event.zxid}`);
  }

  watch(watcher: string, path: string, kind: WatchKind, from?: number): Notification[] {
    const r = this.wm.addWatch(watcher, path, kind, from);
    if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
    return r.backlog;
  }
}

describe('one-shot watches', () => {
  it('a data watch fires once, on data change', () => {
    const n = new Node();
    n.d.ok({ op: 'create', path: '/a', data: none, mode: P });
    n.watch('c1', '/a', WatchKind.Data);
    n.d.ok({ op: 'setData', path: '/a', data: bytes('1'), version: -1 });
    n.d.ok({ op: 'setData', path: '/a', data: bytes('2'), version: -1 });
    expect(n.take()).toEqual(['c1 NodeDataChanged /a @2']);
    expect(n.wm.size).toBe(0);
  });

  it('an exists watch on a missing node fires on create; a data watch fires on delete', () => {
    const n = new Node();
    n.watch('c1', '/a', WatchKind.Data);
    n.d.ok({ op: 'create', path: '/a', data: none, mode: P });
    expect(n.take()).toEqual(['c1 NodeCreated /a @1']);
    n.watch('c1', '/a', WatchKind.Data);
    n.d.ok({ op: 'create', path: '/a/kid', data: none, mode: P }); // children changes do not fire data watches
    n.d.ok({ op: 'delete', path: '/a/kid', version: -1 });
    expect(n.take()).toEqual([]);
    n.d.ok({ op: 'delete', path: '/a', version: -1 });
    expect(n.take()).toEqual(['c1 NodeDeleted /a @4']);
  });

  it('a child watch fires on children changed or node deleted, not on data change', () => {
    const n = new Node();
    n.d.ok({ op: 'create', path: '/p', data: none, mode: P });
    n.watch('c1', '/p', WatchKind.Child);
    n.d.ok({ op: 'setData', path: '/p', data: bytes('x'), version: -1 });
    expect(n.take()).toEqual([]);
    n.d.ok({ op: 'create', path: '/p/k', data: none, mode: P });
    n.d.ok({ op: 'create', path: '/p/l', data: none, mode: P });
    expect(n.take()).toEqual(['c1 NodeChildrenChanged /p @3']);
    n.watch('c1', '/p/k', WatchKind.Child);
    n.d.ok({ op: 'delete', path: '/p/k', version: -1 });
    expect(n.take()).toEqual(['c1 NodeDeleted /p/k @5']);
  });

  it('one notification per watcher per event; matching one-shot watches are all consumed', () => {
    const n = new Node();
    n.d.ok({ op: 'create', path: '/a', data: none, mode: P });
    n.watch('c1', '/a', WatchKind.Data);
    n.watch('c1', '/a', WatchKind.Child);
    n.watch('c1', '/a', WatchKind.Data); // same watch again: still one
    n.watch('c1', '/', WatchKind.PersistentRecursive);
    n.watch('c2', '/a', WatchKind.Data);
    n.d.ok({ op: 'delete', path: '/a', version: -1 });
    expect(n.take()).toEqual(['c1 NodeDeleted /a @2', 'c2 NodeDeleted /a @2']);
    expect(n.wm.size).toBe(1); // only the recursive one stays
  });
});

describe('persistent watches', () => {
  it('a persistent watch keeps firing for every event of its path, children changes included', () => {
    const n = new Node();
    n.watch('c1', '/cfg', WatchKind.Persistent);
    n.d.ok({ op: 'create', path: '/cfg', data: none, mode: P });
    n.d.ok({ op: 'setData', path: '/cfg', data: bytes('1'), version: -1 });
    n.d.ok({ op: 'setData', path: '/cfg', data: bytes('2'), version: -1 });
    n.d.ok({ op: 'create', path: '/cfg/x', data: none, mode: P });
    n.d.ok({ op: 'setData', path: '/cfg/x', data: bytes('2'), version: -1 }); // a descendant: not for a plain persistent watch
    n.d.ok({ op: 'delete', path: '/cfg/x', version: -1 });
    n.d.ok({ op: 'delete', path: '/cfg', version: -1 });
    expect(n.take()).toEqual([
      'c1 NodeCreated /cfg @1',
      'c1 NodeDataChanged /cfg @2',
      'c1 NodeDataChanged /cfg @3',
      'c1 NodeChildrenChanged /cfg @4',
      'c1 NodeChildrenChanged /cfg @6',
      'c1 NodeDeleted /cfg @7',
    ]);
    expect(n.wm.size).toBe(1);
  });

  it('a recursive watch sees every descendant, without NodeChildrenChanged', () => {
    const n = new Node();
    n.d.ok({ op: 'create', path: '/app', data: none, mode: P });
    n.d.ok({ op: 'create', path: '/apple', data: none, mode: P });
    n.watch('c1', '/app', WatchKind.PersistentRecursive);
    n.d.ok({ op: 'create', path: '/app/a', data: none, mode: P });
    n.d.ok({ op: 'create', path: '/app/a/b', data: none, mode: P });
    n.d.ok({ op: 'setData', path: '/app/a/b', data: bytes('x'), version: -1 });
    n.d.ok({ op: 'setData', path: '/apple', data: bytes('x'), version: -1 }); // a sibling with the same prefix
    n.d.ok({ op: 'setData', path: '/app', data: bytes('x'), version: -1 });
    n.d.ok({ op: 'delete', path: '/app/a/b', version: -1 });
    expect(n.take()).toEqual([
      'c1 NodeCreated /app/a @3',
      'c1 NodeCreated /app/a/b @4',
      'c1 NodeDataChanged /app/a/b @5',
      'c1 NodeDataChanged /app @7',
      'c1 NodeDeleted /app/a/b @8',
    ]);
  });

  it('a recursive watch on the root sees everything', () => {
    const n = new Node();
    n.watch('all', '/', WatchKind.PersistentRecursive);
    n.d.ok({ op: 'create', path: '/x', data: none, mode: P });
    n.d.ok({ op: 'setData', path: '/', data: bytes('r'), version: -1 });
    expect(n.take()).toEqual(['all NodeCreated /x @1', 'all NodeDataChanged / @2']);
  });

  it('notifications come in zxid order, each event to its watchers in registration order', () => {
    const n = new Node();
    n.watch('w2', '/', WatchKind.PersistentRecursive);
    n.watch('w1', '/', WatchKind.PersistentRecursive);
    n.watch('w3', '/m', WatchKind.Persistent);
    n.d.ok({ op: 'create', path: '/m', data: none, mode: P });
    n.d.ok({ op: 'multi', ops: [{ op: 'create', path: '/m/a', data: none, mode: P }, { op: 'setData', path: '/m', data: bytes('z'), version: -1 }] });
    const all = n.got.splice(0);
    expect(all.map((x) => x.event.zxid)).toEqual([1, 1, 1, 2, 2, 2, 2, 2, 2]);
    expect(all.map((x) => `${x.watcher} ${x.event.type} ${x.event.path}`)).toEqual([
      'w3 NodeCreated /m', 'w2 NodeCreated /m', 'w1 NodeCreated /m',
      'w2 NodeCreated /m/a', 'w1 NodeCreated /m/a',
      'w3 NodeChildrenChanged /m',
      'w3 NodeDataChanged /m', 'w2 NodeDataChanged /m', 'w1 NodeDataChanged /m',
    ]);
  });

  it('removeWatch, removeWatcher and NO_WATCHER', () => {
    const n = new Node();
    n.watch('c1', '/a', WatchKind.Persistent);
    n.watch('c1', '/a', WatchKind.Data);
    n.watch('c1', '/b', WatchKind.PersistentRecursive);
    n.watch('c2', '/a', WatchKind.Persistent);
    expect(n.wm.removeWatch('c1', '/a', WatchKind.Data)).toEqual({ ok: true, removed: 1 });
    const r = n.wm.removeWatch('c1', '/a', WatchKind.Child);
    expect(r).toMatchObject({ ok: false, code: E.NO_WATCHER });
    expect(GRPC_STATUS_OF[E.NO_WATCHER]).toBe('NOT_FOUND');
    expect(n.wm.removeWatcher('c1')).toBe(2);
    expect(n.wm.size).toBe(1);
    n.d.ok({ op: 'create', path: '/b', data: none, mode: P });
    n.d.ok({ op: 'create', path: '/b/x', data: none, mode: P });
    n.d.ok({ op: 'create', path: '/a', data: none, mode: P });
    expect(n.take()).toEqual(['c2 NodeCreated /a @3']);
    expect(n.wm.removeWatch('c2', '/a', 'any')).toEqual({ ok: true, removed: 1 });
  });

  it('bad arguments', () => {
    const wm = new WatchManager();
    expect(wm.addWatch('c', 'rel', WatchKind.Data)).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(wm.addWatch('', '/a', WatchKind.Data)).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(wm.addWatch('c', '/a', 'exists' as WatchKind)).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(wm.addWatch('c', '/a', WatchKind.Data, -1)).toMatchObject({ ok: false, code: E.BAD_ARGUMENTS });
    expect(() => new WatchManager({ historySize: 0 })).toThrow(RangeError);
  });
});

describe('history: start from a zxid, never skip, compaction', () => {
  it('a persistent watch started from a zxid gets every event after it, then the live ones', () => {
    const n = new Node();
    n.d.ok({ op: 'create', path: '/s', data: none, mode: P }); // 1
    n.d.ok({ op: 'setData', path: '/s', data: bytes('a'), version: -1 }); // 2
    n.d.ok({ op: 'create', path: '/s/k', data: none, mode: P }); // 3
    n.d.ok({ op: 'setData', path: '/s', data: bytes('b'), version: -1 }); // 4
    const backlog = n.watch('c1', '/s', WatchKind.PersistentRecursive, 1);
    expect(backlog.map((x) => `${x.event.type} ${x.event.path} @${x.event.zxid}`)).toEqual([
      'NodeDataChanged /s @2', 'NodeCreated /s/k @3', 'NodeDataChanged /s @4',
    ]);
    n.d.ok({ op: 'setData', path: '/s/k', data: bytes('c'), version: -1 }); // 5
    expect(n.take()).toEqual(['c1 NodeDataChanged /s/k @5']);
    // from the last zxid: nothing old, only the new
    expect(n.watch('c2', '/s', WatchKind.Persistent, 5)).toEqual([]);
  });

  it('a one-shot watch started from a zxid fires at once when it missed a change', () => {
    const n = new Node();
    n.d.ok({ op: 'create', path: '/s', data: none, mode: P }); // 1
    n.d.ok({ op: 'setData', path: '/s', data: bytes('a'), version: -1 }); // 2
    n.d.ok({ op: 'setData', path: '/s', data: bytes('b'), version: -1 }); // 3
    const b = n.watch('c1', '/s', WatchKind.Data, 1);
    expect(b.map((x) => x.event.zxid)).toEqual([2]);
    expect(n.wm.size).toBe(0); // consumed
    expect(n.watch('c1', '/s', WatchKind.Child, 1)).toEqual([]); // nothing for children: registered
    expect(n.wm.size).toBe(1);
  });

  it('a watch from a future zxid only gets events after it', () => {
    const n = new Node();
    n.watch('c1', '/', WatchKind.PersistentRecursive, 2);
    n.d.ok({ op: 'create', path: '/a', data: none, mode: P }); // 1
    n.d.ok({ op: 'create', path: '/b', data: none, mode: P }); // 2
    n.d.ok({ op: 'create', path: '/c', data: none, mode: P }); // 3
    expect(n.take()).toEqual(['c1 NodeCreated /c @3']);
  });

  it('HISTORY_COMPACTED names the oldest zxid; whole zxids are evicted together', () => {
    const n = new Node(5);
    const s = n.d.ok({ op: 'createSession', timeoutMs: 5000 }).sessionId; // 1 (no events)
    n.d.ok({ op: 'create', path: '/e1', data: none, mode: CreateMode.EPHEMERAL, sessionId: s }); // 2: 2 events
    n.d.ok({ op: 'create', path: '/e2', data: none, mode: CreateMode.EPHEMERAL, sessionId: s }); // 3: 2 events
    expect(n.wm.historyLength).toBe(4);
    n.d.ok({ op: 'closeSession', sessionId: s }); // 4: 4 events -> 8 kept > 5: evicts zxids 2 and 3
    expect(n.wm.historyLength).toBe(4);
    expect(n.wm.oldestZxid).toBe(3);
    const r = n.wm.addWatch('c1', '/', WatchKind.PersistentRecursive, 2);
    expect(r).toMatchObject({ ok: false, code: E.HISTORY_COMPACTED, oldestZxid: 3 });
    expect(!r.ok && r.message).toMatch(/oldest zxid you can start from is 3/);
    expect(GRPC_STATUS_OF[E.HISTORY_COMPACTED]).toBe('OUT_OF_RANGE');
    const ok = n.watch('c1', '/', WatchKind.PersistentRecursive, 3);
    expect(ok.map((x) => `${x.event.type} ${x.event.path}`)).toEqual(['NodeDeleted /e1', 'NodeDeleted /e2']);
    const since = n.wm.eventsSince(3);
    expect(since.ok && since.events.length).toBe(4);
  });

  it('publishing out of zxid order is a broken invariant', () => {
    const wm = new WatchManager();
    wm.publish([{ type: EventType.NodeCreated, path: '/a', zxid: 5 }]);
    expect(() => wm.publish([{ type: EventType.NodeCreated, path: '/b', zxid: 5 }])).toThrow(TreeInvariantError);
    expect(() => wm.publish([{ type: EventType.NodeCreated, path: '/b', zxid: 7 }, { type: EventType.NodeCreated, path: '/c', zxid: 6 }])).toThrow(TreeInvariantError);
  });

  it('a long run keeps the ring bounded and every event after oldestZxid', () => {
    const n = new Node(50);
    n.d.ok({ op: 'create', path: '/c', data: none, mode: P });
    for (let i = 0; i < 3000; i++) n.d.ok({ op: 'setData', path: '/c', data: none, version: -1 });
    expect(n.wm.historyLength).toBe(50);
    expect(n.wm.oldestZxid).toBe(2951);
    const since = n.wm.eventsSince(n.wm.oldestZxid);
    expect(since.ok && since.events.map((e) => e.zxid)).toEqual(Array.from({ length: 50 }, (_, i) => 2952 + i));
  });

  it('restoring the tree from a snapshot resets the history and drops the watches', () => {
    const src = new Driver();
    src.ok({ op: 'create', path: '/x', data: none, mode: P });
    src.ok({ op: 'create', path: '/y', data: none, mode: P });
    const wm = new WatchManager();
    const got: Notification[] = [];
    let dropped: string[] = [];
    const t = new TreeStateMachine({ onEvents: (e) => got.push(...wm.publish(e)), onRestore: (z) => (dropped = wm.reset(z)) });
    wm.addWatch('b', '/x', WatchKind.Data);
    wm.addWatch('a', '/', WatchKind.PersistentRecursive);
    t.restore(src.tree.snapshot());
    expect(dropped).toEqual(['a', 'b']);
    expect(wm.size).toBe(0);
    expect(wm.oldestZxid).toBe(2);
    expect(wm.addWatch('a', '/', WatchKind.PersistentRecursive, 1)).toMatchObject({ ok: false, code: E.HISTORY_COMPACTED });
    expect(wm.addWatch('a', '/', WatchKind.PersistentRecursive, 2)).toEqual({ ok: true, backlog: [] });
    // the restored tree keeps publishing into the manager
    const res = t.apply({ term: 1, index: 3, type: EntryType.Normal, data: encodeCommand({ op: 'delete', path: '/y', version: -1, nowMs: 0 }) });
    expect(res.ok).toBe(true);
    expect(got).toEqual([{ watcher: 'a', event: { type: EventType.NodeDeleted, path: '/y', zxid: 3 } }]);
  });
});
