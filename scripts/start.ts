/**
 * `npm start` — the local stack: a 3-member consensus cluster on 127.0.0.1, one child process per member
 * (`node --import tsx apps/consensus/src/main.ts ...`), one lock service over it (apps/lock, gRPC 2390,
 * metrics 2391; SYNOD_LOCK_PORT overrides) and two transaction coordinator replicas (apps/txn, gRPC 2395 and
 * 2495, metrics 2396 and 2496; SYNOD_TXN_PORT overrides), data under .data/local/n<id> (kept between runs: a
 * restart recovers every member from its WAL). Prints each member's endpoints, then a status line every
 * second (role, term, commit and applied index per member, from the Cluster Status RPC). Ctrl-C (SIGINT) or
 * SIGTERM stops every child by pid (SIGTERM: a leader hands over first), waiting for each to exit; so does
 * losing the npm process that launched it.
 *
 * Ports: member n (1..3) uses client 2379 + 100(n-1), peer 2380 + 100(n-1), metrics 2381 + 100(n-1);
 * override the base with SYNOD_BASE_PORT. Timings: 10 ms ticks, 50 ms heartbeat, 150–300 ms election timeout.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadConsensusProto } from '@app/proto';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dataRoot = resolve(process.env.SYNOD_DATA_DIR ?? join(root, '.data/local'));
const base = Number(process.env.SYNOD_BASE_PORT ?? 2379);
const ids = [1, 2, 3];
const ports = new Map(ids.map((id) => [id, { client: base + 100 * (id - 1), peer: base + 1 + 100 * (id - 1), metrics: base + 2 + 100 * (id - 1) }]));
const peers = ids.map((id) => `${id}=127.0.0.1:${ports.get(id)!.peer}`).join(',');
const clientUrls = ids.map((id) => `${id}=127.0.0.1:${ports.get(id)!.client}`).join(',');

const lockPort = Number(process.env.SYNOD_LOCK_PORT ?? 2390);
const txnPort = Number(process.env.SYNOD_TXN_PORT ?? 2395);
const txnPorts = [txnPort, txnPort + 100];
const children = new Map<string, ChildProcess>();
const exited = new Map<string, Promise<void>>();
let stopping = false;

/** Starts one child (`name` names its log file `<name>.log`); its errors also go to the terminal. */
function launch(name: string, args: string[]): void {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(dataRoot, `${name}.log`), { flags: 'a' });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  child.stderr!.on('data', (b: Buffer) => {
    for (const line of b.toString().split('\n')) if (/ error |configuration error|failed to start/.test(line)) process.stderr.write(`${name}: ${line}\n`);
  });
  children.set(name, child);
  exited.set(
    name,
    new Promise((r) =>
      child.once('exit', (code, sig) => {
        children.delete(name);
        if (!stopping) process.stderr.write(`${name} exited (${sig ?? `code ${code}`}); see ${join(dataRoot, `${name}.log`)}\n`);
        r();
      }),
    ),
  );
}

mkdirSync(dataRoot, { recursive: true });
for (const id of ids) {
  const p = ports.get(id)!;
  launch(`n${id}`, [
    join(root, 'apps/consensus/src/main.ts'),
    '--node-id', String(id), '--peers', peers, '--client-urls', clientUrls,
    '--listen-host', '127.0.0.1', '--client-port', String(p.client), '--metrics-port', String(p.metrics),
    '--data-dir', join(dataRoot, `n${id}`),
    '--tick-ms', '10', '--heartbeat-ms', '50', '--election-ms', '150', '--election-max-ms', '300',
  ]);
}
const consensusEndpoints = ids.map((id) => `127.0.0.1:${ports.get(id)!.client}`).join(',');
txnPorts.forEach((port, i) =>
  launch(`txn${i + 1}`, [
    join(root, 'apps/txn/src/main.ts'),
    '--consensus-endpoints', consensusEndpoints,
    '--listen-host', '127.0.0.1', '--port', String(port), '--metrics-port', String(port + 1), '--advertise', `127.0.0.1:${port}`,
  ]),
);
launch('lock', [
  join(root, 'apps/lock/src/main.ts'),
  '--backend', 'consensus', '--consensus-endpoints', ids.map((id) => `127.0.0.1:${ports.get(id)!.client}`).join(','),
  '--listen-host', '127.0.0.1', '--port', String(lockPort), '--metrics-port', String(lockPort + 1),
]);

