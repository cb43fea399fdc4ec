/**
 * `npm run bench -- failover [--runs N]`: time from SIGKILL of the leader to the first successful write through
 * the survivors, for Synod and etcd in the same harness and the same run.
 *
 * Setups (3 members each on 127.0.0.1): Synod with its default timeouts (tick 10 ms, heartbeat 100 ms, election
 * 1000–2000 ms), Synod with the Raft paper's 150–300 ms (heartbeat 50 ms), etcd with its defaults (heartbeat
 * 100 ms, election 1000 ms, randomized up to 2×) and etcd with 50 / 300 ms.
 *
 * One writer knows every member's client address and issues a write every 200 ms (light load), round-robin over all members, each with a 1 s deadline, through the same raw
 * grpc-js client for both systems (pre-encoded Synod `Set` / etcd `Put` of 256 bytes). At the kill it switches to
 * one write attempt every 10 ms (still round-robin, same deadline) until one succeeds: the failover time is
 * from just before the SIGKILL to the first success of a write *issued after* the kill (a write committed
 * before the kill does not count). Then the killed member is restarted from its data dir, the harness waits
 * until it has applied the leader's commit index and all three agree on a leader, and the next run kills the
 * (new) leader. Per setup: p50 / p99 / max over the runs (nearest rank) and ratios against etcd.
 */
import { randomBytes } from 'node:crypto';
import { Command, Option } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { loadConsensusProto } from '@app/proto';
import { loadAverage, machineConditions, positiveInt, sleep } from './common.js';
import { ETCD_PUT, EtcdCluster, RawClient, SynodCluster, etcdPut, etcdVersion, installSignalCleanup } from './clusters.js';

interface FailoverOptions {
  runs: number;
  maxSeconds: number;
  steadyMs: number;
}

export function failoverCommand(): Command {
  return new Command('failover')
    .description('SIGKILL the leader under a light write load: time to the first successful write, Synod vs. etcd')
    .addOption(new Option('--runs <n>', 'kills per setup').default(10).argParser(positiveInt))
    .addOption(new Option('--max-seconds <s>', 'overall time limit; setups stop early (and say so) when it is reached').default(330).argParser(positiveInt))
    .addOption(new Option('--steady-ms <ms>', 'light load after the restarted member caught up, before the next kill').default(1000).argParser(positiveInt))
    .action(async (o: FailoverOptions) => {
      installSignalCleanup();
      await runFailover(o);
    });
}


// ---- the systems --------------------------------------------------------------------------------------------

interface Target {
  start(): Promise<void>;
  stop(): Promise<void>;
  addresses(): string[];
  /** Waits for an agreed leader among the running members; its id. */
  leader(): Promise<number>;
  /** Sends SIGKILL synchronously, resolves once the process has exited. */
  kill(id: number): Promise<void>;
  restart(id: number): Promise<void>;
  /** Whether member `id` has applied the leader's commit index. */
  caughtUp(id: number, leader: number): Promise<boolean>;
  writeMethod: string;
  writeBody: Buffer;
  prepare(): Promise<void>;
}

function synodTarget(args: string[], value: Buffer): Target {
  const c = new SynodCluster(args);
  const svc = loadConsensusProto().Coordination.service;
  return {
    start: () => c.start(),
    stop: () => c.stop(),
    addresses: () => c.ids.map((i) => c.clientAddress(i)),
    leader: () => c.leader(undefined, 20_000),
    kill: (id) => c.pc.kill(id, 'SIGKILL'),
    restart: async (id) => {
      c.pc.spawn(id);
      await c.pc.waitServing(id, 30_000);
    },
    caughtUp: async (id, leader) => {
      const [l, m] = await Promise.all([c.pc.status(leader), c.pc.status(id)]);
      return (m.appliedIndex as number) >= (l.commitIndex as number) && m.leader === leader;
    },
    writeMethod: svc.Set.path,
    writeBody: svc.Set.requestSerialize({ path: '/failover', data: value, version: -1 }),
    prepare: async () => {
      const rc = new RawClient(c.clientAddress(await c.leader()));
      try {
        await rc.call(svc.Create.path, svc.Create.requestSerialize({ path: '/failover', data: value }), 5000);
      } finally {
        rc.close();
      }
    },
  };
}

