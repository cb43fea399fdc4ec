/**
 * The member's side of the `Watch` streams: every stream's watches are registered in this member's
 * WatchManager (libs/tree) under the watcher key "<stream>/<watch_id>", so a notification names exactly one
 * watch of one stream. The tree publishes the events of each applied command (all of one zxid) and this hub
 * turns the notifications into one `events` message per stream, in zxid order, followed by a `removed
 * {reason: "fired"}` for one-shot watches that fired.
 *
 * Backpressure: grpc-js buffers what a slow client does not read; a stream whose buffer grows over
 * `maxBufferedBytes` is ended with RESOURCE_EXHAUSTED (its client resumes with start_zxid = the last zxid it
 * processed, from the retained history), so one slow watcher cannot exhaust the member's memory.
 */
import * as grpc from '@grpc/grpc-js';
import { EventType, Stat, TreeErrorCode, WatchEvent, WatchKind, WatchManager, pathError } from '@app/tree';
import { ServiceError, invalid } from './errors.js';

export interface WireWatchEvent {
  type: string;
  path: string;
  zxid: number;
  watchId: number;
  stat?: Stat;
}

export type WatchResponse = Record<string, unknown>;

const EVENT_NAMES: Record<EventType, string> = {
  [EventType.NodeCreated]: 'NODE_CREATED',
  [EventType.NodeDeleted]: 'NODE_DELETED',
  [EventType.NodeDataChanged]: 'NODE_DATA_CHANGED',
  [EventType.NodeChildrenChanged]: 'NODE_CHILDREN_CHANGED',
};

export const WATCH_KINDS: Record<string, WatchKind> = {
  DATA: WatchKind.Data,
  CHILDREN: WatchKind.Child,
  PERSISTENT: WatchKind.Persistent,
  PERSISTENT_RECURSIVE: WatchKind.PersistentRecursive,
};
const KIND_BY_NUMBER = ['DATA', 'CHILDREN', 'PERSISTENT', 'PERSISTENT_RECURSIVE'];

interface WatchReg {
  path: string;
  kind: WatchKind;
  sessionId: number;
}

/** One open Watch stream. */
export class WatchStream {
  readonly watches = new Map<number, WatchReg>();
  private nextServerId = -1;
  closed = false;

  constructor(
    readonly id: number,
    private readonly write: (msg: WatchResponse) => void,
    private readonly bufferedBytes: () => number,
    readonly end: (err: ServiceError) => void,
  ) {}

  key(watchId: number): string {
    return `${this.id}/${watchId}`;
  }

  serverId(): number {
    while (this.watches.has(this.nextServerId)) this.nextServerId--;
    return this.nextServerId--;
  }

  send(msg: WatchResponse, maxBuffered: number): void {
    if (this.closed) return;
    if (this.bufferedBytes() > maxBuffered) {
      this.end(
        new ServiceError(
          grpc.status.RESOURCE_EXHAUSTED,
          `watch stream fell behind by more than ${maxBuffered} bytes; reconnect and add your watches again with start_zxid = the last zxid you processed`,
        ),
      );
      return;
    }
    this.write(msg);
  }
}

export interface WatchAddRequest {
  path: string;
  kind: string | number;
  startZxid?: number | null;
  watchId: number;
  sessionId: number;
}

export class WatchHub {
  private readonly streams = new Map<number, WatchStream>();
  /** The latest stream that named a session (where one-shot watches set by reads of that session go). */
  private readonly sessionStreams = new Map<number, WatchStream>();
  private readonly stats = new WeakMap<WatchEvent, Stat | undefined>();
  private nextStream = 1;

  constructor(
    readonly manager: WatchManager,
    private readonly header: () => Record<string, number>,
    /** The member's applied index: events after it are what a new watch without start_zxid receives. */
    private readonly applied: () => number,
    private readonly sessionLive: (id: number) => boolean,
    private readonly maxBufferedBytes = 8 * 1024 * 1024,
  ) {}

  get streamCount(): number {
    return this.streams.size;
  }

