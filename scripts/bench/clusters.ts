/**
 * Shared by the `kv` and `failover` benchmarks: a 3-member Synod cluster (real processes, through the
 * consensus tests' ProcessCluster harness) and a 3-member etcd cluster on 127.0.0.1, a raw gRPC client that
 * sends pre-encoded protobuf bodies (the same code path for both servers), a minimal protobuf encoder/decoder
 * for the few etcd messages used, Prometheus counter scraping, and a cleanup registry that kills every child by
 * pid on exit, on an error and on Ctrl-C.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, rmSync, WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ProcessCluster, freePort } from '../../apps/consensus/test/harness.js';
import { sleep } from './common.js';

// ---- cleanup on Ctrl-C ---------------------------------------------------------------------------------------

const livePids = new Set<number>();
const liveDirs = new Set<string>();
let signalsInstalled = false;

/** On SIGINT/SIGTERM: SIGKILL every child still registered (by pid), remove the temp dirs, exit 130. */
export function installSignalCleanup(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: stopping ${livePids.size} child process(es) by pid`);
    for (const pid of livePids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

function track(p: ChildProcess): void {
  if (p.pid === undefined) return;
  const pid = p.pid;
  livePids.add(pid);
  p.once('exit', () => livePids.delete(pid));
}

// ---- protobuf, by hand (varint and length-delimited fields only) ---------------------------------------------

function varint(n: bigint): Buffer {
  let v = BigInt.asUintN(64, n); // negative int32/int64 → 10-byte two's complement, as protobuf does
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

export function pbVarint(field: number, v: number | bigint): Buffer {
  return Buffer.concat([varint(BigInt(field << 3)), varint(BigInt(v))]);
}

export function pbBytes(field: number, v: Buffer | string): Buffer {
  const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  return Buffer.concat([varint(BigInt((field << 3) | 2)), varint(BigInt(b.length)), b]);
}

export type PbFields = Map<number, (bigint | Buffer)[]>;

/** Decodes one message level: field number → values (varints as bigint, length-delimited as Buffer). */
export function pbDecode(b: Buffer): PbFields {
  const out: PbFields = new Map();
  let i = 0;
  const readVarint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const byte = b[i++];
      v |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return v;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const key = Number(readVarint());
    const field = key >> 3;
    const wire = key & 7;
    let val: bigint | Buffer;
    if (wire === 0) val = readVarint();
    else if (wire === 2) {
      const len = Number(readVarint());
      val = b.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      val = b.readBigUInt64LE(i);
      i += 8;
    } else if (wire === 5) {
      val = BigInt(b.readUInt32LE(i));
      i += 4;
    } else throw new Error(`protobuf: unsupported wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(val);
    out.set(field, list);
  }
  return out;
}

export const pbNum = (f: PbFields, n: number): number => Number((f.get(n)?.[0] as bigint | undefined) ?? 0n);
export const pbMsg = (f: PbFields, n: number): PbFields => pbDecode((f.get(n)?.[0] as Buffer | undefined) ?? Buffer.alloc(0));

/** The gRPC length-prefixed frame of one uncompressed message (what h2load POSTs as the body). */
export function grpcFrame(msg: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt8(0, 0);
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

// ---- etcd messages (etcdserverpb, etcd 3.4 rpc.proto) --------------------------------------------------------

export const ETCD_PUT = '/etcdserverpb.KV/Put';
export const ETCD_RANGE = '/etcdserverpb.KV/Range';
export const ETCD_STATUS = '/etcdserverpb.Maintenance/Status';

/** PutRequest {key = 1, value = 2}. */
export const etcdPut = (key: string, value: Buffer): Buffer => Buffer.concat([pbBytes(1, key), pbBytes(2, value)]);
/** RangeRequest {key = 1}; serializable (7) unset = linearizable, etcd's default. */
export const etcdRange = (key: string): Buffer => pbBytes(1, key);

/** The `version` (KeyValue field 4) of the first kv of a RangeResponse (kvs = field 2), 0 if absent. */
export function etcdRangeVersion(resp: Buffer): number {
  const kvs = pbDecode(resp).get(2);
  if (!kvs || kvs.length === 0) return 0;
  return pbNum(pbDecode(kvs[0] as Buffer), 4);
}

export interface EtcdStatus {
  memberId: bigint;
  leader: bigint;
  raftIndex: number;
  raftAppliedIndex: number;
}

/** StatusResponse {header = 1 {member_id = 2}, leader = 4, raftIndex = 5, raftAppliedIndex = 7}. */
export function etcdStatus(resp: Buffer): EtcdStatus {
  const f = pbDecode(resp);
  const h = pbMsg(f, 1);
  return {
    memberId: (h.get(2)?.[0] as bigint | undefined) ?? 0n,
    leader: (f.get(4)?.[0] as bigint | undefined) ?? 0n,
    raftIndex: pbNum(f, 5),
    raftAppliedIndex: pbNum(f, 7),
  };
}

// ---- raw gRPC client ------------------------------------------------------------------------------------------

const identity = (b: Buffer): Buffer => b;

/** Channel options of every benchmark client: reconnect quickly to a restarted member. */
export const RAW_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.use_local_subchannel_pool': 1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
};

