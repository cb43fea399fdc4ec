import { Rng } from '@app/testing';

describe('Rng (xoshiro128**)', () => {
  it('is a pure function of its seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 100 }, () => a.u32());
    const ys = Array.from({ length: 100 }, () => b.u32());
    expect(xs).toEqual(ys);
    expect(new Set(xs).size).toBe(100);
    expect(Array.from({ length: 5 }, () => new Rng(43).u32())[0]).not.toBe(xs[0]);
  });

  it('forks streams that depend on the label and the root seed only, not on consumption', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    for (let i = 0; i < 1000; i++) b.next();
    expect(a.fork('net').u32()).toBe(b.fork('net').u32());
    expect(a.fork('net').u32()).not.toBe(a.fork('disk').u32());
    expect(new Rng(8).fork('net').u32()).not.toBe(a.fork('net').u32());
  });

  it('draws within bounds and roughly uniformly', () => {
    const r = new Rng(1);
    const counts = [0, 0, 0, 0, 0, 0];
    let min = 1;
    let max = 0;
    for (let i = 0; i < 60000; i++) {
      const x = r.next();
      min = Math.min(min, x);
      max = Math.max(max, x);
      counts[r.range(0, 5)]++;
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(600);
    expect(r.chance(0)).toBe(false);
    expect(r.shuffle([1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
    expect([1, 3, 5]).toContain(r.weighted([[1, 1], [3, 1], [5, 1]] as const));
  });
});
