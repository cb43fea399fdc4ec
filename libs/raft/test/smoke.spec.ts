import { EntryType, StateType } from '@app/raft';
import { Network, hup, propMsg } from './harness.js';

test('3 nodes elect node 1 and replicate a proposal to every log', () => {
  const nt = new Network(3);
  nt.send(hup(1));
  const r1 = nt.peers.get(1)!;
  expect(r1.state).toBe(StateType.Leader);
  nt.send(propMsg(1, 1, 'x'));
  for (const r of nt.peers.values()) {
    expect(r.raftLog.committed).toBe(2);
    const ents = r.raftLog.allEntries().filter((e) => e.type === EntryType.Normal && e.data.length > 0);
    expect(new TextDecoder().decode(ents[0].data)).toBe('x');
  }
});
