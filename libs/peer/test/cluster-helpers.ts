/**
 * A cluster of RaftNodes in one process, each on its own temp data dir, wired ONLY through GrpcPeerTransport
 * over 127.0.0.1 (real gRPC, real sockets): what a multi-process deployment does, minus the processes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Entry, NodeId, StateType } from '@app/raft';
import { RaftNode, StateMachine } from '@app/raft-node';
import { GrpcPeerTransport, GrpcPeerTransportOptions, PeerError } from '@app/peer';
import { waitFor } from './helpers.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A tiny deterministic state machine: `key=value` commands into a map; apply returns the previous value. */
export class KvMachine implements StateMachine {
  readonly data = new Map<string, string>();
  apply(e: Entry): unknown {
    const [k, v] = dec.decode(e.data).split('=');
    const prev = this.data.get(k);
    this.data.set(k, v);
    return prev ?? null;
  }
  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify([...this.data]));
  }
  restore(data: Uint8Array): void {
    this.data.clear();
    for (const [k, v] of JSON.parse(dec.decode(data)) as [string, string][]) this.data.set(k, v);
  }
}

export const kv = (k: string, v: string): Uint8Array => enc.encode(`${k}=${v}`);

export interface GrpcMember {
  id: NodeId;
  node: RaftNode;
  kv: KvMachine;
  transport: GrpcPeerTransport;
  port: number;
}

export interface SecurityFor {
  server(id: NodeId): grpc.ServerCredentials;
  client(id: NodeId): grpc.ChannelCredentials;
}

export class GrpcCluster {
  readonly members = new Map<NodeId, GrpcMember>();
  readonly ports = new Map<NodeId, number>();
  readonly logs: string[] = [];
  private base = '';

  constructor(
    readonly ids: NodeId[],
    private readonly nodeOptions: { snapshotEvery?: number; snapshotCatchUpEntries?: number } = {},
    private readonly security?: SecurityFor,
    private readonly transportOptions: Partial<GrpcPeerTransportOptions> = {},
  ) {}

  async init(): Promise<void> {
    this.base = await mkdtemp(join(tmpdir(), 'peer-cluster-'));
  }

  peerMap(): Map<NodeId, string> {
    return new Map([...this.ports].map(([id, p]) => [id, `127.0.0.1:${p}`]));
  }

  /** Binds every member's transport first (ports from 0), then starts every node. */
  async startAll(): Promise<void> {
    const transports = new Map<NodeId, { t: GrpcPeerTransport; port: number }>();
    for (const id of this.ids) transports.set(id, await this.bind(id));
    for (const { t } of transports.values()) t.updatePeers(this.peerMap());
    await Promise.all(this.ids.map((id) => this.startNode(id, transports.get(id)!)));
  }

  private async bind(id: NodeId, port = 0): Promise<{ t: GrpcPeerTransport; port: number }> {
    const t = new GrpcPeerTransport({
      selfId: id,
      peers: this.peerMap(),
      credentials: this.security?.client(id),
      backoff: { initialMs: 20, maxMs: 200 },
      logger: { info: (m) => this.log(m), warn: (m) => this.log(m) },
      ...this.transportOptions,
    });
    const p = await t.listen(`127.0.0.1:${port}`, this.security?.server(id));
    this.ports.set(id, p);
    return { t, port: p };
  }

  private async startNode(id: NodeId, { t, port }: { t: GrpcPeerTransport; port: number }): Promise<GrpcMember> {
    const machine = new KvMachine();
    const node = new RaftNode({
      id,
      peers: this.ids,
      dataDir: join(this.base, `n${id}`),
      tickMs: 10,
      electionTicks: 20,
      heartbeatTicks: 2,
      transport: t,
      stateMachine: machine,
      proposalTimeoutMs: 3000,
      logger: { info: (m) => this.log(m), warn: (m) => this.log(m), error: (m) => this.log(m) },
      ...this.nodeOptions,
    });
    const m: GrpcMember = { id, node, kv: machine, transport: t, port };
    // The leader's side of forwarded writes: propose each request, answer with the previous value.
    t.setForwardHandler({
      writes: (_from, requests) =>
        Promise.all(
          requests.map((r) =>
            node.propose(r).then(
              (res) => ({ ok: enc.encode(String(res.result)), index: res.index }),
              (err: Error) => ({ error: { code: grpc.status.UNAVAILABLE, message: err.message }, index: 0 }),
            ),
          ),
        ),
      readIndex: async () => {
        if (node.status().role !== StateType.Leader) throw new PeerError(grpc.status.UNAVAILABLE, `member ${id} is not the leader`);
        return { index: await node.readIndex(), term: node.status().term };
      },
    });
    this.members.set(id, m);
    await node.start();
    return m;
  }

  /** Restarts member `id` on its old port and data dir (a process restart). */
  async restart(id: NodeId): Promise<GrpcMember> {
    const bound = await this.bind(id, this.ports.get(id));
    return this.startNode(id, bound);
  }

  async stop(id: NodeId): Promise<void> {
    const m = this.members.get(id);
    if (!m) return;
    await m.node.stop();
    await m.transport.close();
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.members.keys()].map((id) => this.stop(id)));
    if (this.base) await rm(this.base, { recursive: true, force: true });
  }

  m(id: NodeId): GrpcMember {
    return this.members.get(id)!;
  }

  running(): GrpcMember[] {
    return [...this.members.values()].filter((m) => m.node.status().phase === 'running');
  }

  log(line: string): void {
    this.logs.push(line);
    if (this.logs.length > 200) this.logs.shift();
  }

  describe(): string {
    const st = [...this.members.values()].map((m) => {
      const s = m.node.status();
      return `  node ${s.id}: ${s.phase} ${s.role} term ${s.term} leader ${s.leader} commit ${s.commit} applied ${s.applied} snap ${s.snapshotIndex} keys ${m.kv.data.size} ${JSON.stringify(m.transport.stats)}`;
    });
    return `cluster:\n${st.join('\n')}\nrecent log:\n${this.logs.slice(-30).join('\n')}`;
  }

  async waitForLeader(timeoutMs = 8000): Promise<GrpcMember> {
    let leader: GrpcMember | undefined;
    await waitFor(
      'a leader every running member agrees on',
      () => {
        const run = this.running();
        if (run.length === 0) return false;
        const l = run[0].node.status().leader;
        if (l === 0 || !run.every((m) => m.node.status().leader === l)) return false;
        const lm = this.members.get(l);
        if (!lm || lm.node.status().phase !== 'running' || lm.node.status().role !== StateType.Leader) return false;
        leader = lm;
        return true;
      },
      timeoutMs,
      () => this.describe(),
    );
    return leader!;
  }

  async waitForValue(key: string, value: string, ids = this.running().map((m) => m.id), timeoutMs = 8000): Promise<void> {
    await waitFor(`${key}=${value} on ${ids.join(',')}`, () => ids.every((id) => this.m(id).kv.data.get(key) === value), timeoutMs, () => this.describe());
  }
}

/** Proposes through `m`, retrying while leadership settles (puts are idempotent). */
export async function putVia(m: GrpcMember, key: string, value: string, timeoutMs = 8000): Promise<{ index: number; result: unknown }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await m.node.propose(kv(key, value));
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
