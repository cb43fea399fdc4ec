/**
 * `npm run bench -- memory`: memory per member, 3-member Synod vs. 3-member etcd 3.4 (the anchor), both on
 * 127.0.0.1 in the same run, idle and after writing the same N distinct keys of the same value size.
 *
 * Per member: the resident set (VmRSS, and the peak VmHWM) of the member's own process, read from
 * /proc/<pid>/status — the pid is the process spawned by the harness (Synod: `node --import tsx main.ts`,
 * no wrapper; etcd: the `etcd` binary), checked against /proc/<pid>/cmdline, and any child process is
 * reported — and the size of its data dir (apparent bytes and allocated blocks).
 *
 * Sequence: start both clusters; wait `--settle` s; idle RSS of all six members. Then for Synod, then for etcd:
 * write `--keys` keys /bench/k000000.. with `--value-size`-byte random values (Synod: Create PERSISTENT under
 * /bench, created first; etcd: Put), `--inflight` calls in flight through one RawClient to the leader; wait
 * until every member has applied everything (Status applied index, and the key count on every member); wait
 * `--settle` s (no forced GC); read RSS and data dirs. A final reading of all six at the end shows the drift.
 *
 * Synod requests carry a RequestHeader: each of the `--inflight` workers is one client id with its own
 * increasing seq (as libs/client does), so the tree's retry table holds `--inflight` records, not one per
 * write. Figures as ratios Synod ÷ etcd; last line: one JSON object.
 */
import { randomBytes } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { loadConsensusProto } from '@app/proto';
import { loadAverage, machineConditions, positiveInt, rate, sleep } from './common.js';
import {
  ETCD_PUT,
  ETCD_RANGE,
  EtcdCluster,
  RawClient,
  SynodCluster,
  etcdPut,
  etcdVersion,
  installSignalCleanup,
  pbBytes,
  pbDecode,
  pbNum,
  pbVarint,
} from './clusters.js';

interface MemoryOptions {
  keys: number;
  valueSize: number;
  inflight: number;
  settle: number;
  timeout: number;
  synodArgs: string;
}

export function memoryCommand(): Command {
  return new Command('memory')
    .description('memory per member (RSS idle and with N keys, data dir size): 3-member Synod vs. 3-member etcd 3.4')
    .addOption(new Option('--keys <n>', 'distinct keys written into each cluster').default(100_000).argParser(positiveInt))
    .addOption(new Option('--value-size <bytes>', 'value size').default(256).argParser(positiveInt))
    .addOption(new Option('--inflight <n>', 'calls in flight while writing').default(64).argParser(positiveInt))
    .addOption(new Option('--settle <s>', 'seconds to wait before each RSS reading (no GC is forced)').default(5).argParser(positiveInt))
    .addOption(new Option('--timeout <s>', 'give up if the whole run takes longer').default(600).argParser(positiveInt))
    .addOption(new Option('--synod-args <flags>', 'extra flags for every Synod member (space-separated)').default(''))
    .action(async (o: MemoryOptions) => {
      installSignalCleanup();
      await runMemory(o);
    });
}


// ---- /proc and the file system ------------------------------------------------------------------------------

interface ProcMem {
  pid: number;
  rssKiB: number;
  hwmKiB: number;
  /** The member process's own children (there should be none). */
  children: number[];
  childrenRssKiB: number;
}

async function statusField(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(m[1]);
}

async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const c of text.trim().split(/\s+/)) if (c) out.push(Number(c));
  }
  return out;
}

async function procMem(pid: number): Promise<ProcMem> {
  const children = await childrenOf(pid);
  let childrenRssKiB = 0;
  for (const c of children) childrenRssKiB += await statusField(c, 'VmRSS').catch(() => 0);
  return { pid, rssKiB: await statusField(pid, 'VmRSS'), hwmKiB: await statusField(pid, 'VmHWM'), children, childrenRssKiB };
}

