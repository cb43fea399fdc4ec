/**
 * Watches, local to the member a client is connected to (not replicated) but deterministic: the same events
 * published in the same order with the same registrations produce the same notifications.
 *
 * Kinds (ZooKeeper 3.6 semantics):
 * - `data` (set by get/exists): one-shot; fires on NodeCreated, NodeDeleted, NodeDataChanged of the path.
 * - `child` (set by getChildren): one-shot; fires on NodeChildrenChanged and NodeDeleted of the path.
 * - `persistent` (addWatch PERSISTENT): stays; every event of the path, NodeChildrenChanged included.
 * - `persistentRecursive` (addWatch PERSISTENT_RECURSIVE): stays; NodeCreated/Deleted/DataChanged of the path and
 *   every descendant (as ZooKeeper, no NodeChildrenChanged for recursive watches).
 * A watcher (one client connection) gets at most one notification per event, however many of its watches match.
 *
 * Events are published in zxid order and kept in a bounded history (whole zxids are evicted together), so a
 * watch can start from a zxid: it first receives every matching event after that zxid (a one-shot watch fires at
 * once with the first one), or HISTORY_COMPACTED naming the oldest zxid it can start from.
 */
import { TreeErrorCode as E, TreeFailure, fail, treeInvariant } from './errors.js';
import { ROOT, parentOf, pathError } from './path.js';
import { EventType, WatchEvent } from './types.js';

export enum WatchKind {
  Data = 'data',
  Child = 'child',
  Persistent = 'persistent',
  PersistentRecursive = 'persistentRecursive',
}

export interface Notification {
  watcher: string;
  event: WatchEvent;
}

export interface WatchManagerOptions {
  /** Events kept for resuming watches (default 10,000). */
  historySize?: number;
  /** zxid the history starts after (the tree's lastZxid when the manager is created). */
  startZxid?: number;
}

export type AddWatchResult = { ok: true; backlog: Notification[] } | (TreeFailure & { oldestZxid?: number });
export type EventsSinceResult = { ok: true; events: WatchEvent[] } | (TreeFailure & { oldestZxid: number });

export const DEFAULT_HISTORY_SIZE = 10_000;
const KINDS: readonly string[] = Object.values(WatchKind);
const ONE_SHOT: ReadonlySet<WatchKind> = new Set([WatchKind.Data, WatchKind.Child]);

/** One watcher's watches on one path: kind → the zxid after which events count. */
type Reg = Map<WatchKind, number>;

/** Does a watch of `kind` registered at the event's own path fire for it? */
function firesExact(kind: WatchKind, type: EventType): boolean {
  switch (kind) {
    case WatchKind.Data:
      return type !== EventType.NodeChildrenChanged;
    case WatchKind.Child:
      return type === EventType.NodeChildrenChanged || type === EventType.NodeDeleted;
    case WatchKind.Persistent:
      return true;
    case WatchKind.PersistentRecursive:
      return type !== EventType.NodeChildrenChanged;
  }
}

function isAncestor(a: string, p: string): boolean {
  return a === ROOT ? p !== ROOT : p.startsWith(`${a}/`);
}

export class WatchManager {
  readonly historySize: number;
  private readonly byPath = new Map<string, Map<string, Reg>>();
  private recursive = 0;
  private history: WatchEvent[] = [];
  private head = 0;
  private compactedThrough: number;
  private last: number;

  constructor(opts: WatchManagerOptions = {}) {
    this.historySize = opts.historySize ?? DEFAULT_HISTORY_SIZE;
    if (!Number.isSafeInteger(this.historySize) || this.historySize < 1) {
      throw new RangeError(`historySize must be an integer >= 1, got ${this.historySize}`);
    }
    this.compactedThrough = this.last = opts.startZxid ?? 0;
  }

  /** The oldest zxid a watch may start from (events after it are all kept). */
  get oldestZxid(): number {
    return this.compactedThrough;
  }

  /** zxid of the last published event (or the start zxid). */
  get lastZxid(): number {
    return this.last;
  }

  /** Number of (watcher, path, kind) registrations. */
  get size(): number {
    let n = 0;
    for (const m of this.byPath.values()) for (const r of m.values()) n += r.size;
    return n;
  }

  /** Events kept in the history. */
  get historyLength(): number {
    return this.history.length - this.head;
  }

  /**
   * Register a watch. With `fromZxid`, matching events after it that are already in the history come back in
   * `backlog` (a one-shot watch that matches one is consumed and not registered).
   */
  addWatch(watcher: string, path: string, kind: WatchKind, fromZxid?: number): AddWatchResult {
    if (typeof watcher !== 'string' || watcher.length === 0) return fail(E.BAD_ARGUMENTS, 'watcher id must be a non-empty string');
    const pe = pathError(path);
    if (pe) return fail(E.BAD_ARGUMENTS, pe);
    if (!KINDS.includes(kind)) return fail(E.BAD_ARGUMENTS, `unknown watch kind ${String(kind)}; expected one of ${KINDS.join(', ')}`);
    if (fromZxid !== undefined && !(Number.isSafeInteger(fromZxid) && fromZxid >= 0)) {
      return fail(E.BAD_ARGUMENTS, `fromZxid must be an integer >= 0, got ${String(fromZxid)}`);
    }
    const backlog: Notification[] = [];
    if (fromZxid !== undefined) {
      const since = this.eventsSince(fromZxid);
      if (!since.ok) return since;
      for (const event of since.events) {
        const match = event.path === path ? firesExact(kind, event.type) : kind === WatchKind.PersistentRecursive && isAncestor(path, event.path) && event.type !== EventType.NodeChildrenChanged;
        if (!match) continue;
        backlog.push({ watcher, event });
        if (ONE_SHOT.has(kind)) return { ok: true, backlog };
      }
    }
    let perPath = this.byPath.get(path);
    if (!perPath) this.byPath.set(path, (perPath = new Map()));
    let reg = perPath.get(watcher);
    if (!reg) perPath.set(watcher, (reg = new Map()));
    if (kind === WatchKind.PersistentRecursive && !reg.has(kind)) this.recursive++;
    reg.set(kind, Math.max(fromZxid ?? this.last, 0));
    return { ok: true, backlog };
  }

