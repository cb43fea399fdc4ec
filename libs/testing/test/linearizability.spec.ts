/**
 * The linearizability checker (porcupine port): hand-made histories with known answers, generated histories from a
 * simulated linearizable register (ok) and the same with one injected anomaly (illegal), a 1,000-operation
 * history, and the timeout verdict.
 */
import fc from 'fast-check';
import {
  KvInput,
  KvOutput,
  Operation,
  VersionedInput,
  VersionedOutput,
  checkOperations,
  fencedCounterModel,
  kvRegisterModel,
  sequentialNamesModel,
  versionedRegisterModel,
} from '@app/testing';

type KvOp = Operation<KvInput, KvOutput>;
type VOp = Operation<VersionedInput, VersionedOutput>;

const w = (clientId: number, key: string, value: string, call: number, ret: number): KvOp => ({
  clientId,
  input: { key, op: 'write', value },
  call,
  output: ret === Infinity ? undefined : {},
  return: ret,
});
const r = (clientId: number, key: string, value: string | null, call: number, ret: number): KvOp => ({
  clientId,
  input: { key, op: 'read' },
  call,
  output: { value },
  return: ret,
});

describe('hand-made kv register histories', () => {
  it('a stale read after a write completed is illegal', () => {
    const res = checkOperations(kvRegisterModel, [w(0, 'x', '1', 0, 1), w(0, 'x', '2', 2, 3), r(1, 'x', '1', 4, 5)]);
    expect(res.result).toBe('illegal');
    expect(res.illegalPartition).toBe(0);
    expect(res.info?.linearized.length).toBe(2);
    expect(res.info?.message).toContain('not linearizable');
    expect(res.info?.message).toContain('read(x)');
  });

  it('concurrent writes, then a read of either value, are ok', () => {
    for (const v of ['1', '2']) {
      const res = checkOperations(kvRegisterModel, [w(0, 'x', '1', 0, 10), w(1, 'x', '2', 0, 10), r(2, 'x', v, 11, 12)]);
      expect(res.result).toBe('ok');
      expect(res.partitions[0]!.linearization).toHaveLength(3);
    }
  });

  it('concurrent writes, then reads of one value and later of the other, are illegal', () => {
    const res = checkOperations(kvRegisterModel, [
      w(0, 'x', '1', 0, 10),
      w(1, 'x', '2', 0, 10),
      r(2, 'x', '1', 11, 12),
      r(2, 'x', '2', 13, 14),
    ]);
    expect(res.result).toBe('illegal');
  });

  it('a read concurrent with a write may see either value', () => {
    const ops = [w(0, 'x', '1', 0, 1), w(0, 'x', '2', 2, 10), r(1, 'x', '1', 3, 4), r(1, 'x', '2', 5, 6)];
    expect(checkOperations(kvRegisterModel, ops).result).toBe('ok');
    // ...but not the old value after having seen the new one.
    expect(checkOperations(kvRegisterModel, [...ops, r(1, 'x', '1', 7, 8)]).result).toBe('illegal');
  });

  it('operations touching at one instant count as concurrent (calls before returns at equal time)', () => {
    expect(checkOperations(kvRegisterModel, [r(1, 'x', '1', 0, 5), w(0, 'x', '1', 5, 6)]).result).toBe('ok');
    expect(checkOperations(kvRegisterModel, [r(1, 'x', '1', 0, 4), w(0, 'x', '1', 5, 6)]).result).toBe('illegal');
  });

  it('a read of a value never written is illegal', () => {
    expect(checkOperations(kvRegisterModel, [w(0, 'x', '1', 0, 1), r(1, 'x', '9', 0, 5)]).result).toBe('illegal');
    expect(checkOperations(kvRegisterModel, [r(1, 'x', '9', 0, 5)]).result).toBe('illegal');
    expect(checkOperations(kvRegisterModel, [r(1, 'x', null, 0, 5)]).result).toBe('ok');
  });

  it('an indeterminate write that is read later is ok, even long after its call', () => {
    const res = checkOperations(kvRegisterModel, [
      w(0, 'x', 'a', 0, Infinity),
      r(1, 'x', null, 1, 2),
      r(1, 'x', 'a', 100, 101),
    ]);
    expect(res.result).toBe('ok');
    // Once seen, it has taken effect: the old value cannot come back.
    const bad = checkOperations(kvRegisterModel, [
      w(0, 'x', 'a', 0, Infinity),
      r(1, 'x', 'a', 1, 2),
      r(1, 'x', null, 3, 4),
    ]);
    expect(bad.result).toBe('illegal');
    expect(bad.info?.message).toContain('∞');
  });

  it('an indeterminate write that is never read is ok (it may never have happened)', () => {
    const res = checkOperations(kvRegisterModel, [
      w(0, 'x', '1', 0, 1),
      w(1, 'x', 'lost', 2, Infinity),
      r(2, 'x', '1', 3, 4),
      r(2, 'x', '1', 50, 51),
    ]);
    expect(res.result).toBe('ok');
    expect(res.partitions[0]!.linearization!.map((o) => o.input.op)).toEqual(['write', 'read', 'read']);
  });

  it('checks keys independently and names the illegal partition', () => {
    const res = checkOperations(kvRegisterModel, [
      w(0, 'a', '1', 0, 1),
      r(1, 'a', '1', 2, 3),
      w(0, 'b', '1', 0, 1),
      w(0, 'b', '2', 2, 3),
      r(1, 'b', '1', 4, 5),
    ]);
    expect(res.result).toBe('illegal');
    expect(res.partitions.map((p) => p.result)).toEqual(['ok', 'illegal']);
    expect(res.illegalPartition).toBe(1);
    expect(res.info?.candidates.map((o) => o.input.op)).toEqual(['read']);
  });

  it('an empty history is ok', () => {
    expect(checkOperations(kvRegisterModel, []).result).toBe('ok');
  });

  it('rejects an operation that returns before its call', () => {
    expect(() => checkOperations(kvRegisterModel, [r(0, 'x', null, 5, 4)])).toThrow(/not <= return/);
  });
});

