/**
 * Test harness for the Raft core (after etcd-io/raft raft_test.go): raw Raft instances wired by an
 * in-memory network that delivers messages synchronously, with drop and isolation controls. Tests only.
 */
import {
  ConfState,
  Config,
  Entry,
  EntryType,
  HardState,
  MemoryStorage,
  Message,
  MessageType,
  NO_LIMIT,
  NodeId,
  Raft,
  decodeConfChange,
  msg,
} from '@app/raft';

/** Deterministic PRNG for tests (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function ids(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

export function storageWithPeers(voters: NodeId[], learners: NodeId[] = []): MemoryStorage {
  const cs: ConfState = { voters, learners };
  return MemoryStorage.withConfState(cs);
}

/** A storage with the given membership, stable log and hard state (etcd's newTestMemoryStorage + Append + SetHardState). */
export function storageWithLog(
  voters: NodeId[],
  entries: Entry[],
  hardState: Partial<HardState> = {},
  learners: NodeId[] = [],
): MemoryStorage {
  const st = storageWithPeers(voters, learners);
  st.append(entries);
  st.setHardState({ term: 0, vote: 0, commit: 0, ...hardState });
  return st;
}

/** Entries 1..n with the given terms (terms[i] is the term of index i + 1). */
export function entsWithTerms(...terms: number[]): Entry[] {
  return terms.map((t, i) => ent(t, i + 1));
}

export function newTestRaft(
  id: NodeId,
  election: number,
  heartbeat: number,
  storage: MemoryStorage,
  extra: Partial<Config> = {},
): Raft {
  return new Raft({
    id,
    electionTick: election,
    heartbeatTick: heartbeat,
    storage,
    maxInflightMsgs: 256,
    checkQuorum: false,
    preVote: false,
    random: seededRandom(id * 7919),
    ...extra,
  });
}

export function ent(term: number, index: number, data?: string): Entry {
  return {
    term,
    index,
    type: EntryType.Normal,
    data: data === undefined ? new Uint8Array(0) : new TextEncoder().encode(data),
  };
}

export function propMsg(from: NodeId, to: NodeId, data = 'somedata'): Message {
  return msg({ type: MessageType.Prop, from, to, entries: [ent(0, 0, data)] });
}

export function tickN(r: { tick(): void }, n: number): void {
  for (let i = 0; i < n; i++) r.tick();
}

/** Messages ordered by recipient, then type (etcd's messageSlice sort). */
export function sortMsgs(ms: Message[]): Message[] {
  return [...ms].sort((a, b) => a.to - b.to || a.type.localeCompare(b.type));
}

/** The follower's acknowledgment of an append it accepted in full (etcd's acceptAndReply). */
export function acceptAndReply(m: Message): Message {
  if (m.type !== MessageType.App) throw new Error(`acceptAndReply: not an App message: ${m.type}`);
  return msg({ type: MessageType.AppResp, from: m.to, to: m.from, term: m.term, index: m.index + m.entries.length });
}

/** Persist the unstable tail to `s`, return the committed-but-unapplied entries and mark them applied. */
export function nextEnts(r: Raft, s: MemoryStorage): Entry[] {
  s.append(r.raftLog.unstableEntries());
  r.raftLog.stableTo(r.raftLog.lastIndex(), r.raftLog.lastTerm());
  const ents = r.raftLog.nextEnts();
  r.raftLog.appliedTo(r.raftLog.committed);
  return ents;
}

/** A fresh leader `r` replicates its no-op to every follower and commits it (etcd's commitNoopEntry). */
export function commitNoopEntry(r: Raft, s: MemoryStorage): void {
  r.bcastAppend();
  for (const m of r.readMessages()) {
    if (m.type !== MessageType.App || m.entries.length !== 1 || m.entries[0].data.length !== 0) {
      throw new Error('commitNoopEntry: not a message appending the no-op');
    }
    r.step(acceptAndReply(m));
  }
  r.readMessages(); // the appends that carry the new commit index
  s.append(r.raftLog.unstableEntries());
  r.raftLog.appliedTo(r.raftLog.committed);
  r.raftLog.stableTo(r.raftLog.lastIndex(), r.raftLog.lastTerm());
}

/** Terms of a raft's whole log, index 1 first (for compact log comparisons). */
export function logTerms(r: Raft): number[] {
  return r.raftLog.allEntries().map((e) => e.term);
}

/** Step a raft until it is leader (single node or tests that force it). */
export function becomeLeader(r: Raft): void {
  r.becomeCandidate();
  r.becomeLeader();
}

/**
 * A pre-built peer for {@link Network}: a raft (optionally with the storage it reads, which the network then
 * keeps in step like a driver would), `undefined` for a fresh raft, or `null` for a black hole that swallows
 * every message sent to it (etcd's nopStepper).
 */
export type NetPeer = Raft | { raft: Raft; storage: MemoryStorage } | undefined | null;