  open(write: (msg: WatchResponse) => void, bufferedBytes: () => number, end: (err: ServiceError) => void): WatchStream {
    const s = new WatchStream(this.nextStream++, write, bufferedBytes, (err) => {
      if (s.closed) return;
      this.close(s);
      end(err);
    });
    this.streams.set(s.id, s);
    return s;
  }

  close(s: WatchStream): void {
    if (s.closed) return;
    s.closed = true;
    for (const id of s.watches.keys()) this.manager.removeWatcher(s.key(id));
    s.watches.clear();
    this.streams.delete(s.id);
    for (const [sid, st] of this.sessionStreams) if (st === s) this.sessionStreams.delete(sid);
  }

  /** Remembers the stat of each event's node right after its command was applied (for the event message). */
  recordStats(events: readonly WatchEvent[], statOf: (path: string) => Stat | undefined): void {
    for (const e of events) this.stats.set(e, e.type === EventType.NodeDeleted ? undefined : statOf(e.path));
  }

  private wire(e: WatchEvent, watchId: number): WireWatchEvent {
    const stat = this.stats.get(e);
    return stat ? { type: EVENT_NAMES[e.type], path: e.path, zxid: e.zxid, watchId, stat } : { type: EVENT_NAMES[e.type], path: e.path, zxid: e.zxid, watchId };
  }

  private parseKey(watcher: string): { stream: WatchStream; watchId: number } | undefined {
    const slash = watcher.indexOf('/');
    const stream = this.streams.get(Number(watcher.slice(0, slash)));
    if (!stream) return undefined;
    return { stream, watchId: Number(watcher.slice(slash + 1)) };
  }

