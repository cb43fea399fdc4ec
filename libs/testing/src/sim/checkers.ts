/**
 * Safety checkers of the simulator (Raft paper, Figure 3), fed by the driver as it carries out each Ready, plus
 * full pairwise checks run after every simulation step. The first broken property throws a {@link Violation}.
 *
 *  - Election Safety: at most one leader per term, over the whole history.
 *  - Leader Append-Only: a leader never deletes or overwrites entries of its log while it leads.
 *  - Log Matching: same index and term ⇒ same entry and same preceding entry (so the same prefix), both over
 *    history (a registry of every (index, term) ever appended) and pairwise over the current logs.
 *  - Leader Completeness: an entry committed (as observed by any node's commit index) while that node was in
 *    term t is in the log of every leader of a term > t.
 *  - State Machine Safety: no two nodes apply different entries at the same index; state digests agree.
 *  - Durable state: term, vote and commit never go backwards on disk, nor across a restart (the vote changes
 *    only with a higher term).
 */
import { Entry, HardState, MemoryStorage, NodeId } from '@app/raft';
import { bytesToString } from './hash.js';

export type CheckerName =
  | 'election-safety'
  | 'leader-append-only'
  | 'log-matching'
  | 'leader-completeness'
  | 'state-machine-safety'
  | 'durable-state'
  | 'tree-invariants'
  | 'exactly-once'
  | 'session-expiry'
  | 'liveness'
  | 'exception';

export const CHECKERS: readonly CheckerName[] = [
  'election-safety',
  'leader-append-only',
  'log-matching',
  'leader-completeness',
  'state-machine-safety',
  'durable-state',
  'tree-invariants',
  'exactly-once',
  'session-expiry',
  'liveness',
  'exception',
];

export class Violation extends Error {
  constructor(
    readonly checker: CheckerName,
    readonly detail: string,
    readonly tick: number,
  ) {
    super(`[${checker}] at tick ${tick}: ${detail}`);
    this.name = 'Violation';
  }
}

/** What the checkers need to see of a node. */
export interface CheckedNode {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  isRunning(): boolean;
}

/** What a node has told others since it started: all of it must survive a crash. */
export interface Promises {
  /** Highest term in the messages it sent (pre-vote traffic excluded: it carries a future term). */
  sentTerm: number;
  /** The last vote it granted. */
  grantedVote: { term: number; to: NodeId } | undefined;
  /** The highest entry it acknowledged to a leader. */
  acked: { index: number; term: number } | undefined;
}

export function noPromises(): Promises {
  return { sentTerm: 0, grantedVote: undefined, acked: undefined };
}

function memoryTerm(s: MemoryStorage, i: number): number | undefined {
  if (i < s.firstIndex() - 1 || i > s.lastIndex()) return undefined;
  return s.term(i);
}

/** Payload strings, cached per payload array (log entries are never mutated; tree commands are ~200 bytes). */
const payloadText = new WeakMap<Uint8Array, string>();

function payloadOf(data: Uint8Array): string {
  if (data.length < 32) return bytesToString(data);
  let s = payloadText.get(data);
  if (s === undefined) {
    s = bytesToString(data);
    payloadText.set(data, s);
  }
  return s;
}