function etcdTarget(heartbeatMs: number | undefined, electionMs: number | undefined, value: Buffer): Target {
  const c = new EtcdCluster(heartbeatMs, electionMs);
  return {
    start: () => c.start(),
    stop: () => c.stop(),
    addresses: () => c.ids.map((i) => c.clientAddress(i)),
    leader: () => c.leader(undefined, 20_000),
    kill: (id) => c.kill(id, 'SIGKILL'),
    restart: async (id) => {
      c.spawn(id);
      await c.waitServing(id, 30_000);
    },
    caughtUp: async (id, leader) => {
      const [l, m] = await Promise.all([c.status(leader), c.status(id)]);
      return m.raftAppliedIndex >= l.raftIndex && m.leader === l.memberId;
    },
    writeMethod: ETCD_PUT,
    writeBody: etcdPut('failover', value),
    prepare: async () => {},
  };
}

// ---- the writer ---------------------------------------------------------------------------------------------

/**
 * Issues a write every `intervalMs` (200 light, 10 while probing), round-robin over all addresses, each with a
 * 1 s deadline, without waiting for the previous one (at most 200 in flight).
 */
class Writer {
  private readonly clients: RawClient[];
  private next = 0;
  private inflight = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  probing = false;
  ok = 0;
  errors = 0;
  /** Resolves with the completion time of the first successful write issued at or after `since`. */
  private waiter: { since: number; resolve: (t: number) => void } | undefined;

  constructor(
    addresses: string[],
    private readonly method: string,
    private readonly body: Buffer,
  ) {
    this.clients = addresses.map((a) => new RawClient(a));
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        if (this.inflight < 200) this.fire();
        await sleep(this.probing ? 10 : 200);
      }
    })();
  }

  private fire(): void {
    const c = this.clients[this.next++ % this.clients.length];
    const issued = performance.now();
    this.inflight++;
    c.call(this.method, this.body, 1000).then(
      () => {
        this.inflight--;
        this.ok++;
        const w = this.waiter;
        if (w && issued >= w.since) {
          this.waiter = undefined;
          w.resolve(performance.now());
        }
      },
      (e: grpc.ServiceError) => {
        this.inflight--;
        this.errors++;
        void e;
      },
    );
  }

  /** Switches to probing; resolves with the time of the first success of a write issued at or after `since`. */
  firstSuccessAfter(since: number, timeoutMs: number): Promise<number | undefined> {
    this.probing = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.probing = false;
        resolve(undefined);
      }, timeoutMs);
      this.waiter = {
        since,
        resolve: (t) => {
          clearTimeout(timer);
          this.probing = false;
          resolve(t);
        },
      };
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    const end = Date.now() + 2000;
    while (this.inflight > 0 && Date.now() < end) await sleep(20);
    for (const c of this.clients) c.close();
  }
}

// ---- one setup ----------------------------------------------------------------------------------------------

interface SetupResult {
  name: string;
  times: number[];
  timeouts: number;
  ok: number;
  errors: number;
  note: string;
}