export class Network {
  peers = new Map<NodeId, Raft>();
  storage = new Map<NodeId, MemoryStorage>();
  /** Called for every message about to be queued; return false to drop it (it may also edit the message). */
  msgHook: ((m: Message) => boolean) | undefined;
  private dropm = new Map<string, number>();
  private ignorem = new Set<MessageType>();
  private rand = seededRandom(42);

  /** A network of `n` voters, or of the given pre-built peers (ids 1..n in order). */
  constructor(
    peersOrN: number | NetPeer[],
    private readonly cfg: Partial<Config> = {},
  ) {
    const list: NetPeer[] = typeof peersOrN === 'number' ? new Array<NetPeer>(peersOrN).fill(undefined) : peersOrN;
    const peerIds = ids(list.length);
    list.forEach((p, i) => {
      const id = peerIds[i];
      if (p === null) return;
      if (p instanceof Raft) {
        this.peers.set(id, p);
      } else if (p) {
        this.addPeer(id, p.raft, p.storage);
      } else {
        const st = storageWithPeers(peerIds);
        this.addPeer(id, newTestRaft(id, 10, 1, st, this.cfg), st);
      }
    });
  }

  /** Add (or replace) a peer; with its storage, the network persists and applies for it like a driver. */
  addPeer(id: NodeId, r: Raft, storage?: MemoryStorage): void {
    this.peers.set(id, r);
    if (storage) this.storage.set(id, storage);
    else this.storage.delete(id);
  }

  /** Deliver messages (and every message they cause) until quiescent. */
  send(...msgs: Message[]): void {
    const queue = [...msgs];
    while (queue.length > 0) {
      const m = queue.shift()!;
      queue.push(...this.filter(this.deliver(m)));
    }
  }

  /**
   * Deliver one message (no filtering: the caller chose it), let the recipient's "driver" persist and apply,
   * and return what the recipient sent in response, undelivered.
   */
  deliver(m: Message): Message[] {
    const p = this.peers.get(m.to);
    if (!p) return [];
    try {
      p.step(m);
    } catch (e) {
      if (!(e instanceof Error) || e.name !== 'ProposalDroppedError') throw e;
    }
    this.persist(m.to);
    return p.readMessages();
  }

  /** Tick one peer, let its driver persist and apply, and deliver what it sent. */
  tick(id: NodeId, n = 1): void {
    const p = this.peers.get(id)!;
    for (let i = 0; i < n; i++) {
      p.tick();
      this.persist(id);
      this.send(...this.filter(p.readMessages()));
    }
  }

  /** `n` rounds in which every peer ticks once (in id order), delivering what each tick causes. */
  tickAll(n = 1): void {
    const order = [...this.peers.keys()].sort((a, b) => a - b);
    for (let i = 0; i < n; i++) for (const id of order) this.tick(id);
  }

  /**
   * Mimic a driver: treat unstable entries (and snapshot) as persisted, apply committed entries — handing
   * ConfChange entries back through applyConfChange — and mark them applied.
   */
  persist(id: NodeId): void {
    const r = this.peers.get(id)!;
    const st = this.storage.get(id);
    if (!st) return;
    const snap = r.raftLog.unstable.snapshot;
    if (snap) {
      st.applySnapshot(snap);
      r.raftLog.stableSnapTo(snap.metadata.index);
    }
    const ents = r.raftLog.unstableEntries();
    if (ents.length > 0) {
      st.append(ents);
      const last = ents[ents.length - 1];
      r.raftLog.stableTo(last.index, last.term);
    }
    const log = r.raftLog;
    const lo = Math.max(log.applied + 1, log.firstIndex());
    if (log.committed >= lo) {
      for (const e of log.slice(lo, log.committed + 1, NO_LIMIT)) {
        log.appliedTo(e.index);
        if (e.type === EntryType.ConfChange) r.applyConfChange(decodeConfChange(e.data));
      }
    }
    if (log.committed > log.applied) log.appliedTo(log.committed);
  }

  drop(from: NodeId, to: NodeId, perc: number): void {
    this.dropm.set(`${from}-${to}`, perc);
  }

  cut(a: NodeId, b: NodeId): void {
    this.drop(a, b, 2);
    this.drop(b, a, 2);
  }

  isolate(id: NodeId): void {
    for (const other of this.peers.keys()) {
      if (other !== id) this.cut(id, other);
    }
  }

  ignore(t: MessageType): void {
    this.ignorem.add(t);
  }

  recover(): void {
    this.dropm.clear();
    this.ignorem.clear();
  }

  filter(msgs: Message[]): Message[] {
    return msgs.filter((m) => {
      if (this.ignorem.has(m.type)) return false;
      if (m.type === MessageType.Hup) throw new Error('unexpected Hup on the wire');
      const perc = this.dropm.get(`${m.from}-${m.to}`) ?? 0;
      if (this.rand() < perc) return false;
      return this.msgHook ? this.msgHook(m) : true;
    });
  }
}

export function hup(id: NodeId): Message {
  return msg({ type: MessageType.Hup, from: id, to: id });
}