/** Checks that `pid` is the member itself (its executable and command line), not a wrapper; returns a description. */
async function checkMemberProcess(pid: number, exeName: string, argMustContain: string): Promise<string> {
  const exe = await readlink(`/proc/${pid}/exe`);
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((a) => a.length > 0);
  if (!exe.endsWith(`/${exeName}`)) throw new Error(`pid ${pid} runs ${exe}, expected a ${exeName} binary`);
  if (!argv.some((a) => a.includes(argMustContain))) throw new Error(`pid ${pid} (${argv.join(' ')}) does not look like the member (${argMustContain})`);
  const kids = await childrenOf(pid);
  return `${exe} ${argv.slice(1, 4).join(' ')} …${kids.length ? ` (children: ${kids.join(', ')})` : ''}`;
}

interface DirSize {
  apparent: number;
  allocated: number;
  files: number;
}

async function dirSize(dir: string): Promise<DirSize> {
  const out: DirSize = { apparent: 0, allocated: 0, files: 0 };
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 20) return;
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      const st = await lstat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await walk(p, depth + 1);
      else {
        out.apparent += st.size;
        out.allocated += st.blocks * 512;
        out.files++;
      }
    }
  };
  await walk(dir, 0);
  return out;
}

// ---- writing ------------------------------------------------------------------------------------------------

const keyOf = (i: number): string => `/bench/k${String(i).padStart(6, '0')}`;

interface WriteStats {
  seconds: number;
  retries: number;
}

/**
 * `inflight` workers take the next key index until `n`; worker w builds its request with `body(i, w, seq)`
 * (seq = 1, 2, … per worker). A failed call is retried at most 3 times with the same body.
 */
async function writeAll(
  client: RawClient,
  method: string,
  n: number,
  inflight: number,
  body: (i: number, worker: number, seq: number) => Buffer,
  acceptError: (e: { code?: number; details?: string }) => boolean,
  deadline: number,
  progress: (done: number) => void,
): Promise<WriteStats> {
  let next = 0;
  let done = 0;
  let retries = 0;
  const t0 = process.hrtime.bigint();
  const worker = async (w: number): Promise<void> => {
    let seq = 0;
    for (;;) {
      const i = next++;
      if (i >= n) return;
      if (Date.now() > deadline) throw new Error(`writing took longer than --timeout (${done} of ${n} written)`);
      const b = body(i, w, ++seq);
      for (let attempt = 1; ; attempt++) {
        try {
          await client.call(method, b, 10_000);
          break;
        } catch (err) {
          const e = err as { code?: number; details?: string };
          if (attempt > 1 && acceptError(e)) break;
          if (attempt >= 4) throw new Error(`${method} of ${keyOf(i)} failed 4 times: ${e.details ?? String(err)}`);
          retries++;
          await sleep(100 * attempt);
        }
      }
      if (++done % 10_000 === 0) progress(done);
    }
  };
  await Promise.all(Array.from({ length: inflight }, (_, w) => worker(w)));
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, retries };
}

// ---- etcd messages used here (etcdserverpb, etcd 3.4 rpc.proto) ---------------------------------------------

/** RangeRequest {key = 1, range_end = 2, serializable = 7, count_only = 9}: the member's own count of a prefix. */
const etcdCountPrefix = (prefix: string): Buffer => {
  const end = Buffer.from(prefix, 'utf8');
  end[end.length - 1]++;
  return Buffer.concat([pbBytes(1, prefix), pbBytes(2, end), pbVarint(7, 1), pbVarint(9, 1)]);
};

// ---- the benchmark ------------------------------------------------------------------------------------------

interface Reading {
  system: 'synod' | 'etcd';
  id: number;
  leader: boolean;
  idle: ProcMem;
  loaded?: ProcMem;
  final?: ProcMem;
  dataIdle?: DirSize;
  dataLoaded?: DirSize;
  heapUsedIdle?: number;
  heapUsedLoaded?: number;
}

const MiB = 2 ** 20;
const mib = (kib: number): string => (kib / 1024).toFixed(1);
const mean = (xs: number[]): number => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);