async function waitUntil(what: string, f: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await f()) return;
    } catch {
      // retry
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function runSetup(name: string, t: Target, o: FailoverOptions, deadline: number, log: (s: string) => void): Promise<SetupResult> {
  const times: number[] = [];
  let timeouts = 0;
  let note = '';
  let writer: Writer | undefined;
  try {
    await t.start();
    await t.prepare();
    await t.leader();
    writer = new Writer(t.addresses(), t.writeMethod, t.writeBody);
    writer.start();
    await sleep(o.steadyMs);
    for (let run = 1; run <= o.runs; run++) {
      if (Date.now() > deadline) {
        note = `stopped after ${run - 1} runs: time limit`;
        break;
      }
      const leader = await t.leader();
      const t0 = performance.now();
      const killed = t.kill(leader);
      const first = await writer.firstSuccessAfter(t0, 20_000);
      await killed;
      if (first === undefined) {
        timeouts++;
        log(`  ${name} run ${run}: killed member ${leader}, no successful write within 20 s`);
      } else {
        times.push(first - t0);
        log(`  ${name} run ${run}: killed leader ${leader}, first write after ${(first - t0).toFixed(0)} ms`);
      }
      await t.restart(leader);
      const newLeader = await t.leader();
      await waitUntil(`member ${leader} to catch up`, () => t.caughtUp(leader, newLeader), 30_000);
      await sleep(o.steadyMs);
    }
    return { name, times, timeouts, ok: writer.ok, errors: writer.errors, note };
  } finally {
    await writer?.stop();
    await t.stop();
  }
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// ---- the benchmark ------------------------------------------------------------------------------------------

async function runFailover(o: FailoverOptions): Promise<void> {
  const out = (s = ''): void => console.log(s);
  const started = Date.now();
  const deadline = started + o.maxSeconds * 1000;
  const value = randomBytes(256);
  out('# failover benchmark: SIGKILL the leader, time to the first successful write through the survivors');
  out();
  out('conditions:');
  for (const c of machineConditions()) out(`  ${c}`);
  out(`  ${await etcdVersion()}; 3 members each, 127.0.0.1, data in os.tmpdir(); ${o.runs} kills per setup, ${o.steadyMs} ms steady load between`);
  out('  writer: one write every 200 ms (every 10 ms from the kill until the first success), round-robin over all 3 members,');
  out('  1 s deadline each, same raw grpc-js client for both (Synod Set / etcd Put, 256 B, Synod without RequestHeader)');
  out();

  const setups: { name: string; make: () => Target }[] = [
    { name: 'synod default (hb 100, election 1000-2000 ms)', make: () => synodTarget([], value) },
    { name: 'synod fast (hb 50, election 150-300 ms)', make: () => synodTarget(['--heartbeat-ms', '50', '--election-ms', '150', '--election-max-ms', '300'], value) },
    { name: 'etcd default (hb 100, election 1000 ms)', make: () => etcdTarget(undefined, undefined, value) },
    { name: 'etcd tuned (hb 50, election 300 ms)', make: () => etcdTarget(50, 300, value) },
  ];
  const results: SetupResult[] = [];
  for (let i = 0; i < setups.length; i++) {
    // each setup gets an equal share of the time left
    const share = (deadline - Date.now()) / (setups.length - i);
    const r = await runSetup(setups[i].name, setups[i].make(), o, Date.now() + share - 15_000, out);
    results.push(r);
    out(`  (${loadAverage()})`);
  }

  out();
  out('| setup | runs | p50 | p99 | max | min | writes ok / failed | note |');
  out('|---|---|---|---|---|---|---|---|');
  const stats = results.map((r) => {
    const s = [...r.times].sort((a, b) => a - b);
    return { r, p50: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1] ?? NaN, min: s[0] ?? NaN };
  });
  for (const x of stats) {
    out(`| ${x.r.name} | ${x.r.times.length}${x.r.timeouts ? ` (+${x.r.timeouts} timed out)` : ''} | ${x.p50.toFixed(0)} ms | ${x.p99.toFixed(0)} ms | ${x.max.toFixed(0)} ms | ${x.min.toFixed(0)} ms | ${x.r.ok} / ${x.r.errors} | ${x.r.note} |`);
  }
  const [sd, sf, ed, et] = stats;
  const json = {
    ratio_default_p50: round(sd.p50 / ed.p50),
    ratio_default_p99: round(sd.p99 / ed.p99),
    ratio_fast_p50: round(sf.p50 / et.p50),
    ratio_fast_p99: round(sf.p99 / et.p99),
    ratio_fast_vs_etcd_default_p50: round(sf.p50 / ed.p50),
    synod_default_p50_ms: Math.round(sd.p50),
    synod_default_p99_ms: Math.round(sd.p99),
    synod_fast_p50_ms: Math.round(sf.p50),
    synod_fast_p99_ms: Math.round(sf.p99),
    etcd_default_p50_ms: Math.round(ed.p50),
    etcd_default_p99_ms: Math.round(ed.p99),
    etcd_tuned_p50_ms: Math.round(et.p50),
    etcd_tuned_p99_ms: Math.round(et.p99),
    runs: stats.map((x) => x.r.times.length),
  };
  out();
  out('ratios (Synod ÷ etcd, lower is better): default vs default p50 ' + json.ratio_default_p50 + ', p99 ' + json.ratio_default_p99 +
    '; 150-300 vs etcd 50/300 p50 ' + json.ratio_fast_p50 + ', p99 ' + json.ratio_fast_p99);
  out(`at the end: ${loadAverage()}; total ${((Date.now() - started) / 1000).toFixed(0)} s`);
  out(JSON.stringify(json));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
