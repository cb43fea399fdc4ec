/**
 * `npm run bench -- kv`: a 3-member Synod cluster vs. a 3-member etcd cluster on 127.0.0.1, driven by the SAME
 * load generator (h2load, pre-encoded gRPC requests POSTed as the body) in the same run; figures as ratios
 * Synod ÷ etcd.
 *
 * Runs (connections × streams per connection): unary writes at 1×1 (to the leader), 16×1 and 64×16, and
 * linearizable reads at 64×16 — Synod `Coordination/Set` (version -1) and `Get` (default LINEARIZABLE), etcd
 * `KV/Put` and `KV/Range` (default linearizable); 256-byte values on one key. Multi-connection runs start one
 * h2load per member with a third of the connections (h2load takes one authority per process).
 *
 * h2load counts any HTTP 200 as a success, even when the gRPC status in the trailers is an error, so every
 * run is checked: grpc_server_handled_total by grpc_code on every member (before/after), and for writes the
 * key's version read back (each applied Set/Put increments it by one).
 * Last line: one JSON object with the ratios.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command, Option } from 'commander';
import { loadConsensusProto } from '@app/proto';
import { loadAverage, machineConditions, positiveInt, rate, sleep } from './common.js';
import {
  ETCD_PUT,
  ETCD_RANGE,
  EtcdCluster,
  RawClient,
  SynodCluster,
  diffCodes,
  etcdPut,
  etcdRange,
  etcdRangeVersion,
  etcdVersion,
  grpcFrame,
  h2loadVersion,
  handledByCode,
  installSignalCleanup,
  sumCodes,
} from './clusters.js';

interface KvOptions {
  duration: number;
  warmup: number;
  valueSize: number;
  synodArgs: string;
}

export function kvCommand(): Command {
  return new Command('kv')
    .description('3-member Synod vs. 3-member etcd 3.4 on loopback, both driven by h2load (Set/Put, Get/Range)')
    .addOption(new Option('--duration <s>', 'target seconds per measured run: h2load -n (warm-up rate × this), so every call completes').default(10).argParser(positiveInt))
    .addOption(new Option('--warmup <s>', 'h2load -D run of the same shape before each measured run, not counted; calibrates -n').default(2).argParser(positiveInt))
    .addOption(new Option('--value-size <bytes>', 'value size').default(256).argParser(positiveInt))
    .addOption(new Option('--synod-args <flags>', 'extra flags for every Synod member (space-separated), e.g. "--heartbeat-ms 50"').default(''))
    .action(async (o: KvOptions) => {
      installSignalCleanup();
      await runKv(o);
    });
}


// ---- h2load -------------------------------------------------------------------------------------------------

interface H2Result {
  seconds: number;
  succeeded: number;
  /** failed + errored + timeout + non-2xx. */
  httpErrors: number;
  meanUs: number;
  raw: string;
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1000, s: 1_000_000 };

function parseH2load(out: string): H2Result {
  const fin = /finished in ([\d.]+)(us|ms|s),/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const t = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  if (!fin || !req || !codes) throw new Error(`cannot parse h2load output:\n${out}`);
  const succeeded = Number(req[4]);
  return {
    seconds: (Number(fin[1]) * UNIT_US[fin[2]]) / 1e6,
    succeeded,
    httpErrors: Number(req[5]) + Number(req[6]) + Number(req[7]) + Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    meanUs: t ? Number(t[5]) * UNIT_US[t[6]] : NaN,
    raw: out,
  };
}

/**
 * One h2load process: `-D seconds` (timing-based, in-flight calls are reset at the end) or `-n requests`
 * (every request completes); killed by pid if it runs longer than `limitS`.
 */
function h2load(url: string, bodyFile: string, conns: number, streams: number, load: { seconds: number } | { requests: number }, limitS: number): Promise<H2Result> {
  const amount = 'seconds' in load ? ['-D', String(load.seconds)] : ['-n', String(load.requests)];
  const args = [...amount, '-c', String(conns), '-m', String(streams), '-t', '1', '-d', bodyFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers', url];
  return new Promise((res, rej) => {
    const p = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const kill = (): void => {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) process.kill(p.pid, 'SIGKILL');
    };
    const timer = setTimeout(kill, limitS * 1000);
    process.once('SIGINT', kill);
    process.once('SIGTERM', kill);
    const done = (): void => {
      clearTimeout(timer);
      process.off('SIGINT', kill);
      process.off('SIGTERM', kill);
    };
    p.once('error', (e) => {
      done();
      rej(e);
    });
    p.once('exit', (code, sig) => {
      done();
      try {
        res(parseH2load(out));
      } catch (e) {
        rej(new Error(`h2load exited ${code ?? sig}: ${(e as Error).message}`));
      }
    });
  });
}

