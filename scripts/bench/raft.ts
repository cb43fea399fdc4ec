/**
 * `npm run bench -- raft`: throughput and latency of a 3-node Raft cluster (RaftNode + InMemoryHub, real WAL
 * files with real fdatasync) against the raw cost of the same file storage, measured in the same run.
 *
 *  1. Anchor: one writer appending to a Wal (libs/storage) — `wal.save(hardState, [entry], sync=true)` in a
 *     loop, entries the size of the Raft entries below: writes/s = fdatasyncs/s. Also the same writer with
 *     256 entries per save (what the file storage can absorb when batching).
 *  2. Raft: for each in-flight count, a fresh cluster in a fresh temp dir; that many concurrent clients each
 *     proposing a value of `--value-size` bytes to the leader and waiting for it to be applied there, again
 *     and again. Warm-up first, then a fixed measuring window. Proposals/s and latency (p50/p99/max), and
 *     how many proposals each leader fdatasync carried.
 * Figures are printed as ratios of the anchor. Temp dirs are removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { Entry, EntryType, NodeId, StateType } from '@app/raft';
import { CountingFileOps, Wal, countingFileOps } from '@app/storage';
import { InMemoryHub, REQUEST_HEADER_BYTES, RaftNode, StateMachine } from '@app/raft-node';
import { elapsedUs, filesystemOf, Histogram, latencyHistogram, latencySummary, loadAverage, machineConditions, positiveInt, rate, sleep } from './common.js';

interface RaftBenchOptions {
  duration: number;
  warmup: number;
  valueSize: number;
  inflight: number[];
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  snapshotEvery: number;
  batch: number;
  dir: string;
}

export function raftCommand(): Command {
  return new Command('raft')
    .description('3-node in-process Raft cluster on real WAL files vs. the raw cost of the same storage')
    .addOption(new Option('--duration <s>', 'measuring window per run, seconds').default(5).argParser(positive))
    .addOption(new Option('--warmup <s>', 'warm-up before each measuring window, seconds').default(1).argParser(nonNegative))
    .addOption(new Option('--value-size <bytes>', 'size of each proposed value').default(256).argParser(positiveInt))
    .addOption(new Option('--inflight <list>', 'comma-separated numbers of proposals in flight').default([1, 256]).argParser(intList))
    .addOption(new Option('--tick-ms <ms>', 'RaftNode tick').default(100).argParser(positiveInt))
    .addOption(new Option('--election-ticks <n>', 'election timeout, ticks').default(10).argParser(positiveInt))
    .addOption(new Option('--heartbeat-ticks <n>', 'heartbeat interval, ticks').default(1).argParser(positiveInt))
    .addOption(new Option('--snapshot-every <n>', 'RaftNode snapshotEvery').default(10_000).argParser(positiveInt))
    .addOption(new Option('--batch <n>', 'entries per save in the batched anchor').default(256).argParser(positiveInt))
    .addOption(new Option('--dir <path>', 'parent of the temp data dirs').default(tmpdir()))
    .action(async (o: RaftBenchOptions) => {
      await runRaftBench(o);
    });
}

function positive(v: string): number {
  const n = Number(v);
  if (!(n > 0)) throw new Error(`expected a positive number, got ${v}`);
  return n;
}
function nonNegative(v: string): number {
  const n = Number(v);
  if (!(n >= 0)) throw new Error(`expected a number ≥ 0, got ${v}`);
  return n;
}
function intList(v: string): number[] {
  return v.split(',').map((s) => positiveInt(s.trim()));
}

// ---- instrumentation ---------------------------------------------------------------------------------------


/** Keeps the last 1024 values (by index) and a count; snapshots are a few hundred KiB. */
class BenchStateMachine implements StateMachine {
  count = 0;
  private slots = new Map<number, Uint8Array>();
  apply(e: Entry): unknown {
    this.count++;
    this.slots.set(e.index % 1024, e.data);
    return this.count;
  }
  snapshot(): Uint8Array {
    let size = 8;
    for (const v of this.slots.values()) size += 8 + v.length;
    const out = Buffer.alloc(size);
    out.writeUInt32BE(this.count, 0);
    out.writeUInt32BE(this.slots.size, 4);
    let off = 8;
    for (const [k, v] of this.slots) {
      out.writeUInt32BE(k, off);
      out.writeUInt32BE(v.length, off + 4);
      out.set(v, off + 8);
      off += 8 + v.length;
    }
    return out;
  }
  restore(data: Uint8Array): void {
    const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.count = b.readUInt32BE(0);
    this.slots = new Map();
    let off = 8;
    for (let i = 0; i < b.readUInt32BE(4); i++) {
      const len = b.readUInt32BE(off + 4);
      this.slots.set(b.readUInt32BE(off), Uint8Array.prototype.slice.call(b, off + 8, off + 8 + len));
      off += 8 + len;
    }
  }
}