  /** Remove one kind (or all kinds, 'any') of a watcher's watches on a path. NO_WATCHER when there was none. */
  removeWatch(watcher: string, path: string, kind: WatchKind | 'any'): { ok: true; removed: number } | TreeFailure {
    const perPath = this.byPath.get(path);
    const reg = perPath?.get(watcher);
    let removed = 0;
    if (reg) {
      for (const k of [...reg.keys()]) {
        if (kind !== 'any' && k !== kind) continue;
        this.drop(path, watcher, reg, k);
        removed++;
      }
    }
    if (removed === 0) return fail(E.NO_WATCHER, `watcher "${watcher}" has no ${kind === 'any' ? '' : `${kind} `}watch on "${path}"`);
    return { ok: true, removed };
  }

  /** Remove every watch of a watcher (its connection closed). Returns how many were removed. */
  removeWatcher(watcher: string): number {
    let removed = 0;
    for (const [path, perPath] of [...this.byPath]) {
      const reg = perPath.get(watcher);
      if (!reg) continue;
      for (const k of [...reg.keys()]) {
        this.drop(path, watcher, reg, k);
        removed++;
      }
    }
    return removed;
  }

  private drop(path: string, watcher: string, reg: Reg, kind: WatchKind): void {
    reg.delete(kind);
    if (kind === WatchKind.PersistentRecursive) this.recursive--;
    if (reg.size === 0) {
      const perPath = this.byPath.get(path)!;
      perPath.delete(watcher);
      if (perPath.size === 0) this.byPath.delete(path);
    }
  }

  /**
   * Record applied events (zxid order, each zxid newer than every one published before) and return the
   * notifications they trigger, in event order.
   */
  publish(events: readonly WatchEvent[]): Notification[] {
    const out: Notification[] = [];
    if (events.length === 0) return out;
    treeInvariant(events[0].zxid > this.last, () => `event zxid ${events[0].zxid} published after ${this.last}: events must arrive in zxid order, once`);
    for (let i = 1; i < events.length; i++) {
      treeInvariant(events[i].zxid >= events[i - 1].zxid, 'events of one publish must be in zxid order');
    }
    for (const e of events) {
      this.history.push(e);
      this.notify(e, out);
    }
    this.last = events[events.length - 1].zxid;
    this.trim();
    return out;
  }

  private notify(e: WatchEvent, out: Notification[]): void {
    const fired = new Set<string>();
    const perPath = this.byPath.get(e.path);
    if (perPath) {
      for (const [watcher, reg] of [...perPath]) {
        let hit = false;
        for (const [kind, after] of [...reg]) {
          if (e.zxid <= after || !firesExact(kind, e.type)) continue;
          hit = true;
          if (ONE_SHOT.has(kind)) this.drop(e.path, watcher, reg, kind);
        }
        if (hit && !fired.has(watcher)) {
          fired.add(watcher);
          out.push({ watcher, event: e });
        }
      }
    }
    if (this.recursive === 0 || e.type === EventType.NodeChildrenChanged || e.path === ROOT) return;
    let p = e.path;
    do {
      p = parentOf(p);
      const m = this.byPath.get(p);
      if (!m) continue;
      for (const [watcher, reg] of m) {
        const after = reg.get(WatchKind.PersistentRecursive);
        if (after === undefined || e.zxid <= after || fired.has(watcher)) continue;
        fired.add(watcher);
        out.push({ watcher, event: e });
      }
    } while (p !== ROOT);
  }

  private trim(): void {
    while (this.history.length - this.head > this.historySize) {
      const z = this.history[this.head].zxid;
      while (this.head < this.history.length && this.history[this.head].zxid === z) this.head++;
      this.compactedThrough = z;
    }
    if (this.head > 1024 && this.head * 2 > this.history.length) {
      this.history = this.history.slice(this.head);
      this.head = 0;
    }
  }

  /** Every kept event with zxid > fromZxid, or HISTORY_COMPACTED when some of them are gone. */
  eventsSince(fromZxid: number): EventsSinceResult {
    if (fromZxid < this.compactedThrough) {
      return {
        ...fail(E.HISTORY_COMPACTED, `events after zxid ${fromZxid} are no longer kept; the oldest zxid you can start from is ${this.compactedThrough}: read the current state again and watch from the zxid you read`),
        oldestZxid: this.compactedThrough,
      };
    }
    let lo = this.head;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.history[mid].zxid <= fromZxid) lo = mid + 1;
      else hi = mid;
    }
    return { ok: true, events: this.history.slice(lo) };
  }

  /**
   * The tree was replaced by a snapshot at `zxid`: the events in between are unknown. Clears the history (watches
   * may start from `zxid` on) and drops every watch; returns the watchers that had some, in order, so the service
   * can tell them to read again and re-watch.
   */
  reset(zxid: number): string[] {
    const watchers = new Set<string>();
    for (const m of this.byPath.values()) for (const w of m.keys()) watchers.add(w);
    this.byPath.clear();
    this.recursive = 0;
    this.history = [];
    this.head = 0;
    this.compactedThrough = this.last = zxid;
    return [...watchers].sort();
  }
}