/** Splits `total` connections over `n` endpoints: 64 over 3 → 22, 21, 21. */
function split(total: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0)).filter((x) => x > 0);
}

// ---- one system under test ----------------------------------------------------------------------------------

interface System {
  name: string;
  /** Client addresses, the leader first. */
  endpoints(): Promise<string[]>;
  metricsUrls(): string[];
  /** The gRPC method name in grpc_server_handled_total for writes / reads. */
  writeMethod: string;
  readMethod: string;
  writePath: string;
  readPath: string;
  writeBody: string;
  readBody: string;
  /** The key's version (incremented by every applied write). */
  version(): Promise<number>;
}

interface RunSpec {
  label: string;
  kind: 'put' | 'get';
  conns: number;
  streams: number;
  spread: boolean;
}

interface RunResult {
  spec: RunSpec;
  system: string;
  throughput: number;
  meanUs: number;
  succeeded: number;
  httpErrors: number;
  grpcCodes: Map<string, number>;
  grpcErrors: number;
  versionDelta?: number;
  endpoints: string[];
  warnings: string[];
}

async function runOne(sys: System, spec: RunSpec, o: KvOptions): Promise<RunResult> {
  const eps = await sys.endpoints();
  const targets = spec.spread ? eps : [eps[0]];
  const shares = split(spec.conns, targets.length);
  const path = spec.kind === 'put' ? sys.writePath : sys.readPath;
  const body = spec.kind === 'put' ? sys.writeBody : sys.readBody;
  const method = spec.kind === 'put' ? sys.writeMethod : sys.readMethod;
  // Warm-up with -D: it also calibrates the request count of the measured run, which uses -n so that every
  // request completes (no calls reset at the end) and the gRPC checks below can be exact.
  const warm = await Promise.all(shares.map((c, i) => h2load(`http://${targets[i]}${path}`, body, c, spec.streams, { seconds: o.warmup }, o.warmup + 30)));
  const warmRate = warm.reduce((a, r) => a + r.succeeded, 0) / Math.max(...warm.map((r) => r.seconds));
  const total = Math.min(5_000_000, Math.max(spec.conns * spec.streams * 4, Math.round(warmRate * o.duration)));
  await sleep(1000); // calls reset at the end of the warm-up finish on the members
  const codes0 = await Promise.all(sys.metricsUrls().map((u) => handledByCode(u, method)));
  const v0 = spec.kind === 'put' ? await sys.version() : 0;
  const rs = await Promise.all(
    shares.map((c, i) => h2load(`http://${targets[i]}${path}`, body, c, spec.streams, { requests: Math.round((total * c) / spec.conns) }, o.duration * 4 + 30)),
  );
  await sleep(300);
  const codes1 = await Promise.all(sys.metricsUrls().map((u) => handledByCode(u, method)));
  const v1 = spec.kind === 'put' ? await sys.version() : 0;
  const grpcCodes = sumCodes(codes1.map((c, i) => diffCodes(c, codes0[i])));
  const succeeded = rs.reduce((a, r) => a + r.succeeded, 0);
  const seconds = Math.max(...rs.map((r) => r.seconds));
  const meanUs = rs.reduce((a, r) => a + r.meanUs * r.succeeded, 0) / Math.max(1, succeeded);
  const httpErrors = rs.reduce((a, r) => a + r.httpErrors, 0);
  let grpcErrors = 0;
  for (const [k, v] of grpcCodes) if (k !== 'OK') grpcErrors += v;
  const warnings: string[] = [];
  const ok = grpcCodes.get('OK') ?? 0;
  if (grpcErrors > 0) warnings.push(`${grpcErrors} calls ended with a non-OK grpc-status (${[...grpcCodes].map(([k, v]) => `${k} ${v}`).join(', ')}) although h2load saw HTTP 200`);
  if (ok !== succeeded) warnings.push(`h2load counted ${succeeded} successes but the members answered ${ok} calls with grpc-status OK`);
  let versionDelta: number | undefined;
  if (spec.kind === 'put') {
    versionDelta = v1 - v0;
    if (versionDelta !== succeeded) warnings.push(`WRITE COUNT MISMATCH: the key's version grew by ${versionDelta}, h2load counted ${succeeded} successful writes`);
  }
  return { spec, system: sys.name, throughput: succeeded / seconds, meanUs, succeeded, httpErrors, grpcCodes, grpcErrors, versionDelta, endpoints: targets, warnings };
}