// ---- anchor ------------------------------------------------------------------------------------------------

interface AnchorResult {
  batch: number;
  saves: number;
  entries: number;
  seconds: number;
  hist: Histogram;
}

/** One writer: wal.save(hardState, `batch` entries, fdatasync) in a loop; warm-up, then the measuring window. */
async function runAnchor(base: string, entryBytes: number, batch: number, o: RaftBenchOptions): Promise<AnchorResult> {
  const dir = await mkdtemp(join(base, `anchor-${batch}-`));
  const { wal } = await Wal.open(dir);
  const data = randomBytes(entryBytes);
  let index = 0;
  const saveOnce = async (): Promise<void> => {
    const ents: Entry[] = [];
    for (let i = 0; i < batch; i++) ents.push({ term: 1, index: ++index, type: EntryType.Normal, data });
    await wal.save({ term: 1, vote: 1, commit: index }, ents, true);
  };
  const hist = latencyHistogram();
  try {
    const warmEnd = performance.now() + o.warmup * 1000;
    while (performance.now() < warmEnd) await saveOnce();
    let saves = 0;
    const t0 = process.hrtime.bigint();
    const end = performance.now() + o.duration * 1000;
    while (performance.now() < end) {
      const s = process.hrtime.bigint();
      await saveOnce();
      hist.recordValue(elapsedUs(s));
      saves++;
    }
    const seconds = elapsedUs(t0) / 1e6;
    return { batch, saves, entries: saves * batch, seconds, hist };
  } finally {
    await wal.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- raft --------------------------------------------------------------------------------------------------

interface RaftResult {
  inflight: number;
  completed: number;
  errors: number;
  seconds: number;
  hist: Histogram;
  leaderSyncs: number;
  leaderChanges: number;
  snapshots: number;
  /** CPU time of this process (all 3 nodes, incl. the kernel time of its file syscalls) over the window, per core. */
  cpu: number;
  /** Share of the window the (single) event loop was busy running JavaScript. */
  elu: number;
  warnings: string[];
}

async function runRaft(base: string, inflight: number, o: RaftBenchOptions): Promise<RaftResult> {
  const dir = await mkdtemp(join(base, `raft-${inflight}-`));
  const hub = new InMemoryHub();
  const ids: NodeId[] = [1, 2, 3];
  const warnings: string[] = [];
  const ops = new Map<NodeId, CountingFileOps>();
  const snapshotsTaken = new Map<NodeId, number>(ids.map((id) => [id, 0]));
  const nodes = ids.map((id) => {
    const fileOps = countingFileOps();
    ops.set(id, fileOps);
    return new RaftNode({
      id,
      peers: ids,
      dataDir: join(dir, `n${id}`),
      tickMs: o.tickMs,
      electionTicks: o.electionTicks,
      heartbeatTicks: o.heartbeatTicks,
      snapshotEvery: o.snapshotEvery,
      transport: hub.transport(id),
      stateMachine: new BenchStateMachine(),
      proposalTimeoutMs: 30_000,
      logger: {
        info: (m) => {
          if (m.startsWith(`[node ${id}] snapshot at `)) snapshotsTaken.set(id, snapshotsTaken.get(id)! + 1);
        },
        warn: (m) => warnings.push(m),
        error: (m) => warnings.push(m),
      },
      wal: { fileOps },
    });
  });
  try {
    await Promise.all(nodes.map((n) => n.start()));
    const leader = await waitForLeader(nodes, 20_000);
    const term = leader.status().term;
    const value = randomBytes(o.valueSize);
    const hist = latencyHistogram();
    let recording = false;
    let stopping = false;
    let completed = 0;
    let errors = 0;
    const worker = async (): Promise<void> => {
      while (!stopping) {
        const s = process.hrtime.bigint();
        try {
          await leader.propose(value);
        } catch {
          errors++;
          await sleep(10);
          continue;
        }
        if (recording) {
          hist.recordValue(elapsedUs(s));
          completed++;
        }
      }
    };
    const workers = Array.from({ length: inflight }, () => worker());
    await sleep(o.warmup * 1000);
    const leaderOps = ops.get(leader.id)!;
    const syncs0 = leaderOps.datasyncs;
    const snaps0 = snapshotsTaken.get(leader.id)!;
    recording = true;
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    await sleep(o.duration * 1000);
    recording = false;
    const seconds = elapsedUs(t0) / 1e6;
    const cpuUsed = process.cpuUsage(cpu0);
    const cpu = (cpuUsed.user + cpuUsed.system) / 1e6 / seconds;
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const leaderSyncs = leaderOps.datasyncs - syncs0;
    const snapshots = snapshotsTaken.get(leader.id)! - snaps0;
    stopping = true;
    await Promise.all(workers);
    const st = leader.status();
    const leaderChanges = st.role === StateType.Leader ? st.term - term : 1;
    return { inflight, completed, errors, seconds, hist, leaderSyncs, leaderChanges, snapshots, cpu, elu, warnings };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

async function waitForLeader(nodes: RaftNode[], timeoutMs: number): Promise<RaftNode> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const l = nodes.find((n) => n.status().role === StateType.Leader);
    if (l && nodes.every((n) => n.status().leader === l.id)) return l;
    if (performance.now() > deadline) throw new Error(`no leader within ${timeoutMs} ms`);
    await sleep(5);
  }
}

// ---- report ------------------------------------------------------------------------------------------------

async function runRaftBench(o: RaftBenchOptions): Promise<void> {
  const base = await mkdtemp(join(o.dir, 'synod-bench-raft-'));
  const entryBytes = REQUEST_HEADER_BYTES + o.valueSize; // what a Raft entry carries
  const out = (s = ''): void => console.log(s);
  try {
    out('# raft benchmark');
    out();
    out('conditions:');
    for (const c of machineConditions()) out(`  ${c}`);
    out(`  data dir: ${base} — ${filesystemOf(base)}; fdatasync on (real WAL, libs/storage)`);
    out(`  value ${o.valueSize} B (Raft entry payload ${entryBytes} B with the driver's ${REQUEST_HEADER_BYTES} B request header)`);
    out(`  cluster: 3 RaftNodes in this one process (one event loop), InMemoryHub transport (setImmediate delivery,`);
    out(`    no serialization), each node its own WAL dir on the same file system; tick ${o.tickMs} ms, election ${o.electionTicks} ticks,`);
    out(`    heartbeat ${o.heartbeatTicks} tick(s), snapshot every ${o.snapshotEvery} entries; proposals go to the leader`);
    out(`  each run: ${o.warmup} s warm-up, then ${o.duration} s measured`);
    out();

    // The anchor is measured before and after the Raft runs; the ratios use the mean of the two, and the
    // difference between them shows how steady the machine was meanwhile.
    const a1 = await runAnchor(base, entryBytes, 1, o);
    const ab = await runAnchor(base, entryBytes, o.batch, o);
    const results: RaftResult[] = [];
    for (const n of o.inflight) results.push(await runRaft(base, n, o));
    const a2 = await runAnchor(base, entryBytes, 1, o);

    const before = a1.saves / a1.seconds;
    const after = a2.saves / a2.seconds;
    const anchor = (before + after) / 2;
    const drift = after / before - 1;
    const batchEntries = ab.entries / ab.seconds;
    out(`anchor A (one fdatasync-per-write writer): wal.save(hard state + 1 entry of ${entryBytes} B, fdatasync) in a loop`);
    out(`  ${rate(anchor)} writes/s = fdatasyncs/s = entries/s (mean of ${rate(before)} before and ${rate(after)} after the Raft runs, ${signedPct(drift)})` +
      (Math.abs(drift) > 0.25 ? ' — the machine was not steady: treat the ratios with care' : ''));
    out(`  per write: before ${latencySummary(a1.hist)}; after ${latencySummary(a2.hist)}`);
    out(`anchor B (batching writer): the same with ${o.batch} entries per wal.save`);
    out(`  ${rate(ab.saves / ab.seconds)} fdatasyncs/s, ${rate(batchEntries)} entries/s = ${(batchEntries / anchor).toFixed(1)} × A; per write ${latencySummary(ab.hist)}`);
    out();

    for (const r of results) {
      const n = r.inflight;
      const tput = r.completed / r.seconds;
      out(`raft, ${n} in flight: ${rate(tput)} proposals/s = ${(tput / anchor).toFixed(2)} × one fdatasync-per-write writer (A)` +
        (n > 1 ? ` = ${(tput / batchEntries).toFixed(3)} × the batching writer (B)` : ''));
      out(`  latency ${latencySummary(r.hist)}; p50 = ${(r.hist.getValueAtPercentile(50) / a1.hist.getValueAtPercentile(50)).toFixed(1)} × A's p50 per write`);
      const perSync = r.leaderSyncs > 0 ? r.completed / r.leaderSyncs : 0;
      out(
        `  leader: ${rate(r.leaderSyncs / r.seconds)} fdatasyncs/s (${(r.leaderSyncs / r.seconds / anchor).toFixed(2)} × A), ${perSync.toFixed(1)} proposals per fdatasync; ` +
          `${r.completed} proposals in ${r.seconds.toFixed(2)} s, ${r.errors} errors, ${r.leaderChanges} leader changes, ${r.snapshots} snapshots taken by the leader; ` +
          `event loop busy ${(r.elu * 100).toFixed(0)}%, process CPU (incl. kernel time of file syscalls) ${(r.cpu * 100).toFixed(0)}% of one core`,
      );
      if (r.warnings.length > 0) out(`  warnings (${r.warnings.length}): ${r.warnings.slice(0, 3).join(' | ')}`);
    }
    out();
    out(`at the end: ${loadAverage()}`);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

function signedPct(x: number): string {
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(0)}%`;
}