const vw = (c: number, value: string, call: number, ret: number, version?: number): VOp => ({
  clientId: c,
  input: { key: 'k', op: 'write', value },
  call,
  output: ret === Infinity ? undefined : version === undefined ? {} : { version },
  return: ret,
});
const vcas = (c: number, expectedVersion: number, value: string, ok: boolean, call: number, ret: number): VOp => ({
  clientId: c,
  input: { key: 'k', op: 'cas', expectedVersion, value },
  call,
  output: ret === Infinity ? undefined : { ok },
  return: ret,
});
const vr = (c: number, value: string | null, version: number, call: number, ret: number): VOp => ({
  clientId: c,
  input: { key: 'k', op: 'read' },
  call,
  output: { value, version },
  return: ret,
});

describe('hand-made versioned register histories', () => {
  it('a lost update under CAS (two successful CAS on the same version) is illegal', () => {
    const res = checkOperations(versionedRegisterModel, [
      vw(0, 'a', 0, 1, 1),
      vcas(1, 1, 'b', true, 2, 5),
      vcas(2, 1, 'c', true, 2, 5),
    ]);
    expect(res.result).toBe('illegal');
    expect(res.info?.message).toContain('cas(k, v1');
  });

  it('concurrent CAS on one version: one wins, one fails, reads agree', () => {
    const res = checkOperations(versionedRegisterModel, [
      vw(0, 'a', 0, 1, 1),
      vcas(1, 1, 'b', true, 2, 5),
      vcas(2, 1, 'c', false, 2, 5),
      vr(0, 'b', 2, 6, 7),
    ]);
    expect(res.result).toBe('ok');
  });

  it('a failed CAS with nothing to conflict with is illegal', () => {
    expect(checkOperations(versionedRegisterModel, [vw(0, 'a', 0, 1, 1), vcas(1, 1, 'b', false, 2, 5)]).result).toBe(
      'illegal',
    );
  });

  it('an indeterminate CAS takes effect only if its version matched', () => {
    const ok = checkOperations(versionedRegisterModel, [
      vw(0, 'a', 0, 1, 1),
      vcas(1, 1, 'b', true, 2, Infinity),
      vr(0, 'b', 2, 10, 11),
    ]);
    expect(ok.result).toBe('ok');
    const bad = checkOperations(versionedRegisterModel, [
      vw(0, 'a', 0, 1, 1),
      vcas(1, 0, 'b', true, 2, Infinity),
      vr(0, 'b', 2, 10, 11),
    ]);
    expect(bad.result).toBe('illegal');
  });

  it('a read must report the version as well as the value', () => {
    expect(checkOperations(versionedRegisterModel, [vw(0, 'a', 0, 1), vr(1, 'a', 2, 2, 3)]).result).toBe('illegal');
    expect(checkOperations(versionedRegisterModel, [vw(0, 'a', 0, 1), vr(1, 'a', 1, 2, 3)]).result).toBe('ok');
  });
});