/** A grpc-js client that sends already-encoded protobuf messages: the same code for Synod and etcd. */
export class RawClient {
  private readonly client: grpc.Client;
  constructor(readonly address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), RAW_CHANNEL_OPTIONS);
  }

  call(method: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
    return new Promise((res, rej) => {
      this.client.makeUnaryRequest(method, identity, identity, body, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) =>
        err ? rej(err) : res(r!),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

// ---- Prometheus counters --------------------------------------------------------------------------------------

/** grpc_server_handled_total for one method, summed per grpc_code, from a /metrics URL. */
export async function handledByCode(url: string, method: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const text = await (await fetch(url, { signal: AbortSignal.timeout(3000) })).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith('grpc_server_handled_total{')) continue;
    if (!line.includes(`grpc_method="${method}"`)) continue;
    const code = /grpc_code="([^"]+)"/.exec(line)?.[1] ?? '?';
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    out.set(code, (out.get(code) ?? 0) + v);
  }
  return out;
}

export function diffCodes(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of after) {
    const x = v - (before.get(k) ?? 0);
    if (x !== 0) d.set(k, x);
  }
  return d;
}

export function sumCodes(ms: Map<string, number>[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of ms) for (const [k, v] of m) out.set(k, (out.get(k) ?? 0) + v);
  return out;
}

// ---- a 3-member Synod cluster ---------------------------------------------------------------------------------

export class SynodCluster {
  readonly pc: ProcessCluster;
  constructor(
    readonly extraArgs: string[],
    ids: number[] = [1, 2, 3],
  ) {
    this.pc = new ProcessCluster(ids, extraArgs);
  }

  async start(): Promise<void> {
    // ProcessCluster.start spawns and waits; register each pid for Ctrl-C as soon as it exists.
    const orig = this.pc.spawn.bind(this.pc);
    this.pc.spawn = (...a: Parameters<ProcessCluster['spawn']>) => {
      const p = orig(...a);
      track(p);
      liveDirs.add(this.pc.baseDir);
      return p;
    };
    await this.pc.start();
  }

  get ids(): number[] {
    return [...this.pc.members.keys()];
  }
  clientAddress(id: number): string {
    return `127.0.0.1:${this.pc.members.get(id)!.clientPort}`;
  }
  metricsUrl(id: number): string {
    return `http://127.0.0.1:${this.pc.members.get(id)!.metricsPort}/metrics`;
  }
  pid(id: number): number | undefined {
    return this.pc.members.get(id)!.proc?.pid;
  }
  leader(ids?: number[], timeoutMs?: number): Promise<number> {
    return this.pc.waitLeader(ids, timeoutMs);
  }

  async stop(): Promise<void> {
    liveDirs.delete(this.pc.baseDir);
    await this.pc.stopAll();
  }
}

// ---- a 3-member etcd cluster ----------------------------------------------------------------------------------

interface EtcdMember {
  id: number;
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  log: string;
  proc?: ChildProcess;
  exited?: Promise<void>;
}

export class EtcdCluster {
  readonly members = new Map<number, EtcdMember>();
  private dir = '';
  private readonly logs: WriteStream[] = [];
  private readonly token = `bench-${process.pid}-${Date.now()}`;