console.log(`synod local stack: 3 consensus members, data and logs under ${dataRoot}`);
for (const id of ids) {
  const p = ports.get(id)!;
  console.log(`  member ${id}: client 127.0.0.1:${p.client}  peer 127.0.0.1:${p.peer}  metrics http://127.0.0.1:${p.metrics}/metrics  (pid ${children.get(`n${id}`)?.pid})`);
}
console.log(`  lock service (consensus backend): 127.0.0.1:${lockPort}  metrics http://127.0.0.1:${lockPort + 1}/metrics  (pid ${children.get('lock')?.pid})`);
txnPorts.forEach((port, i) => console.log(`  txn coordinator ${i + 1}: 127.0.0.1:${port}  metrics http://127.0.0.1:${port + 1}/metrics  (pid ${children.get(`txn${i + 1}`)?.pid})`));
console.log('Ctrl-C stops everything.');

const { Cluster } = loadConsensusProto();
const clients = new Map(ids.map((id) => [id, new Cluster(`127.0.0.1:${ports.get(id)!.client}`, grpc.credentials.createInsecure())]));

type Status = { role: string; term: number; leader: number; commitIndex: number; appliedIndex: number; nodeCount: number };

function status(id: number): Promise<Status | undefined> {
  return new Promise((res) => {
    const c = clients.get(id)! as unknown as { Status(r: object, o: grpc.CallOptions, cb: (e: Error | null, s: Status) => void): void };
    c.Status({}, { deadline: Date.now() + 800 }, (err, s) => res(err ? undefined : s));
  });
}

async function printStatus(): Promise<void> {
  const st = await Promise.all(ids.map((id) => status(id)));
  const leader = st.find((s) => s?.role === 'LEADER');
  const parts = ids.map((id, i) => {
    const s = st[i];
    return s ? `n${id} ${s.role.toLowerCase().padEnd(9)} term ${s.term} commit ${s.commitIndex} applied ${s.appliedIndex}` : `n${id} (no answer)`;
  });
  if (stopping) return;
  const head = leader ? `leader n${ids[st.indexOf(leader)]}, term ${leader.term}, nodes ${leader.nodeCount}` : 'no leader';
  console.log(`${new Date().toISOString().slice(11, 19)} ${head} | ${parts.join(' | ')}`);
}

/**
 * The ppid of process `pid` (Linux /proc), or undefined. `npm start` runs this script under npm → sh → the tsx
 * CLI; a SIGTERM sent to npm alone kills npm without reaching us, leaving the tsx CLI orphaned (ppid 1). Ctrl-C
 * reaches the whole process group and needs none of this.
 */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}
const launcher = process.ppid;
const launcherParent = parentOf(launcher);

const timer = setInterval(() => {
  void printStatus();
  // Our launcher lost its own parent (e.g. npm was killed): stop too, instead of leaving the members running.
  if (launcherParent !== undefined && launcherParent !== 1 && parentOf(launcher) === 1) void stop('SIGTERM');
}, 1000);

async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(timer);
  console.log(`\n${signal}: stopping ${[...children.keys()].join(', ')}`);
  // the services first (the lock service tells its holders; a coordinator hands over), then the members
  for (const name of ['lock', 'txn1', 'txn2']) {
    const child = children.get(name);
    if (!child) continue;
    process.kill(child.pid!, 'SIGTERM');
    await Promise.race([exited.get(name), new Promise((r) => setTimeout(r, 5000))]);
  }
  for (const child of children.values()) {
    try {
      process.kill(child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = setTimeout(() => {
    for (const child of children.values()) {
      process.stderr.write(`child pid ${child.pid} did not stop within 10 s; killing it\n`);
      process.kill(child.pid!, 'SIGKILL');
    }
  }, 10_000);
  await Promise.all(exited.values());
  clearTimeout(deadline);
  for (const c of clients.values()) c.close();
  console.log('all stopped');
  process.exit(0);
}

process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