describe('sequential names and the fenced counter', () => {
  const create = (c: number, name: string | undefined, call: number, ret: number) => ({
    clientId: c,
    input: { key: '/q', op: 'create' as const },
    call,
    ...(name === undefined ? {} : { output: { name } }),
    return: ret,
  });

  it('unique names increasing in real-time order are ok, concurrent ones in any order', () => {
    const res = checkOperations(sequentialNamesModel, [
      create(0, 'n-0000000001', 0, 1),
      create(1, 'n-0000000003', 2, 5),
      create(2, 'n-0000000002', 2, 5),
      create(3, undefined, 3, Infinity),
      create(0, 'n-0000000005', 6, 7),
    ]);
    expect(res.result).toBe('ok');
  });

  it('a duplicate or a decreasing name is illegal', () => {
    expect(
      checkOperations(sequentialNamesModel, [create(0, 'n-0000000001', 0, 5), create(1, 'n-0000000001', 0, 5)]).result,
    ).toBe('illegal');
    expect(
      checkOperations(sequentialNamesModel, [create(0, 'n-0000000002', 0, 1), create(1, 'n-0000000001', 2, 3)]).result,
    ).toBe('illegal');
  });

  it('the fenced counter rejects a stale token and counts accepted increments', () => {
    const incr = (c: number, token: number, ok: boolean, call: number, ret: number) => ({
      clientId: c,
      input: { key: 'res', op: 'incr' as const, token },
      call,
      output: { ok },
      return: ret,
    });
    const read = (c: number, value: number, call: number, ret: number) => ({
      clientId: c,
      input: { key: 'res', op: 'read' as const },
      call,
      output: { value },
      return: ret,
    });
    expect(
      checkOperations(fencedCounterModel, [incr(0, 1, true, 0, 1), incr(1, 2, true, 2, 3), incr(0, 1, false, 4, 5), read(2, 2, 6, 7)])
        .result,
    ).toBe('ok');
    // A paused holder with the old token must not be accepted after a newer token was.
    expect(
      checkOperations(fencedCounterModel, [incr(0, 1, true, 0, 1), incr(1, 2, true, 2, 3), incr(0, 1, true, 4, 5)]).result,
    ).toBe('illegal');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Generated histories from a simulated linearizable versioned register

interface GenOp {
  kind: 'read' | 'write' | 'cas';
  gap: number;
  duration: number;
  at: number; // linearization instant offset inside [call, return], 0..duration
  casStale: boolean; // cas with an outdated expected version
  timeout: 'no' | 'applied' | 'lost';
}

const genOp: fc.Arbitrary<GenOp> = fc.record({
  kind: fc.constantFrom<'read' | 'write' | 'cas'>('read', 'read', 'write', 'cas'),
  gap: fc.integer({ min: 0, max: 5 }),
  duration: fc.integer({ min: 0, max: 12 }),
  at: fc.integer({ min: 0, max: 1000 }),
  casStale: fc.boolean(),
  timeout: fc.constantFrom<'no' | 'applied' | 'lost'>('no', 'no', 'no', 'no', 'no', 'no', 'no', 'applied', 'lost'),
});

interface Simulated {
  ops: VOp[];
  versionOf: Map<VOp, number>; // definite, applied writes/cas: the version they produced
}

function simulate(clients: GenOp[][]): Simulated {
  type Pending = { op: VOp; instant: number; client: number; seq: number; applied: boolean; g: GenOp };
  const pending: Pending[] = [];
  clients.forEach((list, client) => {
    let t = 0;
    list.forEach((g, seq) => {
      const call = t + g.gap;
      const ret = call + g.duration;
      const instant = call + (g.duration * (g.at % 1001)) / 1000;
      t = ret;
      const value = `c${client}-${seq}`;
      const input: VersionedInput =
        g.kind === 'read'
          ? { key: 'k', op: 'read' }
          : g.kind === 'write'
            ? { key: 'k', op: 'write', value }
            : { key: 'k', op: 'cas', expectedVersion: -1, value }; // filled in when applied
      pending.push({
        op: { clientId: client, input, call, return: g.timeout === 'no' ? ret : Infinity },
        instant,
        client,
        seq,
        applied: g.timeout !== 'lost',
        g,
      });
    });
  });
  pending.sort((a, b) => a.instant - b.instant || a.client - b.client || a.seq - b.seq);
  let state = { value: null as string | null, version: 0 };
  const versionOf = new Map<VOp, number>();
  for (const p of pending) {
    const input = p.op.input;
    if (input.op === 'cas') input.expectedVersion = p.g.casStale ? Math.max(0, state.version - 1) : state.version;
    if (!p.applied) continue; // a lost timed-out op never takes effect
    let output: VersionedOutput;
    if (input.op === 'read') output = { value: state.value, version: state.version };
    else if (input.op === 'write') {
      state = { value: input.value, version: state.version + 1 };
      output = { version: state.version };
    } else if (input.expectedVersion === state.version) {
      state = { value: input.value, version: state.version + 1 };
      output = { ok: true, version: state.version };
    } else output = { ok: false };
    if (p.op.return !== Infinity) {
      p.op.output = output;
      if (output.version !== undefined && input.op !== 'read') versionOf.set(p.op, output.version);
    }
  }
  const ops = pending.map((p) => p.op).sort((a, b) => a.call - b.call || a.clientId - b.clientId);
  return { ops, versionOf };
}

/** Injects one anomaly: a stale read when the history allows one that is provably illegal, else a phantom value. */
function inject(sim: Simulated): 'stale' | 'phantom' {
  const reads = sim.ops.filter((o) => o.input.op === 'read' && o.return !== Infinity);
  const writes = [...sim.versionOf.keys()];
  for (const rd of reads) {
    for (const w1 of writes) {
      for (const w2 of writes) {
        if (w1.return < w2.call && w2.return < rd.call) {
          const v = w1.input.op === 'read' ? '' : w1.input.value;
          rd.output = { value: v, version: sim.versionOf.get(w1)! };
          return 'stale';
        }
      }
    }
  }
  const target = reads[0] ?? sim.ops.find((o) => o.return !== Infinity);
  if (target) {
    target.input = { key: 'k', op: 'read' };
    target.output = { value: 'phantom', version: 1 };
  } else {
    sim.ops.push(vr(99, 'phantom', 1, 0, 1));
  }
  return 'phantom';
}

const clientsArb = fc.array(fc.array(genOp, { minLength: 1, maxLength: 10 }), { minLength: 1, maxLength: 5 });

describe('generated histories', () => {
  it('a simulated linearizable register always checks ok', () => {
    fc.assert(
      fc.property(clientsArb, (clients) => {
        const sim = simulate(clients);
        const res = checkOperations(versionedRegisterModel, sim.ops, { timeoutMs: 5_000 });
        if (res.result !== 'ok') throw new Error(`${res.result}\n${res.info?.message ?? ''}`);
      }),
      { seed: 0x5eed, numRuns: 300 },
    );
  });

  it('the same with one injected anomaly is always illegal', () => {
    const kinds = { stale: 0, phantom: 0 };
    fc.assert(
      fc.property(clientsArb, (clients) => {
        const sim = simulate(clients);
        kinds[inject(sim)]++;
        const res = checkOperations(versionedRegisterModel, sim.ops, { timeoutMs: 5_000 });
        if (res.result !== 'illegal') throw new Error(`expected illegal, got ${res.result}`);
      }),
      { seed: 0xbad, numRuns: 300 },
    );
    expect(kinds.stale).toBeGreaterThan(20);
  });
});

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('scale and timeout', () => {
  it('a 1,000-operation history on one key with 8 clients checks ok in bounded time', () => {
    const rnd = mulberry32(42);
    const int = (n: number) => Math.floor(rnd() * n);
    const clients: GenOp[][] = [];
    for (let c = 0; c < 8; c++) {
      const list: GenOp[] = [];
      for (let i = 0; i < 125; i++) {
        const k = int(10);
        list.push({
          kind: k < 5 ? 'read' : k < 8 ? 'write' : 'cas',
          gap: int(4),
          duration: 1 + int(20),
          at: int(1001),
          casStale: int(2) === 0,
          timeout: int(100) < 2 ? (int(2) === 0 ? 'applied' : 'lost') : 'no',
        });
      }
      clients.push(list);
    }
    const sim = simulate(clients);
    expect(sim.ops).toHaveLength(1000);
    const t0 = Date.now();
    const res = checkOperations(versionedRegisterModel, sim.ops, { timeoutMs: 20_000 });
    const ms = Date.now() - t0;
    console.log(`linearizability: 1,000 ops, 8 clients, one key: ${res.result} in ${ms} ms`);
    expect(res.result).toBe('ok');
    expect(res.partitions[0]!.longestPrefix).toBeGreaterThan(900);

    inject(sim);
    const t1 = Date.now();
    const bad = checkOperations(versionedRegisterModel, sim.ops, { timeoutMs: 20_000 });
    console.log(`linearizability: 1,000 ops with one anomaly: ${bad.result} in ${Date.now() - t1} ms`);
    expect(bad.result).toBe('illegal');
  });

  it('a 1 ms timeout on a hard history returns unknown', () => {
    // 40 fully concurrent writes and an impossible read: the search must visit every subset of the writes.
    const ops: KvOp[] = [];
    for (let i = 0; i < 40; i++) ops.push(w(i, 'x', `v${i}`, 0, 100));
    ops.push(r(40, 'x', 'never', 0, 100));
    const res = checkOperations(kvRegisterModel, ops, { timeoutMs: 1 });
    expect(res.result).toBe('unknown');
    expect(res.illegalPartition).toBeUndefined();
    expect(res.info?.message).toContain('timed out');
  });
});