  /** Handles a WatchAdd from a stream. Throws ServiceError (INVALID_ARGUMENT, NOT_FOUND) for a bad request. */
  add(s: WatchStream, a: WatchAddRequest): void {
    const pe = pathError(a.path);
    if (pe) throw invalid(`watch: ${pe}`);
    const kindName = typeof a.kind === 'number' ? KIND_BY_NUMBER[a.kind] : a.kind;
    const kind = kindName !== undefined ? WATCH_KINDS[kindName] : undefined;
    if (!kind) throw invalid(`watch: unknown kind ${JSON.stringify(a.kind)}; use DATA, CHILDREN, PERSISTENT or PERSISTENT_RECURSIVE`);
    if (!Number.isSafeInteger(a.watchId)) throw invalid(`watch: watch_id ${a.watchId} is not an integer`);
    if (a.watchId !== 0 && s.watches.has(a.watchId)) throw invalid(`watch: watch_id ${a.watchId} is already in use on this stream; remove it first or pick another id`);
    const start = a.startZxid ?? undefined;
    if (start !== undefined && !(Number.isSafeInteger(start) && start >= 0)) throw invalid(`watch: start_zxid ${start} is not a valid zxid`);
    if (a.sessionId !== 0) {
      if (!this.sessionLive(a.sessionId)) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `watch: session ${a.sessionId} is expired, closed or unknown on this member; open a new session`);
      this.sessionStreams.set(a.sessionId, s);
    }
    const watchId = a.watchId !== 0 ? a.watchId : s.serverId();
    const res = this.manager.addWatch(s.key(watchId), a.path, kind, start);
    if (!res.ok) {
      if (res.code === TreeErrorCode.HISTORY_COMPACTED) {
        s.send({ header: this.header(), compacted: { watchId, compactZxid: res.oldestZxid ?? this.manager.oldestZxid } }, this.maxBufferedBytes);
        return;
      }
      throw invalid(`watch: ${res.message}`);
    }
    const oneShot = kind === WatchKind.Data || kind === WatchKind.Child;
    const consumed = oneShot && res.backlog.length > 0;
    if (!consumed) s.watches.set(watchId, { path: a.path, kind, sessionId: a.sessionId });
    s.send({ header: this.header(), added: { watchId, zxid: start ?? this.applied() } }, this.maxBufferedBytes);
    if (res.backlog.length > 0) {
      s.send({ header: this.header(), events: { events: res.backlog.map((n) => this.wire(n.event, watchId)) } }, this.maxBufferedBytes);
    }
    if (consumed) s.send({ header: this.header(), removed: { watchId, reason: 'fired' } }, this.maxBufferedBytes);
  }

  remove(s: WatchStream, watchId: number): void {
    const reg = s.watches.get(watchId);
    if (reg) {
      this.manager.removeWatcher(s.key(watchId));
      s.watches.delete(watchId);
    }
    s.send({ header: this.header(), removed: { watchId, reason: reg ? '' : 'no such watch on this stream' } }, this.maxBufferedBytes);
  }

  /**
   * A one-shot watch left by a read (`watch: true`): delivered on the stream that last named the session on
   * this member. Returns the watch id. Call it in the same turn as the read, so no event can fall in between.
   */
  addForRead(sessionId: number, path: string, kind: WatchKind): number {
    if (sessionId === 0) throw invalid('watch: true needs the session_id whose Watch stream receives the event');
    const s = this.sessionStreams.get(sessionId);
    if (!s || s.closed) {
      throw new ServiceError(
        grpc.status.FAILED_PRECONDITION,
        `watch: session ${sessionId} has no Watch stream on this member; open one (any WatchAdd with session_id ${sessionId}) before reading with watch: true`,
      );
    }
    const watchId = s.serverId();
    const res = this.manager.addWatch(s.key(watchId), path, kind);
    if (!res.ok) throw invalid(`watch: ${res.message}`);
    s.watches.set(watchId, { path, kind, sessionId });
    s.send({ header: this.header(), added: { watchId, zxid: this.applied() } }, this.maxBufferedBytes);
    return watchId;
  }

  /** The tree applied a command with these events: notify the watches, one message per stream. */
  publish(events: readonly WatchEvent[]): void {
    const notes = this.manager.publish(events);
    if (notes.length === 0) return;
    const perStream = new Map<WatchStream, { events: WireWatchEvent[]; fired: number[] }>();
    for (const n of notes) {
      const t = this.parseKey(n.watcher);
      if (!t) continue;
      let out = perStream.get(t.stream);
      if (!out) perStream.set(t.stream, (out = { events: [], fired: [] }));
      out.events.push(this.wire(n.event, t.watchId));
      const reg = t.stream.watches.get(t.watchId);
      if (reg && (reg.kind === WatchKind.Data || reg.kind === WatchKind.Child)) {
        t.stream.watches.delete(t.watchId);
        out.fired.push(t.watchId);
      }
    }
    for (const [s, out] of perStream) {
      s.send({ header: this.header(), events: { events: out.events } }, this.maxBufferedBytes);
      for (const watchId of out.fired) s.send({ header: this.header(), removed: { watchId, reason: 'fired' } }, this.maxBufferedBytes);
    }
  }

  /** The tree was replaced by a snapshot: the history is gone; every watch is cancelled with `compacted`. */
  reset(zxid: number): void {
    this.manager.reset(zxid);
    for (const s of this.streams.values()) {
      for (const watchId of [...s.watches.keys()]) {
        s.watches.delete(watchId);
        s.send({ header: this.header(), compacted: { watchId, compactZxid: zxid } }, this.maxBufferedBytes);
      }
    }
  }

  /** Removes the watches of sessions that ended (reason "session expired"). */
  sweepSessions(): void {
    for (const sid of [...this.sessionStreams.keys()]) if (!this.sessionLive(sid)) this.sessionStreams.delete(sid);
    for (const s of this.streams.values()) {
      for (const [watchId, reg] of s.watches) {
        if (reg.sessionId === 0 || this.sessionLive(reg.sessionId)) continue;
        this.manager.removeWatcher(s.key(watchId));
        s.watches.delete(watchId);
        s.send({ header: this.header(), removed: { watchId, reason: 'session expired' } }, this.maxBufferedBytes);
      }
    }
  }

  /** Ends every stream (member stopping). */
  closeAll(err: ServiceError): void {
    for (const s of [...this.streams.values()]) s.end(err);
  }
}
