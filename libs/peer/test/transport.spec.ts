import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { EntryType, Message, MessageType, Snapshot, encodeConfChange, ConfChangeType, msg } from '@app/raft';
import { loadPeerProto } from '@app/proto';
import { GrpcPeerTransport, PEER_SERVER_OPTIONS, PeerError, messageFromWire, messageToWire, wireMessageTypeNames } from '@app/peer';
import { Recorder, Transports, comparable, deadPort, silentServer, sleep, waitFor } from './helpers.js';

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);

/** One message of every core type, with awkward values: binary data, empty and absent contexts, big numbers. */
function everyMessage(from: number, to: number): Message[] {
  return Object.values(MessageType)
    .filter((t) => t !== MessageType.Snap)
    .map((type, i) =>
      msg({
        type,
        from,
        to,
        term: 2 ** 40 + i,
        logTerm: i,
        index: 2 ** 50 + i,
        commit: 7 * i,
        reject: i % 2 === 0,
        rejectHint: 3 * i,
        entries:
          type === MessageType.App || type === MessageType.Prop
            ? [
                { term: 1, index: 10, type: EntryType.Normal, data: allBytes },
                { term: 1, index: 11, type: EntryType.Normal, data: new Uint8Array(0) },
                { term: 2, index: 12, type: EntryType.ConfChange, data: encodeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4, context: '127.0.0.1:1' }) },
                { term: 2, index: 13, type: EntryType.Normal, data: new Uint8Array(randomBytes(1000)) },
              ]
            : [],
        ...(i % 3 === 0 ? { context: new Uint8Array(0) } : i % 3 === 1 ? { context: Uint8Array.from([0, 1, 255, i]) } : {}),
      }),
    );
}

function snapshotMessage(from: number, to: number, size: number): Message {
  const snapshot: Snapshot = {
    metadata: { index: 1234, term: 5, confState: { voters: [1, 2, 3], learners: [4] } },
    data: new Uint8Array(randomBytes(size)),
  };
  return msg({ type: MessageType.Snap, from, to, term: 5, snapshot });
}

describe('peer codec', () => {
  it('maps every core message type to a value of the proto enum', () => {
    const { Raft } = loadPeerProto();
    const def = loadPeerProto().packageDefinition['synod.peer.v1.MessageType'] as { type: { value: { name: string }[] } };
    const names = def.type.value.map((v) => v.name);
    expect(names.sort()).toEqual(wireMessageTypeNames().sort());
    expect(Raft.service.Stream).toBeDefined();
  });

  it('round-trips every message type byte-exact through the protobuf encoding', () => {
    const { Raft } = loadPeerProto();
    const s = Raft.service.Stream;
    const msgs = [...everyMessage(1, 2), snapshotMessage(1, 2, 3000)];
    const wire = s.requestSerialize({ batch: { messages: msgs.map((m) => messageToWire(m)) } });
    const back = s.requestDeserialize(wire) as { batch: { messages: ReturnType<typeof messageToWire>[] } };
    const decoded = back.batch.messages.map((w) => messageFromWire(w));
    expect(decoded.map(comparable)).toEqual(msgs.map(comparable));
    for (const m of decoded) {
      for (const e of m.entries) expect(Object.getPrototypeOf(e.data)).toBe(Uint8Array.prototype);
    }
    // Presence: an empty context stays empty, an absent one absent.
    expect(decoded.filter((m) => m.context?.length === 0).length).toBe(msgs.filter((m) => m.context?.length === 0).length);
    expect(decoded.filter((m) => m.context === undefined).length).toBe(msgs.filter((m) => m.context === undefined).length);
  });
});

