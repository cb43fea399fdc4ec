import { MemoryStorage } from '@app/raft';
test('smoke', () => { const s = new MemoryStorage(); expect(s.lastIndex()).toBe(0); });