export function entryKey(e: Entry): string {
  return `${e.term}:${e.type}:${payloadOf(e.data)}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const LOG_KEY_TERM_SPAN = 0x100000; // terms stay far below 2^20 in a simulation run
const logKey = (index: number, term: number): number => index * LOG_KEY_TERM_SPAN + term;

interface CommittedRecord {
  term: number;
  /** Undefined when only the term is known (committed through a snapshot). */
  key: string | undefined;
  /** Lowest term of a node that observed this index committed. */
  commitTerm: number;
  by: NodeId;
}

export class SafetyChecker {
  /** The current tick, for reports. */
  now = 0;
  private leaderOfTerm = new Map<number, NodeId>();
  /** Nodes that are leaders right now, with their term. */
  private leaders = new Map<NodeId, { node: CheckedNode; term: number }>();
  /** Log Matching registry: (index, term) → the entry's key and the term of the entry before it. */
  private logRegistry = new Map<number, { key: string; prevTerm: number; by: NodeId }>();
  private committed = new Map<number, CommittedRecord>();
  private maxCommitted = 0;
  private appliedKey = new Map<number, { key: string; by: NodeId }>();
  private appliedDigest = new Map<number, { digest: string; by: NodeId }>();
  stats = { leaders: 0, maxTerm: 0, maxCommitted: 0 };

  private fail(checker: CheckerName, detail: string): never {
    throw new Violation(checker, detail, this.now);
  }

  // ---- Election Safety and Leader Completeness -------------------------------------------------------------

  onBecomeLeader(node: CheckedNode, term: number): void {
    const prior = this.leaderOfTerm.get(term);
    if (prior !== undefined && prior !== node.id) {
      this.fail('election-safety', `node ${node.id} became leader of term ${term}, which node ${prior} already led`);
    }
    this.leaderOfTerm.set(term, node.id);
    this.leaders.set(node.id, { node, term });
    this.stats.leaders++;
    if (term > this.stats.maxTerm) this.stats.maxTerm = term;
    const s = node.storage;
    const from = Math.max(1, s.firstIndex() - 1);
    for (let i = from; i <= this.maxCommitted; i++) {
      const rec = this.committed.get(i);
      if (rec && rec.commitTerm < term) this.checkLeaderHas(node, term, i, rec);
    }
  }

  onStepDown(id: NodeId): void {
    this.leaders.delete(id);
  }

  private checkLeaderHas(node: CheckedNode, term: number, i: number, rec: CommittedRecord): void {
    const s = node.storage;
    if (i > s.lastIndex()) {
      this.fail(
        'leader-completeness',
        `leader ${node.id} of term ${term} lacks entry ${i} (term ${rec.term}) committed in term ${rec.commitTerm} ` +
          `(seen by node ${rec.by}); its log ends at ${s.lastIndex()}`,
      );
    }
    if (i < s.firstIndex() - 1) return; // inside its snapshot: committed state, covered by Log Matching
    const t = s.term(i);
    let key: string | undefined;
    if (i >= s.firstIndex() && rec.key !== undefined) key = entryKey(s.entries(i, i + 1, Infinity)[0]);
    if (t !== rec.term || (key !== undefined && key !== rec.key)) {
      this.fail(
        'leader-completeness',
        `leader ${node.id} of term ${term} has term ${t} at index ${i}, but the entry of term ${rec.term} there was ` +
          `committed in term ${rec.commitTerm} (seen by node ${rec.by})`,
      );
    }
  }

  /**
   * A node's commit index rose from `prev` to `commit` while it was in `term`. Its log (storage) already holds
   * the entries. Records them as committed and checks every current leader of a later term has them.
   */
  onCommit(node: CheckedNode, prev: number, commit: number, term: number): void {
    const s = node.storage;
    const snapIndex = s.firstIndex() - 1;
    const added: number[] = [];
    for (let i = Math.max(prev + 1, snapIndex); i <= commit; i++) {
      if (i === 0) continue;
      const t = s.term(i);
      const key = i > snapIndex ? entryKey(s.entries(i, i + 1, Infinity)[0]) : undefined;
      const rec = this.committed.get(i);
      if (rec) {
        if (rec.term !== t || (rec.key !== undefined && key !== undefined && rec.key !== key)) {
          this.fail(
            'leader-completeness',
            `index ${i} was committed as term ${rec.term} (seen by node ${rec.by} in term ${rec.commitTerm}), ` +
              `but node ${node.id} committed term ${t} there in term ${term}`,
          );
        }
        if (rec.key === undefined && key !== undefined) rec.key = key;
        if (term < rec.commitTerm) {
          rec.commitTerm = term;
          rec.by = node.id;
          added.push(i);
        }
      } else {
        this.committed.set(i, { term: t, key, commitTerm: term, by: node.id });
        added.push(i);
        if (i > this.maxCommitted) this.maxCommitted = i;
      }
    }
    this.stats.maxCommitted = this.maxCommitted;
    if (added.length === 0) return;
    for (const { node: leader, term: lt } of this.leaders.values()) {
      for (const i of added) {
        const rec = this.committed.get(i)!;
        if (rec.commitTerm < lt) this.checkLeaderHas(leader, lt, i, rec);
      }
    }
  }

  // ---- Leader Append-Only ------------------------------------------------------------------------------------

  /** Called before a leader's Ready is written: `entries` are about to be appended, `snapshot` installed. */
  onLeaderWrite(node: CheckedNode, term: number, entries: Entry[], snapshotIndex: number): void {
    if (snapshotIndex > 0) {
      this.fail('leader-append-only', `leader ${node.id} of term ${term} installs a snapshot at ${snapshotIndex}`);
    }
    if (entries.length === 0) return;
    const s = node.storage;
    const last = s.lastIndex();
    if (entries[0].index > last + 1) {
      this.fail('leader-append-only', `leader ${node.id} of term ${term} appends ${entries[0].index} after ${last}`);
    }
    for (const e of entries) {
      if (e.index > last) break;
      if (e.index < s.firstIndex()) continue;
      const old = s.entries(e.index, e.index + 1, Infinity)[0];
      if (old.term !== e.term || entryKey(old) !== entryKey(e)) {
        this.fail(
          'leader-append-only',
          `leader ${node.id} of term ${term} overwrites entry ${e.index} (term ${old.term}) with term ${e.term}`,
        );
      }
    }
  }

  // ---- Log Matching ------------------------------------------------------------------------------------------

  /** Entries were just appended to `node`'s log (its storage). */
  onAppend(node: CheckedNode, entries: Entry[]): void {
    const s = node.storage;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      let prevTerm: number;
      if (k > 0) prevTerm = entries[k - 1].term;
      else if (e.index - 1 >= s.firstIndex() - 1) prevTerm = s.term(e.index - 1);
      else continue; // compacted below the snapshot (never happens for appends the log accepted)
      const key = entryKey(e);
      const lk = logKey(e.index, e.term);
      const reg = this.logRegistry.get(lk);
      if (!reg) {
        this.logRegistry.set(lk, { key, prevTerm, by: node.id });
      } else if (reg.key !== key || reg.prevTerm !== prevTerm) {
        this.fail(
          'log-matching',
          `entry (index ${e.index}, term ${e.term}) on node ${node.id} differs from the one node ${reg.by} held` +
            (reg.key !== key ? ' (different payload)' : ` (preceding term ${prevTerm} vs ${reg.prevTerm})`),
        );
      }
    }
  }

  /** Pairwise over the current logs of running nodes: matching (index, term) ⇒ identical prefixes. */
  checkLogsPairwise(nodes: readonly CheckedNode[]): void {
    const logs = nodes
      .filter((n) => n.isRunning())
      .map((n) => {
        const s = n.storage;
        const snap = s.firstIndex() - 1;
        const last = s.lastIndex();
        return { id: n.id, snap, snapTerm: s.term(snap), last, ents: last > snap ? s.entries(snap + 1, last + 1, Infinity) : [] };
      });
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const x = logs[a];
        const y = logs[b];
        const lo = Math.max(x.snap, y.snap);
        const hi = Math.min(x.last, y.last);
        if (hi < lo) continue;
        const termAt = (l: typeof x, i: number): number => (i === l.snap ? l.snapTerm : l.ents[i - l.snap - 1].term);
        let i = hi;
        while (i >= lo && termAt(x, i) !== termAt(y, i)) i--;
        for (; i >= lo; i--) {
          if (termAt(x, i) !== termAt(y, i)) {
            this.fail(
              'log-matching',
              `nodes ${x.id} and ${y.id} agree on a later entry but differ at index ${i} ` +
                `(term ${termAt(x, i)} vs ${termAt(y, i)})`,
            );
          }
          if (i > x.snap && i > y.snap) {
            const ex = x.ents[i - x.snap - 1];
            const ey = y.ents[i - y.snap - 1];
            if (ex.type !== ey.type || !sameBytes(ex.data, ey.data)) {
              this.fail('log-matching', `nodes ${x.id} and ${y.id} hold different entries at (index ${i}, term ${ex.term})`);
            }
          }
        }
      }
    }
  }

  // ---- State Machine Safety ------------------------------------------------------------------------------------

  /** `digest` is the state after applying `e`, or undefined when the application does not sample this index. */
  onApply(node: CheckedNode, e: Entry, digest: string | undefined): void {
    const key = entryKey(e);
    const prior = this.appliedKey.get(e.index);
    if (!prior) this.appliedKey.set(e.index, { key, by: node.id });
    else if (prior.key !== key) {
      this.fail(
        'state-machine-safety',
        `node ${node.id} applied ${describeKey(key)} at index ${e.index}, node ${prior.by} applied ${describeKey(prior.key)}`,
      );
    }
    if (digest !== undefined) this.checkDigest(node, e.index, digest, 'after applying');
  }

  /** A node restored its state machine from a snapshot at `index` (or, `how`, took one there). */
  onRestore(node: CheckedNode, index: number, digest: string, how = 'restored from a snapshot'): void {
    this.checkDigest(node, index, digest, how);
  }

  private checkDigest(node: CheckedNode, index: number, digest: string, how: string): void {
    const prior = this.appliedDigest.get(index);
    if (!prior) this.appliedDigest.set(index, { digest, by: node.id });
    else if (prior.digest !== digest) {
      this.fail(
        'state-machine-safety',
        `node ${node.id} has state ${digest} at index ${index} ${how}, node ${prior.by} had ${prior.digest}`,
      );
    }
  }

  // ---- Durable state -------------------------------------------------------------------------------------------

  /**
   * A node lost power. Everything it told others must have been durable (Raft Figure 2: persistent state is
   * updated on stable storage before responding): the term of its messages, a vote it granted, and entries it
   * acknowledged (unless a later leader legitimately truncated them from its log since).
   */
  onCrash(node: CheckedNode, p: Promises, durable: HardState, durableTerm: (i: number) => number | undefined): void {
    if (p.sentTerm > durable.term) {
      this.fail('durable-state', `node ${node.id} crashed having sent messages of term ${p.sentTerm}, but its disk holds term ${durable.term}`);
    }
    const v = p.grantedVote;
    if (v && (v.term > durable.term || (v.term === durable.term && durable.vote !== v.to))) {
      this.fail(
        'durable-state',
        `node ${node.id} crashed having granted its vote to ${v.to} in term ${v.term}, but its disk holds ` +
          `(term ${durable.term}, vote ${durable.vote})`,
      );
    }
    const a = p.acked;
    if (a && memoryTerm(node.storage, a.index) === a.term) {
      const t = durableTerm(a.index);
      if (t !== undefined && t !== a.term) {
        this.fail(
          'durable-state',
          `node ${node.id} crashed having acknowledged entry ${a.index} (term ${a.term}), but its disk ` +
            (t === 0 ? `ends before it` : `holds term ${t} there`),
        );
      }
    }
  }

  /** The durable hard state of a node changed (an fsync, or a restart reading the disk back). */
  checkHardStateProgress(node: NodeId, before: HardState, after: HardState, when: string): void {
    const problem = hardStateRegression(before, after);
    if (problem) this.fail('durable-state', `node ${node} ${when}: ${problem}`);
  }
}

/** Why `after` is not a legal successor of `before`, or undefined. */
export function hardStateRegression(before: HardState, after: HardState): string | undefined {
  const fmt = (h: HardState): string => `(term ${h.term}, vote ${h.vote}, commit ${h.commit})`;
  if (after.term < before.term) return `term went back ${fmt(before)} → ${fmt(after)}`;
  if (after.term === before.term && before.vote !== 0 && after.vote !== before.vote) {
    return `vote changed within term ${after.term} ${fmt(before)} → ${fmt(after)}`;
  }
  if (after.commit < before.commit) return `commit went back ${fmt(before)} → ${fmt(after)}`;
  return undefined;
}

function describeKey(key: string): string {
  const [term, type, ...rest] = key.split(':');
  const data = rest.join(':');
  return `(term ${term}, ${type === '0' ? (data ? `"${data.slice(0, 40)}"` : 'no-op') : 'conf change'})`;
}
