import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_FILES, PROTO_LOADER_OPTIONS, SERVICE_NAMES, loadConsensusProto, loadPeerProto, protoRoot } from '@app/proto';

function methods(ctor: { service: Record<string, { requestStream: boolean; responseStream: boolean }> }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, def] of Object.entries(ctor.service)) {
    // grpc-js lists every method twice (original and lowerCamelCase names); keep the proto names.
    if (name[0] !== name[0].toUpperCase()) continue;
    out[name] = `${def.requestStream ? 'stream' : 'unary'}->${def.responseStream ? 'stream' : 'unary'}`;
  }
  return out;
}

describe('@app/proto', () => {
  it('finds the proto root at the repository root', () => {
    const root = protoRoot();
    for (const f of Object.values(PROTO_FILES)) expect(existsSync(join(root, f))).toBe(true);
  });

  it('uses one frozen options object with the documented choices', () => {
    expect(Object.isFrozen(PROTO_LOADER_OPTIONS)).toBe(true);
    expect(PROTO_LOADER_OPTIONS).toMatchObject({ keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  });

  it('loads the Coordination service with every method and its streaming shape', () => {
    const { Coordination } = loadConsensusProto();
    expect(methods(Coordination)).toEqual({
      CreateSession: 'unary->unary',
      KeepAlive: 'stream->stream',
      CloseSession: 'unary->unary',
      Create: 'unary->unary',
      Get: 'unary->unary',
      Set: 'unary->unary',
      Delete: 'unary->unary',
      Exists: 'unary->unary',
      GetChildren: 'unary->unary',
      Multi: 'unary->unary',
      Watch: 'stream->stream',
    });
    expect(Coordination.service.Create.path).toBe(`/${SERVICE_NAMES.coordination}/Create`);
  });

  it('loads the Cluster service', () => {
    const { Cluster } = loadConsensusProto();
    expect(methods(Cluster)).toEqual({
      Status: 'unary->unary',
      Members: 'unary->unary',
      AddMember: 'unary->unary',
      PromoteMember: 'unary->unary',
      RemoveMember: 'unary->unary',
      TransferLeadership: 'unary->unary',
      Snapshot: 'unary->stream',
    });
  });

  it('loads the peer Raft service', () => {
    const { Raft } = loadPeerProto();
    expect(methods(Raft)).toEqual({
      Stream: 'stream->stream',
      SendSnapshot: 'stream->unary',
      ForwardWrites: 'unary->unary',
      ForwardReadIndex: 'unary->unary',
    });
    expect(Raft.service.Stream.path).toBe(`/${SERVICE_NAMES.raft}/Stream`);
  });

  it('memoizes the loaders', () => {
    expect(loadConsensusProto()).toBe(loadConsensusProto());
    expect(loadPeerProto()).toBe(loadPeerProto());
  });

  it('decodes with the shared options: camelCase, numbers for 64-bit fields, enum names, defaults, oneofs', () => {
    const { Coordination } = loadConsensusProto();
    const create = Coordination.service.Create;
    const wire = create.requestSerialize({ path: '/a', data: Buffer.from([0, 255]), mode: 'EPHEMERAL_SEQUENTIAL', sessionId: 2 ** 40 + 7 });
    const req = create.requestDeserialize(wire) as Record<string, unknown>;
    expect(req.path).toBe('/a');
    expect(req.mode).toBe('EPHEMERAL_SEQUENTIAL');
    expect(req.sessionId).toBe(2 ** 40 + 7);
    expect([...(req.data as Uint8Array)]).toEqual([0, 255]);

    const get = Coordination.service.Get;
    const res = get.responseDeserialize(get.responseSerialize({ stat: { czxid: 5, ephemeralOwner: 9 } })) as {
      header: unknown;
      data: Uint8Array;
      stat: Record<string, number>;
    };
    expect(res.header).toBeNull(); // message fields stay absent
    expect(res.data.length).toBe(0); // bytes default
    expect(res.stat).toMatchObject({ czxid: 5, mzxid: 0, version: 0, ephemeralOwner: 9, numChildren: 0 });

    const multi = Coordination.service.Multi;
    const m = multi.requestDeserialize(
      multi.requestSerialize({ ops: [{ check: { path: '/x', version: -1 } }, { delete: { path: '/y', version: 3 } }] }),
    ) as { ops: { op: string; check?: { version: number } }[] };
    expect(m.ops.map((o) => o.op)).toEqual(['check', 'delete']);
    expect(m.ops[0].check!.version).toBe(-1);

    const consistency = Coordination.service.Get.requestDeserialize(Coordination.service.Get.requestSerialize({ path: '/' })) as {
      consistency: string;
    };
    expect(consistency.consistency).toBe('LINEARIZABLE');
  });

  it('keeps proto3 optional presence: an absent start_zxid is distinguishable from 0', () => {
    const { Coordination } = loadConsensusProto();
    const w = Coordination.service.Watch;
    const absent = w.requestDeserialize(w.requestSerialize({ add: { path: '/a', kind: 'PERSISTENT_RECURSIVE' } })) as {
      add: Record<string, unknown>;
    };
    const zero = w.requestDeserialize(w.requestSerialize({ add: { path: '/a', startZxid: 0 } })) as { add: Record<string, unknown> };
    expect(absent.add.startZxid).toBeUndefined();
    expect(absent.add.kind).toBe('PERSISTENT_RECURSIVE');
    expect(zero.add.startZxid).toBe(0);
  });

  it('loads each file on its own with plain proto-loader too (imports resolve via the proto root)', () => {
    for (const f of Object.values(PROTO_FILES)) {
      const def = protoLoader.loadSync(f, { ...PROTO_LOADER_OPTIONS, includeDirs: [protoRoot()] });
      expect(Object.keys(def).length).toBeGreaterThan(0);
    }
  });
});
