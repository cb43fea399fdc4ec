/**
 * Test harness for the Raft core (after etcd-io/raft raft_test.go): raw Raft instances wired by an
 * in-memory network that delivers messages synchronously, with drop and isolation controls. Tests only.
 */
import {
  ConfState,
  Config,
  Entry,
  EntryType,
  MemoryStorage,
  Message,
  MessageType,
  NodeId,
  Raft,
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

/** Step a raft until it is leader (single node or tests that force it). */
export function becomeLeader(r: Raft): void {
  r.becomeCandidate();
  r.becomeLeader();
}

export class Network {
  peers = new Map<NodeId, Raft>();
  storage = new Map<NodeId, MemoryStorage>();
  private dropm = new Map<string, number>();
  private ignorem = new Set<MessageType>();
  private rand = seededRandom(42);

  /** A network of `n` voters, or of the given pre-built rafts (undefined = a fresh raft). */
  constructor(
    peersOrN: number | (Raft | undefined)[],
    private readonly cfg: Partial<Config> = {},
  ) {
    const list = typeof peersOrN === 'number' ? new Array<Raft | undefined>(peersOrN).fill(undefined) : peersOrN;
    const peerIds = ids(list.length);
    list.forEach((p, i) => {
      const id = peerIds[i];
      if (p) {
        this.peers.set(id, p);
      } else {
        const st = storageWithPeers(peerIds);
        this.storage.set(id, st);
        this.peers.set(id, newTestRaft(id, 10, 1, st, this.cfg));
      }
    });
  }

  /** Deliver messages (and every message they cause) until quiescent. */
  send(...msgs: Message[]): void {
    const queue = [...msgs];
    while (queue.length > 0) {
      const m = queue.shift()!;
      const p = this.peers.get(m.to);
      if (!p) continue;
      try {
        p.step(m);
      } catch (e) {
        if (!(e instanceof Error) || e.name !== 'ProposalDroppedError') throw e;
      }
      this.persist(m.to);
      queue.push(...this.filter(p.readMessages()));
    }
  }

  /** Mimic a driver: treat unstable entries as persisted and committed entries as applied. */
  private persist(id: NodeId): void {
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
    r.raftLog.appliedTo(r.raftLog.committed);
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

  private filter(msgs: Message[]): Message[] {
    return msgs.filter((m) => {
      if (this.ignorem.has(m.type)) return false;
      if (m.type === MessageType.Hup) throw new Error('unexpected Hup on the wire');
      const perc = this.dropm.get(`${m.from}-${m.to}`) ?? 0;
      return this.rand() >= perc;
    });
  }
}

export function hup(id: NodeId): Message {
  return msg({ type: MessageType.Hup, from: id, to: id });
}