describe('GrpcPeerTransport on 127.0.0.1', () => {
  const ts = new Transports();
  afterEach(async () => {
    await ts.closeAll();
  });

  async function pair(optsA = {}, optsB = {}) {
    const a = await ts.make(1, optsA);
    const b = await ts.make(2, optsB);
    a.t.updatePeers(new Map([[2, b.addr]]));
    b.t.updatePeers(new Map([[1, a.addr]]));
    return { a, b };
  }

  it('delivers messages of every type byte-exact, in order', async () => {
    const { a, b } = await pair();
    const msgs = everyMessage(1, 2);
    a.t.send(msgs);
    await waitFor('all messages at 2', () => b.rec.received.length === msgs.length);
    expect(b.rec.received.map(comparable)).toEqual(msgs.map(comparable));
    // And back the other way.
    const back = everyMessage(2, 1);
    b.t.send(back);
    await waitFor('all messages at 1', () => a.rec.received.length === back.length);
    expect(a.rec.received.map(comparable)).toEqual(back.map(comparable));
    expect(a.rec.unreachable).toEqual([]);
    expect(b.rec.unreachable).toEqual([]);
  });

  it("sends everything one send() (one Ready) holds for a peer in one stream write", async () => {
    const { a, b } = await pair();
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1 })]);
    await waitFor('the stream to open', () => b.rec.received.length === 1);
    const sent0 = a.t.stats.batchesSent;
    const recv0 = b.t.stats.batchesReceived;
    for (let round = 1; round <= 5; round++) {
      const ready = Array.from({ length: 50 }, (_, i) =>
        msg({ type: MessageType.App, from: 1, to: 2, term: 1, index: round * 100 + i, entries: [{ term: 1, index: round * 100 + i + 1, type: EntryType.Normal, data: new Uint8Array(randomBytes(100)) }] }),
      );
      a.t.send(ready);
      await waitFor(`round ${round}`, () => b.rec.received.length === 1 + round * 50);
      expect(a.t.stats.batchesSent - sent0).toBe(round);
      expect(b.t.stats.batchesReceived - recv0).toBe(round);
    }
  });

  it('coalesces what was queued while connecting into one write, and cuts batches at maxBatchBytes', async () => {
    const { a, b } = await pair({ maxBatchBytes: 64 * 1024 });
    // The stream is not open yet: three sends queue up and leave together once the peer's hello arrives.
    for (let i = 0; i < 3; i++) a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1, commit: i })]);
    await waitFor('3 heartbeats', () => b.rec.received.length === 3);
    expect(a.t.stats.batchesSent).toBe(1);
    expect(b.rec.received.map((m) => m.commit)).toEqual([0, 1, 2]);
    // 10 appends of 20 KiB each: at most 3 fit in 64 KiB, so 4 writes.
    const big = Array.from({ length: 10 }, (_, i) =>
      msg({ type: MessageType.App, from: 1, to: 2, term: 1, index: i, entries: [{ term: 1, index: i + 1, type: EntryType.Normal, data: new Uint8Array(randomBytes(20 * 1024)) }] }),
    );
    a.t.send(big);
    await waitFor('the appends', () => b.rec.received.length === 13);
    expect(a.t.stats.batchesSent).toBe(1 + 4);
    expect(b.rec.received.slice(3).map(comparable)).toEqual(big.map(comparable));
  });

  it('bounds the queue of a peer that hangs: drops the oldest and reports the peer unreachable', async () => {
    const hang = await silentServer();
    try {
      const a = await ts.make(1, { maxQueuedMessages: 4, helloTimeoutMs: 500 });
      a.t.updatePeers(new Map([[2, `127.0.0.1:${hang.port}`]]));
      a.t.send(Array.from({ length: 10 }, (_, i) => msg({ type: MessageType.Heartbeat, from: 1, to: 2, commit: i })));
      await waitFor('an unreachable report', () => a.rec.unreachable.includes(2));
      expect(a.t.stats.messagesDropped).toBe(6);
      expect(a.t.linkState(2)).toBe('connecting');
      // The hello never comes: after helloTimeoutMs the 4 queued messages are dropped too.
      await waitFor('the hello timeout', () => a.t.stats.messagesDropped === 10, 3000);
      expect(a.t.linkState(2)).toBe('backoff');
    } finally {
      await hang.close();
    }
  });

  it('reports unreachable (asynchronously) for a peer nobody listens on and for an unknown peer', async () => {
    const a = await ts.make(1);
    a.t.updatePeers(new Map([[2, `127.0.0.1:${await deadPort()}`]]));
    a.t.send([msg({ type: MessageType.Vote, from: 1, to: 2 }), msg({ type: MessageType.Vote, from: 1, to: 9 })]);
    // Never synchronously inside send().
    expect(a.rec.unreachable).toEqual([]);
    await waitFor('both unreachable', () => a.rec.unreachable.includes(2) && a.rec.unreachable.includes(9));
    // While backing off, further messages are dropped at once (and reported again).
    const before = a.rec.unreachable.length;
    a.t.send([msg({ type: MessageType.Vote, from: 1, to: 2 })]);
    await waitFor('another report', () => a.rec.unreachable.length > before);
  });

  it('reconnects after the remote server restarts on the same port', async () => {
    const { a, b } = await pair();
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, commit: 1 })]);
    await waitFor('first delivery', () => b.rec.received.length === 1);
    const port = b.port;
    await b.t.close();
    await waitFor('the break to be noticed', () => {
      a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, commit: 2 })]);
      return a.rec.unreachable.includes(2);
    });
    // Same address, new process-equivalent: a fresh transport on the same port.
    const b2 = await ts.make(2, {}, port);
    b2.t.updatePeers(new Map([[1, a.addr]]));
    let n = 100;
    await waitFor('delivery to the restarted peer', () => {
      a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, commit: n++ })]);
      return b2.rec.received.length > 0;
    }, 5000);
    expect(a.t.stats.streamsOpened).toBe(2);
    expect(a.t.linkState(2)).toBe('open');
  });

  it('notices when the peer stops its transport (node stopped) and reconnects when it starts again', async () => {
    const { a, b } = await pair();
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor('delivery', () => b.rec.received.length === 1);
    b.t.stop();
    await waitFor('unreachable after the peer stopped', () => a.rec.unreachable.includes(2));
    const rec2 = new Recorder();
    b.t.start(rec2);
    await waitFor('delivery after restart', () => {
      a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
      return rec2.received.length > 0;
    });
  });

  it('refuses a stream addressed to another member (stale address) and one from another cluster', async () => {
    const a = await ts.make(1);
    const b = await ts.make(2);
    const c = await ts.make(3, { clusterId: 'other' });
    // 1 believes member 3 lives at 2's address; and 3 is in another cluster.
    a.t.updatePeers(new Map([[3, b.addr]]));
    c.t.updatePeers(new Map([[2, b.addr]]));
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 3 })]);
    c.t.send([msg({ type: MessageType.Heartbeat, from: 3, to: 2 })]);
    await waitFor('both refused', () => a.rec.unreachable.includes(3) && c.rec.unreachable.includes(2));
    expect(b.rec.received).toEqual([]);
    expect(a.t.stats.streamsOpened + c.t.stats.streamsOpened).toBe(0);
  });

  it('sends a 5 MiB snapshot with its conf state in chunks through a server with the default 4 MiB limit', async () => {
    // B serves on a server the test owns (default grpc options: 4 MiB max message): only chunking gets 5 MiB through.
    const server = new grpc.Server();
    const recB = new Recorder();
    const b = new GrpcPeerTransport({ selfId: 2, peers: new Map(), server });
    ts.all.push(b);
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    try {
      b.start(recB);
      const a = await ts.make(1, { snapshotChunkBytes: 512 * 1024 });
      a.t.updatePeers(new Map([[2, `127.0.0.1:${port}`]]));
      const m = snapshotMessage(1, 2, 5 * 1024 * 1024 + 17);
      const hb = msg({ type: MessageType.Heartbeat, from: 1, to: 2, term: 5 });
      a.t.send([m, hb]);
      await waitFor('the snapshot report', () => a.rec.snapshots.length === 1, 10_000);
      expect(a.rec.snapshots).toEqual([{ id: 2, ok: true }]);
      const got = recB.received.find((x) => x.type === MessageType.Snap)!;
      expect(comparable(got)).toEqual(comparable(m));
      expect(got.snapshot!.metadata).toEqual({ index: 1234, term: 5, confState: { voters: [1, 2, 3], learners: [4] } });
      expect(b.stats.snapshotsReceived).toBe(1);
      // The heartbeat of the same Ready went on the stream, not behind the snapshot.
      await waitFor('the heartbeat', () => recB.received.some((x) => x.type === MessageType.Heartbeat));
    } finally {
      server.forceShutdown();
    }
  });

  it('reports a failed snapshot send', async () => {
    const a = await ts.make(1);
    a.t.updatePeers(new Map([[2, `127.0.0.1:${await deadPort()}`]]));
    a.t.send([snapshotMessage(1, 2, 1000)]);
    await waitFor('the snapshot report', () => a.rec.snapshots.length === 1);
    expect(a.rec.snapshots).toEqual([{ id: 2, ok: false }]);
    expect(a.rec.unreachable).toContain(2);
  });

  it('follows peer map updates: a moved peer is reached at its new address', async () => {
    const a = await ts.make(1);
    const b = await ts.make(2);
    const b2 = await ts.make(2);
    a.t.setPeer(2, b.addr);
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor('delivery to the old address', () => b.rec.received.length === 1);
    a.t.setPeer(2, b2.addr);
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor('delivery to the new address', () => b2.rec.received.length === 1);
    a.t.removePeer(2);
    expect(a.t.peerMap().size).toBe(0);
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor('unreachable for a removed peer', () => a.rec.unreachable.includes(2));
  });

  it('forwards writes in batches and read-index requests to a handler on the peer', async () => {
    const { a, b } = await pair();
    const batches: Uint8Array[][] = [];
    let reads = 0;
    b.t.setForwardHandler({
      writes: async (from, requests) => {
        expect(from).toBe(1);
        batches.push(requests);
        return requests.map((r, i) =>
          r[0] === 0xff
            ? { error: { code: grpc.status.FAILED_PRECONDITION, message: 'version mismatch on /x: expected 3, is 4' }, index: 0 }
            : { ok: Uint8Array.from([...r].reverse()), index: 100 + i },
        );
      },
      readIndex: async () => ({ index: 42 + reads++, term: 7 }),
    });
    const results = await Promise.all([
      a.t.forwardWrite(2, Uint8Array.from([1, 2, 3])),
      a.t.forwardWrite(2, Uint8Array.from([0xff])),
      a.t.forwardWrite(2, new Uint8Array(0)),
    ]);
    expect(batches.length).toBe(1);
    expect(batches[0].map((r) => [...r])).toEqual([[1, 2, 3], [0xff], []]);
    expect(results).toEqual([
      { ok: Uint8Array.from([3, 2, 1]), index: 100 },
      { error: { code: grpc.status.FAILED_PRECONDITION, message: 'version mismatch on /x: expected 3, is 4' }, index: 0 },
      { ok: new Uint8Array(0), index: 102 },
    ]);
    const r = await Promise.all([a.t.forwardReadIndex(2), a.t.forwardReadIndex(2), a.t.forwardReadIndex(2)]);
    expect(r).toEqual([{ index: 42, term: 7 }, { index: 42, term: 7 }, { index: 42, term: 7 }]);
    expect(reads).toBe(1);

    // A handler failure is relayed with its status code; no handler means UNAVAILABLE.
    b.t.setForwardHandler({
      writes: async () => {
        throw new PeerError(grpc.status.UNAVAILABLE, 'not the leader; leader is member 3 at 10.0.0.3:2379');
      },
      readIndex: async () => ({ index: 0, term: 0 }),
    });
    await expect(a.t.forwardWrite(2, Uint8Array.from([1]))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, message: expect.stringContaining('leader is member 3') });
    b.t.setForwardHandler(undefined);
    await expect(a.t.forwardReadIndex(2)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(a.t.forwardWrite(9, Uint8Array.from([1]))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('stop() ends delivery; close() releases the server so its port can be reused', async () => {
    const { a, b } = await pair();
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor('delivery', () => b.rec.received.length === 1);
    a.t.stop();
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await sleep(50);
    expect(b.rec.received.length).toBe(1);
    expect(a.t.stats.messagesDropped).toBeGreaterThanOrEqual(1);
    await a.t.close();
    const again = await ts.make(1, {}, a.port);
    expect(again.port).toBe(a.port);
    expect(PEER_SERVER_OPTIONS['grpc.max_receive_message_length']).toBeGreaterThan(4 * 1024 * 1024);
  });
});
