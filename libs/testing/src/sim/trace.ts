/**
 * The event trace of a run: every event is folded into a running hash (two runs of one seed must produce the
 * same hash), and kept as text when the run is verbose.
 */
import { Message } from '@app/raft';
import { Hash64 } from './hash.js';

export class Trace {
  private hash = new Hash64();
  readonly lines: string[] | undefined;
  events = 0;
  now = 0;

  constructor(verbose = false) {
    this.lines = verbose ? [] : undefined;
  }

  /** A generic event: a kind and a few numbers (and, for the text trace, an optional note). */
  event(kind: string, nums: readonly number[], note?: string): void {
    this.events++;
    const h = this.hash.num(this.now).str(kind);
    for (const n of nums) h.num(n);
    if (note !== undefined) h.str(note);
    if (this.lines) this.lines.push(`${this.now} ${kind} ${nums.join(' ')}${note !== undefined ? ` ${note}` : ''}`);
  }

  message(kind: string, m: Message): void {
    this.events++;
    const h = this.hash.num(this.now).str(kind).str(m.type);
    h.num(m.from).num(m.to).num(m.term).num(m.logTerm).num(m.index).num(m.entries.length).num(m.commit);
    h.num(m.reject ? 1 : 0).num(m.rejectHint);
    if (m.snapshot) h.num(m.snapshot.metadata.index);
    if (this.lines) {
      const ents = m.entries.length > 0 ? ` ents=${m.entries[0].index}..${m.entries[m.entries.length - 1].index}` : '';
      const snap = m.snapshot ? ` snap=${m.snapshot.metadata.index}@${m.snapshot.metadata.term}` : '';
      this.lines.push(
        `${this.now} ${kind} ${m.type} ${m.from}>${m.to} term=${m.term} logTerm=${m.logTerm} index=${m.index}` +
          `${ents} commit=${m.commit}${m.reject ? ` reject hint=${m.rejectHint}` : ''}${snap}`,
      );
    }
  }

  digest(): string {
    return this.hash.hex();
  }
}