  /** `heartbeatMs`/`electionMs` undefined: etcd's defaults (100 / 1000 ms). */
  constructor(
    readonly heartbeatMs?: number,
    readonly electionMs?: number,
    readonly ids: number[] = [1, 2, 3],
  ) {}

  async start(timeoutMs = 20_000): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'synod-bench-etcd-'));
    liveDirs.add(this.dir);
    for (const id of this.ids) {
      this.members.set(id, {
        id,
        name: `e${id}`,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: join(this.dir, `e${id}`),
        log: join(this.dir, `e${id}.log`),
      });
    }
    for (const id of this.ids) this.spawn(id);
    await Promise.all(this.ids.map((id) => this.waitServing(id, timeoutMs)));
  }

  spawn(id: number): ChildProcess {
    const m = this.members.get(id)!;
    const cluster = [...this.members.values()].map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', cluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', this.token,
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
    if (this.heartbeatMs !== undefined) args.push('--heartbeat-interval', String(this.heartbeatMs));
    if (this.electionMs !== undefined) args.push('--election-timeout', String(this.electionMs));
    const proc = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(proc);
    const out = createWriteStream(m.log, { flags: 'a' });
    this.logs.push(out);
    proc.stdout!.pipe(out, { end: false });
    proc.stderr!.pipe(out, { end: false });
    m.proc = proc;
    m.exited = new Promise((r) => proc.once('exit', () => r()));
    return proc;
  }

  clientAddress(id: number): string {
    return `127.0.0.1:${this.members.get(id)!.clientPort}`;
  }
  metricsUrl(id: number): string {
    return `http://127.0.0.1:${this.members.get(id)!.clientPort}/metrics`;
  }
  pid(id: number): number | undefined {
    return this.members.get(id)!.proc?.pid;
  }

  async status(id: number, timeoutMs = 1000): Promise<EtcdStatus> {
    const c = new RawClient(this.clientAddress(id));
    try {
      return etcdStatus(await c.call(ETCD_STATUS, Buffer.alloc(0), timeoutMs));
    } finally {
      c.close();
    }
  }

  async waitServing(id: number, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const s = await this.status(id);
        if (s.leader !== 0n) return;
      } catch {
        // not up yet
      }
      if (Date.now() > end) throw new Error(`etcd member ${id} not serving within ${timeoutMs} ms\n${this.logOf(id)}`);
      await sleep(100);
    }
  }

  running(): number[] {
    return [...this.members.values()].filter((m) => m.proc).map((m) => m.id);
  }

  /** Waits until every running member names the same leader (among the running ones); returns its id. */
  async leader(ids: number[] = this.running(), timeoutMs = 15_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const st = await Promise.all(ids.map(async (id) => ({ id, s: await this.status(id) })));
        const l = st[0].s.leader;
        const who = st.find((x) => x.s.memberId === l);
        if (l !== 0n && who && st.every((x) => x.s.leader === l)) return who.id;
      } catch {
        // retry
      }
      if (Date.now() > end) throw new Error(`etcd: no agreed leader among ${ids.join(', ')} within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async kill(id: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.members.get(id)!;
    const p = m.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) {
      m.proc = undefined;
      return;
    }
    process.kill(p.pid!, signal);
    await m.exited;
    m.proc = undefined;
  }

  logOf(id: number): string {
    try {
      return readFileSync(this.members.get(id)!.log, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.ids.map((id) => this.kill(id, 'SIGKILL')));
    for (const l of this.logs) l.end();
    if (this.dir) {
      liveDirs.delete(this.dir);
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

/** `etcd --version`'s first line, or 'etcd: unknown'. */
export async function etcdVersion(): Promise<string> {
  return commandFirstLine('etcd', ['--version']);
}
export async function h2loadVersion(): Promise<string> {
  return commandFirstLine('h2load', ['--version']);
}

function commandFirstLine(cmd: string, args: string[]): Promise<string> {
  return new Promise((res) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    p.stdout!.on('data', (d: Buffer) => (s += d.toString()));
    p.once('error', () => res(`${cmd}: not found`));
    p.once('exit', () => res(s.split('\n')[0]?.trim() || `${cmd}: unknown`));
  });
}
