/**
 * Test helpers: a small KV state machine, a cluster of RaftNodes on temp dirs wired by an InMemoryHub, and
 * bounded waits that fail with a clear message (and the recent log lines).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Entry, NodeId, StateType } from '@app/raft';
import { CountingFileOps, countingFileOps } from '@app/storage';
import { InMemoryHub, RaftNode, RaftNodeLogger, RaftNodeOptions, StateMachine } from '@app/raft-node';

const enc = new TextEncoder();
const dec = new TextDecoder();

export type KvCommand = { op: 'put'; key: string; value: string } | { op: 'del'; key: string };

export function put(key: string, value: string): Uint8Array {
  return enc.encode(JSON.stringify({ op: 'put', key, value } satisfies KvCommand));
}

/** A map of strings; apply returns the previous value. */
export class KvStateMachine implements StateMachine {
  readonly data = new Map<string, string>();
  /** Index of the last entry applied (commands only). */
  lastIndex = 0;
  applies = 0;
  restores = 0;

  apply(entry: Entry): unknown {
    const c = JSON.parse(dec.decode(entry.data)) as KvCommand;
    const prev = this.data.get(c.key);
    if (c.op === 'put') this.data.set(c.key, c.value);
    else this.data.delete(c.key);
    this.lastIndex = entry.index;
    this.applies++;
    return prev;
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify({ lastIndex: this.lastIndex, data: [...this.data.entries()] }));
  }

  restore(data: Uint8Array): void {
    const o = JSON.parse(dec.decode(data)) as { lastIndex: number; data: [string, string][] };
    this.data.clear();
    for (const [k, v] of o.data) this.data.set(k, v);
    this.lastIndex = o.lastIndex;
    this.restores++;
  }
}

/** Keeps the last lines of every node's log, shown when a wait fails. */
export class RingLogger {
  readonly lines: string[] = [];
  constructor(private readonly max = 300) {}

  for(id: NodeId): RaftNodeLogger {
    const push = (level: string, m: string): void => {
      this.lines.push(`${level} ${id} ${m}`);
      if (this.lines.length > this.max) this.lines.shift();
    };
    return { info: (m) => push('I', m), warn: (m) => push('W', m), error: (m) => push('E', m) };
  }

  tail(n = 40): string {
    return this.lines.slice(-n).join('\n');
  }
}


export async function waitFor(what: string, pred: () => boolean, timeoutMs: number, diag?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${diag ? `\n${diag()}` : ''}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface Member {
  cluster: TestCluster;
  node: RaftNode;
  kv: KvStateMachine;
  fileOps: CountingFileOps;
}

export type NodeOverrides = Partial<Omit<RaftNodeOptions, 'id' | 'dataDir' | 'transport' | 'stateMachine'>>;

export class TestCluster {
  readonly hub = new InMemoryHub();
  readonly members = new Map<NodeId, Member>();
  readonly log = new RingLogger();
  private base = '';

  constructor(
    readonly voters: NodeId[],
    private readonly defaults: NodeOverrides = {},
  ) {}

  async init(): Promise<void> {
    this.base = await mkdtemp(join(tmpdir(), 'raft-node-test-'));
  }

  dataDir(id: NodeId): string {
    return join(this.base, `n${id}`);
  }

  async startAll(): Promise<void> {
    await Promise.all(this.voters.map((id) => this.start(id)));
  }

  /** Starts (or restarts, on the same data dir) node `id` with a fresh, empty state machine. */
  async start(id: NodeId, overrides: NodeOverrides = {}): Promise<Member> {
    const old = this.members.get(id);
    if (old && (old.node.status().phase === 'running' || old.node.status().phase === 'starting')) throw new Error(`node ${id} is running`);
    const kv = new KvStateMachine();
    const fileOps = countingFileOps();
    const node = new RaftNode({
      id,
      peers: this.voters,
      dataDir: this.dataDir(id),
      tickMs: 10,
      // 200-400 ms election timeouts: robust against fdatasync stalls on a busy test machine.
      electionTicks: 20,
      heartbeatTicks: 2,
      transport: this.hub.transport(id),
      stateMachine: kv,
      logger: this.log.for(id),
      proposalTimeoutMs: 3000,
      wal: { fileOps },
      ...this.defaults,
      ...overrides,
    });
    const m: Member = { cluster: this, node, kv, fileOps };
    this.members.set(id, m);
    await node.start();
    return m;
  }

  async stop(id: NodeId): Promise<void> {
    await this.members.get(id)?.node.stop();
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.members.values()].map((m) => m.node.stop()));
  }

  async destroy(): Promise<void> {
    await this.stopAll();
    if (this.base) await rm(this.base, { recursive: true, force: true });
  }

  m(id: NodeId): Member {
    const m = this.members.get(id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  running(): Member[] {
    return [...this.members.values()].filter((m) => m.node.status().phase === 'running');
  }

  describe(): string {
    const st = [...this.members.values()].map((m) => {
      const s = m.node.status();
      return `  node ${s.id}: ${s.phase} ${s.role} term ${s.term} leader ${s.leader} commit ${s.commit} applied ${s.applied} last ${s.lastIndex} snap ${s.snapshotIndex} keys ${m.kv.data.size}${s.error ? ` error ${s.error}` : ''}`;
    });
    return `cluster:\n${st.join('\n')}\nrecent log:\n${this.log.tail()}`;
  }

  /** Waits until every running node agrees on one leader, which is running and leads; returns it. */
  async waitForLeader(timeoutMs = 5000): Promise<Member> {
    let leader: Member | undefined;
    await waitFor(
      'a leader all running nodes agree on',
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

  /** Waits until every running node (or the given ones) has `key` = `value`. */
  async waitForValue(key: string, value: string, ids?: NodeId[], timeoutMs = 5000): Promise<void> {
    const members = ids ? ids.map((id) => this.m(id)) : this.running();
    await waitFor(
      `${key}=${value} on nodes ${members.map((m) => m.node.id).join(',')}`,
      () => members.every((m) => m.kv.data.get(key) === value),
      timeoutMs,
      () => this.describe(),
    );
  }

  /** Waits until the given nodes have applied the same index as the leader's commit. */
  async waitForConvergence(ids: NodeId[], timeoutMs = 5000): Promise<void> {
    await waitFor(
      `nodes ${ids.join(',')} to apply everything the leader committed`,
      () => {
        const leader = this.running().find((m) => m.node.status().role === StateType.Leader);
        if (!leader) return false;
        const c = leader.node.status().commit;
        return ids.every((id) => {
          const s = this.m(id).node.status();
          return s.phase === 'running' && s.applied === c;
        });
      },
      timeoutMs,
      () => this.describe(),
    );
  }
}

/**
 * Proposes `key=value` through `member`, retrying (puts are idempotent) when the proposal was dropped or timed
 * out because leadership changed meanwhile.
 */
export async function putVia(member: Member, key: string, value: string, timeoutMs = 10_000): Promise<{ index: number; result: unknown }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await member.node.propose(put(key, value));
    } catch (err) {
      if (Date.now() > deadline || !(err instanceof Error) || (err.name !== 'ProposalDroppedError' && err.name !== 'RequestTimeoutError')) {
        throw new Error(`put ${key}=${value} via node ${member.node.id} failed: ${String(err)}\n${member.cluster.describe()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
