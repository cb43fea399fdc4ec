import { EntryType, emptySnapshot } from '@app/raft';
import { SimDisk } from '@app/testing';

const ent = (index: number, term: number) => ({ index, term, type: EntryType.Normal, data: new Uint8Array([index]) });

describe('SimDisk', () => {
  it('makes writes durable only at sync; a crash loses what was not synced', () => {
    const d = new SimDisk();
    d.writeHardState({ term: 1, vote: 1, commit: 0 });
    d.writeEntries([ent(1, 1), ent(2, 1)]);
    d.sync();
    d.writeHardState({ term: 2, vote: 3, commit: 2 });
    d.writeEntries([ent(3, 2)]);
    expect(d.durableLastIndex()).toBe(2);
    d.crash();
    const img = d.load();
    expect(img.hardState).toEqual({ term: 1, vote: 1, commit: 0 });
    expect(img.entries.map((e) => e.index)).toEqual([1, 2]);
    expect(d.durableTerm(2)).toBe(1);
    expect(d.durableTerm(3)).toBe(0);
  });

  it('truncates a conflicting suffix like a WAL replay', () => {
    const d = new SimDisk();
    d.writeEntries([ent(1, 1), ent(2, 1), ent(3, 1)]);
    d.writeEntries([ent(2, 2)]);
    d.sync();
    expect(d.load().entries.map((e) => [e.index, e.term])).toEqual([
      [1, 1],
      [2, 2],
    ]);
  });

  it('keeps application snapshots and compacts below them', () => {
    const d = new SimDisk();
    d.writeEntries([1, 2, 3, 4, 5].map((i) => ent(i, 1)));
    const snap = { ...emptySnapshot(), metadata: { index: 4, term: 1, confState: { voters: [1], learners: [] } } };
    d.saveAppSnapshot(snap, 2);
    const img = d.load();
    expect(img.snapshot.metadata.index).toBe(4);
    expect(img.entries.map((e) => e.index)).toEqual([3, 4, 5]);
    expect(d.durableTerm(3)).toBeUndefined();
    expect(d.durableTerm(4)).toBe(1);
  });

  it('planted bug forget-vote-on-restart: the vote does not survive reading the disk back', () => {
    const d = new SimDisk({ forgetVoteOnLoad: true });
    d.writeHardState({ term: 3, vote: 2, commit: 1 });
    d.sync();
    expect(d.durableHardState().vote).toBe(2);
    expect(d.load().hardState).toEqual({ term: 3, vote: 0, commit: 1 });
  });
});