// ---- the benchmark ------------------------------------------------------------------------------------------

const KEY = 'bench';

async function runKv(o: KvOptions): Promise<void> {
  const out = (s = ''): void => console.log(s);
  const t0 = Date.now();
  const value = randomBytes(o.valueSize);
  const synodArgs = o.synodArgs.trim() === '' ? [] : o.synodArgs.trim().split(/\s+/);
  const synod = new SynodCluster(synodArgs);
  const etcd = new EtcdCluster();
  const bodies = await mkdtemp(join(tmpdir(), 'synod-bench-kv-'));
  const clients: RawClient[] = [];
  try {
    out('# kv benchmark: Synod vs. etcd, same load generator (h2load), same run');
    out();
    out('conditions:');
    for (const c of machineConditions()) out(`  ${c}`);
    out(`  ${await etcdVersion()}; ${await h2loadVersion()}`);
    out(`  Synod: 3 processes (node --import tsx apps/consensus/src/main.ts), flags: ${synodArgs.length ? synodArgs.join(' ') : 'defaults (tick 10 ms, heartbeat 100 ms, election 1000 ms)'}`);
    out('  etcd: 3 processes, defaults (heartbeat 100 ms, election 1000 ms, snapshot-count 100000); both on 127.0.0.1, data in os.tmpdir()');
    out(`  value ${o.valueSize} B on one key; per run ${o.warmup} s warm-up (same shape, not counted), then ≈ ${o.duration} s measured (h2load -n = warm-up rate × ${o.duration} s; every call completes)`);
    out();

    await Promise.all([synod.start(), etcd.start()]);

    // ---- Synod bodies (serialized by grpc-js with the real schema) ----
    const svc = loadConsensusProto().Coordination.service;
    const synodSet = svc.Set.requestSerialize({ path: `/${KEY}`, data: value, version: -1 });
    const synodGet = svc.Get.requestSerialize({ path: `/${KEY}` });
    const synodCreate = svc.Create.requestSerialize({ path: `/${KEY}`, data: value });
    const sLeader = await synod.leader();
    const sc = new RawClient(synod.clientAddress(sLeader));
    clients.push(sc);
    await sc.call(svc.Create.path, synodCreate, 5000);
    const synodVersion = async (): Promise<number> => {
      const l = await synod.leader();
      const c = new RawClient(synod.clientAddress(l));
      try {
        const r = svc.Get.responseDeserialize(await c.call(svc.Get.path, synodGet, 5000)) as { stat: { version: number } };
        return r.stat.version;
      } finally {
        c.close();
      }
    };
    // one-off check that the exact bodies h2load will send succeed with grpc-status 0
    await sc.call(svc.Set.path, synodSet, 5000);
    await sc.call(svc.Get.path, synodGet, 5000);

    // ---- etcd bodies (hand-encoded etcdserverpb) ----
    const eLeader = await etcd.leader();
    const ec = new RawClient(etcd.clientAddress(eLeader));
    clients.push(ec);
    const put = etcdPut(KEY, value);
    const range = etcdRange(KEY);
    await ec.call(ETCD_PUT, put, 5000);
    await ec.call(ETCD_PUT, put, 5000);
    const ev = etcdRangeVersion(await ec.call(ETCD_RANGE, range, 5000));
    if (ev !== 2) throw new Error(`etcd: expected version 2 after two puts, read ${ev}: the hand-encoded messages are wrong`);
    const etcdVersionOf = async (): Promise<number> => {
      const l = await etcd.leader();
      const c = new RawClient(etcd.clientAddress(l));
      try {
        return etcdRangeVersion(await c.call(ETCD_RANGE, range, 5000));
      } finally {
        c.close();
      }
    };

    const file = async (name: string, msg: Buffer): Promise<string> => {
      const p = join(bodies, name);
      await writeFile(p, grpcFrame(msg));
      return p;
    };
    const leaderFirst = (ids: number[], leader: number, addr: (id: number) => string): string[] =>
      [leader, ...ids.filter((i) => i !== leader)].map(addr);

    const systems: System[] = [
      {
        name: 'synod',
        endpoints: async () => leaderFirst(synod.ids, await synod.leader(), (i) => synod.clientAddress(i)),
        metricsUrls: () => synod.ids.map((i) => synod.metricsUrl(i)),
        writeMethod: 'Set',
        readMethod: 'Get',
        writePath: svc.Set.path,
        readPath: svc.Get.path,
        writeBody: await file('synod-set.bin', synodSet),
        readBody: await file('synod-get.bin', synodGet),
        version: synodVersion,
      },
      {
        name: 'etcd',
        endpoints: async () => leaderFirst(etcd.ids, await etcd.leader(), (i) => etcd.clientAddress(i)),
        metricsUrls: () => etcd.ids.map((i) => etcd.metricsUrl(i)),
        writeMethod: 'Put',
        readMethod: 'Range',
        writePath: ETCD_PUT,
        readPath: ETCD_RANGE,
        writeBody: await file('etcd-put.bin', put),
        readBody: await file('etcd-range.bin', range),
        version: etcdVersionOf,
      },
    ];

    const specs: RunSpec[] = [
      { label: 'put 1x1', kind: 'put', conns: 1, streams: 1, spread: false },
      { label: 'put 16x1', kind: 'put', conns: 16, streams: 1, spread: true },
      { label: 'put 64x16', kind: 'put', conns: 64, streams: 16, spread: true },
      { label: 'get 64x16', kind: 'get', conns: 64, streams: 16, spread: true },
    ];

    const results: RunResult[] = [];
    for (const spec of specs) {
      for (const sys of systems) {
        const r = await runOne(sys, spec, o);
        results.push(r);
        out(`${sys.name.padEnd(5)} ${spec.label.padEnd(9)}: ${rate(r.throughput).padStart(7)}/s, mean ${(r.meanUs / 1000).toFixed(2)} ms, ${r.succeeded} ok (h2load), ${r.httpErrors} HTTP errors, ${r.grpcErrors} gRPC errors` +
          (r.versionDelta !== undefined ? `, version +${r.versionDelta}` : '') + `  [${r.endpoints.length === 1 ? 'leader only' : `${r.endpoints.length} members`}] (${loadAverage()})`);
        for (const w of r.warnings) out(`  WARNING: ${w}`);
      }
    }

    out();
    out('| run | Synod /s | Synod mean | Synod errors | etcd /s | etcd mean | etcd errors | Synod ÷ etcd (throughput) |');
    out('|---|---|---|---|---|---|---|---|');
    const json: Record<string, number | string> = {};
    for (const spec of specs) {
      const s = results.find((r) => r.spec === spec && r.system === 'synod')!;
      const e = results.find((r) => r.spec === spec && r.system === 'etcd')!;
      const ratio = s.throughput / e.throughput;
      const key = spec.label.replace(' ', '_');
      json[`ratio_${key}`] = round(ratio, 3);
      json[`latency_ratio_${key}`] = round(s.meanUs / e.meanUs, 3);
      json[`synod_${key}_per_s`] = Math.round(s.throughput);
      json[`etcd_${key}_per_s`] = Math.round(e.throughput);
      out(`| ${spec.label}${spec.spread ? ' (3 members)' : ' (leader)'} | ${rate(s.throughput)} | ${(s.meanUs / 1000).toFixed(2)} ms | ${s.httpErrors + s.grpcErrors} | ${rate(e.throughput)} | ${(e.meanUs / 1000).toFixed(2)} ms | ${e.httpErrors + e.grpcErrors} | ${ratio.toFixed(2)} |`);
    }
    const warnings = results.reduce((a, r) => a + r.warnings.length, 0);
    json.warnings = warnings;
    json.duration_s = o.duration;
    out();
    out('note: h2load sends the same body every time, so Synod Set requests carry no RequestHeader: each member generates a');
    out('  client id per request (one new record in the tree\'s client table per write, LRU 10,000), which a real client avoids.');
    out(`at the end: ${loadAverage()}; total ${((Date.now() - t0) / 1000).toFixed(0)} s; ${warnings} warning(s)`);
    out(JSON.stringify(json));
  } finally {
    for (const c of clients) c.close();
    await Promise.allSettled([synod.stop(), etcd.stop()]);
    await rm(bodies, { recursive: true, force: true });
  }
}

function round(x: number, d: number): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}