/** nodejs_heap_size_used_bytes from a Synod member's /metrics (prom-client default metrics), or undefined. */
async function heapUsed(url: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(3000) })).text();
    const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function runMemory(o: MemoryOptions): Promise<void> {
  const out = (s = ''): void => console.log(s);
  const t0 = Date.now();
  const deadline = t0 + o.timeout * 1000;
  const synodArgs = o.synodArgs.trim() === '' ? [] : o.synodArgs.trim().split(/\s+/);
  const synod = new SynodCluster(synodArgs);
  const etcd = new EtcdCluster();
  const clients: RawClient[] = [];
  const value = randomBytes(o.valueSize);
  const keyBytes = keyOf(0).length;
  try {
    out('# memory benchmark: Synod vs. etcd (anchor), RSS per member idle and with N keys, same run');
    out();
    out('conditions:');
    for (const c of machineConditions()) out(`  ${c}`);
    out(`  ${await etcdVersion()}`);
    out(`  Synod: 3 processes (node --import tsx apps/consensus/src/main.ts), flags: ${synodArgs.length ? synodArgs.join(' ') : 'defaults (tick 10 ms, heartbeat 100 ms, election 1000 ms, snapshot-count 10000, watch-history 10000)'}`);
    out('  etcd: 3 processes, defaults (heartbeat 100 ms, election 1000 ms, snapshot-count 100000, no auto-compaction); both on 127.0.0.1, data in os.tmpdir()');
    out(`  ${rate(o.keys)} distinct keys (${keyBytes}-byte paths /bench/k000000..) × ${o.valueSize}-byte values (payload ${((o.keys * (keyBytes + o.valueSize)) / MiB).toFixed(1)} MiB), ${o.inflight} calls in flight to the leader`);
    out(`  Synod: Create PERSISTENT under /bench, each of the ${o.inflight} workers one client id with increasing seq (RequestHeader); etcd: Put`);
    out(`  RSS = VmRSS of /proc/<member pid>/status, read ${o.settle} s after start / after every member applied the last write; no GC forced`);
    out();

    await Promise.all([synod.start(), etcd.start()]);
    const sLeader = await synod.leader();
    const eLeader = await etcd.leader();

    type MemberRef = Pick<Reading, 'system' | 'id' | 'leader'>;
    const members: MemberRef[] = [];
    for (const id of synod.ids) {
      const pid = synod.pid(id)!;
      out(`synod member ${id}${id === sLeader ? ' (leader)' : ''}: pid ${pid} = ${await checkMemberProcess(pid, 'node', 'main.ts')}`);
      members.push({ system: 'synod', id, leader: id === sLeader });
    }
    for (const id of etcd.ids) {
      const pid = etcd.pid(id)!;
      out(`etcd  member ${id}${id === eLeader ? ' (leader)' : ''}: pid ${pid} = ${await checkMemberProcess(pid, 'etcd', '--data-dir')}`);
      members.push({ system: 'etcd', id, leader: id === eLeader });
    }
    const pidOf = (r: MemberRef): number => (r.system === 'synod' ? synod.pid(r.id)! : etcd.pid(r.id)!);
    const dataDirOf = (r: MemberRef): string => (r.system === 'synod' ? synod.pc.members.get(r.id)!.dataDir : etcd.members.get(r.id)!.dataDir);

    await sleep(o.settle * 1000);
    const readings: Reading[] = [];
    for (const m of members) {
      readings.push({
        ...m,
        idle: await procMem(pidOf(m)),
        dataIdle: await dirSize(dataDirOf(m)),
        heapUsedIdle: m.system === 'synod' ? await heapUsed(synod.metricsUrl(m.id)) : undefined,
      });
    }
    const of = (sys: Reading['system']): Reading[] => readings.filter((r) => r.system === sys);
    out(`idle readings taken (${loadAverage()})`);

    // ---- Synod ----
    const svc = loadConsensusProto().Coordination.service;
    const sc = new RawClient(synod.clientAddress(sLeader));
    clients.push(sc);
    await sc.call(svc.Create.path, svc.Create.requestSerialize({ path: '/bench', data: Buffer.alloc(0), mode: 'PERSISTENT' }), 5000);
    const runId = `${process.pid}.${Date.now()}`;
    const sw = await writeAll(
      sc,
      svc.Create.path,
      o.keys,
      o.inflight,
      (i, w, seq) => svc.Create.requestSerialize({ path: keyOf(i), data: value, mode: 'PERSISTENT', request: { clientId: `memory-bench-${runId}-w${w}`, seq } }),
      (e) => e.code === 6 /* ALREADY_EXISTS: an earlier attempt was applied */,
      deadline,
      (d) => process.stderr.write(`  synod: ${d} written\r`),
    );
    out(`synod: ${rate(o.keys)} Creates in ${sw.seconds.toFixed(1)} s (${rate(o.keys / sw.seconds)}/s, ${sw.retries} retries; ${loadAverage()})`);
    const sTarget = (await synod.pc.status(sLeader)).commitIndex as number;
    await waitUntil('every Synod member applied the last write and holds every node', deadline, async () => {
      const st = await Promise.all(synod.ids.map((id) => synod.pc.status(id, 2000)));
      return st.every((s) => (s.appliedIndex as number) >= sTarget && (s.nodeCount as number) >= o.keys + 1);
    });
    const sNodes = await Promise.all(synod.ids.map(async (id) => (await synod.pc.status(id)).nodeCount as number));
    out(`synod: every member applied index ${sTarget}; node counts ${sNodes.join(', ')}`);
    await sleep(o.settle * 1000);
    for (const r of of('synod')) {
      r.loaded = await procMem(pidOf(r));
      r.dataLoaded = await dirSize(dataDirOf(r));
      r.heapUsedLoaded = await heapUsed(synod.metricsUrl(r.id));
    }
    out(`synod: loaded readings taken (${loadAverage()})`);

    // ---- etcd ----
    const ec = new RawClient(etcd.clientAddress(eLeader));
    clients.push(ec);
    const ew = await writeAll(
      ec,
      ETCD_PUT,
      o.keys,
      o.inflight,
      (i) => etcdPut(keyOf(i), value),
      () => false,
      deadline,
      (d) => process.stderr.write(`  etcd: ${d} written\r`),
    );
    out(`etcd:  ${rate(o.keys)} Puts in ${ew.seconds.toFixed(1)} s (${rate(o.keys / ew.seconds)}/s, ${ew.retries} retries; ${loadAverage()})`);
    const eTarget = (await etcd.status(eLeader, 2000)).raftIndex;
    const countBody = etcdCountPrefix('/bench/');
    const etcdCount = async (id: number): Promise<number> => {
      const c = new RawClient(etcd.clientAddress(id));
      try {
        return pbNum(pbDecode(await c.call(ETCD_RANGE, countBody, 5000)), 4);
      } finally {
        c.close();
      }
    };
    await waitUntil('every etcd member applied the last write and holds every key', deadline, async () => {
      const st = await Promise.all(etcd.ids.map((id) => etcd.status(id, 2000)));
      if (!st.every((s) => s.raftAppliedIndex >= eTarget)) return false;
      const counts = await Promise.all(etcd.ids.map(etcdCount));
      return counts.every((c) => c >= o.keys);
    });
    const eCounts = await Promise.all(etcd.ids.map(etcdCount));
    out(`etcd:  every member applied raft index ${eTarget}; key counts ${eCounts.join(', ')}`);
    await sleep(o.settle * 1000);
    for (const r of of('etcd')) {
      r.loaded = await procMem(pidOf(r));
      r.dataLoaded = await dirSize(dataDirOf(r));
    }
    out(`etcd:  loaded readings taken (${loadAverage()})`);

    // ---- a last reading of all six (drift) ----
    for (const r of readings) r.final = await procMem(pidOf(r));
    out(`final readings taken (${loadAverage()})`);

    // ---- report ----
    out();
    out('| member | pid | RSS idle MiB | RSS loaded MiB | growth B/key | peak RSS MiB | RSS final MiB | data dir idle MiB | data dir loaded MiB (allocated) | V8 heap used idle → loaded MiB |');
    out('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of readings) {
      const growth = ((r.loaded!.rssKiB - r.idle.rssKiB) * 1024) / o.keys;
      const heap = r.heapUsedIdle !== undefined && r.heapUsedLoaded !== undefined ? `${(r.heapUsedIdle / MiB).toFixed(1)} → ${(r.heapUsedLoaded / MiB).toFixed(1)}` : '–';
      out(
        `| ${r.system} ${r.id}${r.leader ? ' (leader)' : ''} | ${r.idle.pid} | ${mib(r.idle.rssKiB)} | ${mib(r.loaded!.rssKiB)} | ${rate(growth)} | ${mib(r.loaded!.hwmKiB)} | ${mib(r.final!.rssKiB)} | ` +
          `${(r.dataIdle!.apparent / MiB).toFixed(1)} | ${(r.dataLoaded!.apparent / MiB).toFixed(1)} (${(r.dataLoaded!.allocated / MiB).toFixed(1)}) | ${heap} |`,
      );
      if (r.loaded!.children.length) out(`  WARNING: ${r.system} ${r.id} has child processes ${r.loaded!.children.join(', ')} (${mib(r.loaded!.childrenRssKiB)} MiB RSS, not counted above)`);
    }
    const agg = (sys: Reading['system']) => {
      const rs = of(sys);
      return {
        idle: mean(rs.map((r) => r.idle.rssKiB)) / 1024,
        loaded: mean(rs.map((r) => r.loaded!.rssKiB)) / 1024,
        final: mean(rs.map((r) => r.final!.rssKiB)) / 1024,
        peak: mean(rs.map((r) => r.loaded!.hwmKiB)) / 1024,
        growth: mean(rs.map((r) => ((r.loaded!.rssKiB - r.idle.rssKiB) * 1024) / o.keys)),
        leaderLoaded: rs.find((r) => r.leader)!.loaded!.rssKiB / 1024,
        data: mean(rs.map((r) => r.dataLoaded!.apparent)) / MiB,
        dataAllocated: mean(rs.map((r) => r.dataLoaded!.allocated)) / MiB,
      };
    };
    const s = agg('synod');
    const e = agg('etcd');
    const payloadPerKey = keyBytes + o.valueSize;
    out();
    out('| per member (mean of 3) | Synod | etcd (anchor) | Synod ÷ etcd |');
    out('|---|---|---|---|');
    const row = (what: string, a: number, b: number, unit: string, d = 1): void =>
      out(`| ${what} | ${a.toFixed(d)} ${unit} | ${b.toFixed(d)} ${unit} | ${(a / b).toFixed(2)} |`);
    row('RSS idle', s.idle, e.idle, 'MiB');
    row(`RSS with ${rate(o.keys)} keys`, s.loaded, e.loaded, 'MiB');
    row('RSS growth per key', s.growth, e.growth, 'B', 0);
    row('RSS of the leader with the keys', s.leaderLoaded, e.leaderLoaded, 'MiB');
    row('peak RSS (VmHWM) by then', s.peak, e.peak, 'MiB');
    row('RSS at the end of the run', s.final, e.final, 'MiB');
    row('data dir with the keys (apparent)', s.data, e.data, 'MiB');
    row('data dir with the keys (allocated)', s.dataAllocated, e.dataAllocated, 'MiB');
    out(`RSS growth per key ÷ payload per key (${payloadPerKey} B: key + value): Synod ${(s.growth / payloadPerKey).toFixed(2)}, etcd ${(e.growth / payloadPerKey).toFixed(2)}`);
    out(`at the end: ${loadAverage()}; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const r3 = (x: number): number => Math.round(x * 1000) / 1000;
    out(
      JSON.stringify({
        keys: o.keys,
        value_size: o.valueSize,
        synod_rss_mib: r3(s.loaded),
        etcd_rss_mib: r3(e.loaded),
        ratio_rss_100k: r3(s.loaded / e.loaded),
        synod_idle_rss_mib: r3(s.idle),
        etcd_idle_rss_mib: r3(e.idle),
        ratio_rss_idle: r3(s.idle / e.idle),
        synod_growth_bytes_per_key: Math.round(s.growth),
        etcd_growth_bytes_per_key: Math.round(e.growth),
        ratio_growth_per_key: r3(s.growth / e.growth),
        synod_data_dir_mib: r3(s.data),
        etcd_data_dir_mib: r3(e.data),
        ratio_data_dir: r3(s.data / e.data),
        synod_write_s: r3(sw.seconds),
        etcd_write_s: r3(ew.seconds),
      }),
    );
  } finally {
    for (const c of clients) c.close();
    await Promise.allSettled([synod.stop(), etcd.stop()]);
  }
}

async function waitUntil(what: string, deadline: number, f: () => Promise<boolean>): Promise<void> {
  const end = Math.min(deadline, Date.now() + 120_000);
  for (;;) {
    try {
      if (await f()) return;
    } catch {
      // retry
    }
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(200);
  }
}
