/**
 * Configuration of a consensus member: environment variables, overridden by command-line flags (commander).
 * Every value is validated; a bad one stops the process with a message naming the flag, the variable and
 * what is expected (ConfigError). See docs/consensus.md for the table.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { ConfigError } from '@app/config';
import type { MemberTestHooks } from './clock.js';

export { ConfigError };

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface ConsensusConfig {
  nodeId: number;
  clusterId: string;
  /** Every initial member's peer address (host:port), this member's included. */
  peers: Map<number, string>;
  /** Client addresses per member (host:port), for leader redirects; may be partial. */
  clientUrls: Map<number, string>;
  /** 'new': bootstrap with `peers` as voters; 'existing': join a running cluster (added with AddMember first). */
  initialClusterState: 'new' | 'existing';
  dataDir: string;
  listenHost: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  tickMs: number;
  heartbeatMs: number;
  electionMs: number;
  electionMaxMs: number;
  maxDataBytes: number;
  maxRequestBytes: number;
  snapshotCount: number;
  snapshotCatchUpEntries: number;
  requestTimeoutMs: number;
  minSessionTimeoutMs: number;
  maxSessionTimeoutMs: number;
  sessionCheckpointMs: number;
  watchHistory: number;
  shutdownTransferMs: number;
  tls?: TlsFiles;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Test builds only (SYNOD_TEST_HOOKS; apps/consensus/src/clock.ts): skewable clock, peer routes. */
  testHooks?: MemberTestHooks;
}

interface Spec {
  key: keyof RawValues;
  flag: string;
  env: string;
  help: string;
  def?: string;
}

type RawValues = {
  nodeId?: string;
  clusterId?: string;
  peers?: string;
  clientUrls?: string;
  initialClusterState?: string;
  dataDir?: string;
  listenHost?: string;
  clientPort?: string;
  peerPort?: string;
  metricsPort?: string;
  tickMs?: string;
  heartbeatMs?: string;
  electionMs?: string;
  electionMaxMs?: string;
  maxDataBytes?: string;
  maxRequestBytes?: string;
  snapshotCount?: string;
  snapshotCatchUpEntries?: string;
  requestTimeoutMs?: string;
  minSessionTimeoutMs?: string;
  maxSessionTimeoutMs?: string;
  sessionCheckpointMs?: string;
  watchHistory?: string;
  shutdownTransferMs?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel?: string;
};

/** The options: flag, environment variable, default (as text), help. docs/consensus.md mirrors this table. */
export const OPTIONS: readonly Spec[] = [
  { key: 'nodeId', flag: '--node-id <id>', env: 'SYNOD_NODE_ID', help: 'member id (> 0); default: the StatefulSet ordinal in HOSTNAME + 1 (synod-2 → 3)' },
  { key: 'clusterId', flag: '--cluster-id <id>', env: 'SYNOD_CLUSTER_ID', help: 'cluster identity; members of other clusters are refused', def: 'synod' },
  { key: 'peers', flag: '--peers <list>', env: 'SYNOD_PEERS', help: 'initial members: id=host:port of each peer port, comma separated (this member included)' },
  { key: 'clientUrls', flag: '--client-urls <list>', env: 'SYNOD_CLIENT_URLS', help: 'id=host:port of each member\'s client port (for leader redirects)' },
  { key: 'initialClusterState', flag: '--initial-cluster-state <state>', env: 'SYNOD_INITIAL_CLUSTER_STATE', help: 'new (bootstrap the peers) or existing (join after AddMember)', def: 'new' },
  { key: 'dataDir', flag: '--data-dir <dir>', env: 'SYNOD_DATA_DIR', help: 'WAL and snapshots (default .data/n<id>)' },
  { key: 'listenHost', flag: '--listen-host <host>', env: 'SYNOD_LISTEN_HOST', help: 'address the three ports bind to', def: '0.0.0.0' },
  { key: 'clientPort', flag: '--client-port <port>', env: 'SYNOD_CLIENT_PORT', help: 'client gRPC port (Coordination, Cluster, health, reflection)', def: '2379' },
  { key: 'peerPort', flag: '--peer-port <port>', env: 'SYNOD_PEER_PORT', help: 'peer gRPC port (Raft); default: the port of this member\'s entry in --peers' },
  { key: 'metricsPort', flag: '--metrics-port <port>', env: 'SYNOD_METRICS_PORT', help: 'HTTP port of /metrics, /livez, /readyz', def: '2381' },
  { key: 'tickMs', flag: '--tick-ms <ms>', env: 'SYNOD_TICK_MS', help: 'Raft tick; heartbeat and election timeouts are whole multiples of it', def: '10' },
  { key: 'heartbeatMs', flag: '--heartbeat-ms <ms>', env: 'SYNOD_HEARTBEAT_MS', help: 'leader heartbeat interval', def: '100' },
  { key: 'electionMs', flag: '--election-ms <ms>', env: 'SYNOD_ELECTION_MS', help: 'minimum election timeout', def: '1000' },
  { key: 'electionMaxMs', flag: '--election-max-ms <ms>', env: 'SYNOD_ELECTION_MAX_MS', help: 'maximum (exclusive) election timeout (default 2 × election-ms)' },
  { key: 'maxDataBytes', flag: '--max-data-bytes <n>', env: 'SYNOD_MAX_DATA_BYTES', help: 'largest node data (same on every member)', def: '1048576' },
  { key: 'maxRequestBytes', flag: '--max-request-bytes <n>', env: 'SYNOD_MAX_REQUEST_BYTES', help: 'largest client request message', def: '1572864' },
  { key: 'snapshotCount', flag: '--snapshot-count <n>', env: 'SYNOD_SNAPSHOT_COUNT', help: 'take a snapshot every n applied entries', def: '10000' },
  { key: 'snapshotCatchUpEntries', flag: '--snapshot-catchup-entries <n>', env: 'SYNOD_SNAPSHOT_CATCHUP_ENTRIES', help: 'entries kept below a snapshot for lagging followers', def: '5000' },
  { key: 'requestTimeoutMs', flag: '--request-timeout-ms <ms>', env: 'SYNOD_REQUEST_TIMEOUT_MS', help: 'deadline of a request whose client set none (and of proposals)', def: '5000' },
  { key: 'minSessionTimeoutMs', flag: '--min-session-timeout-ms <ms>', env: 'SYNOD_MIN_SESSION_TIMEOUT_MS', help: 'session timeouts are clamped to [min, max]', def: '1000' },
  { key: 'maxSessionTimeoutMs', flag: '--max-session-timeout-ms <ms>', env: 'SYNOD_MAX_SESSION_TIMEOUT_MS', help: 'upper bound of session timeouts', def: '600000' },
  { key: 'sessionCheckpointMs', flag: '--session-checkpoint-ms <ms>', env: 'SYNOD_SESSION_CHECKPOINT_MS', help: 'the leader logs remaining session TTLs this often', def: '5000' },
  { key: 'watchHistory', flag: '--watch-history <n>', env: 'SYNOD_WATCH_HISTORY', help: 'events kept per member for resuming watches', def: '10000' },
  { key: 'shutdownTransferMs', flag: '--shutdown-transfer-ms <ms>', env: 'SYNOD_SHUTDOWN_TRANSFER_MS', help: 'on SIGTERM a leader hands over leadership, waiting at most this long', def: '3000' },
  { key: 'tlsCa', flag: '--tls-ca <file>', env: 'SYNOD_TLS_CA', help: 'CA certificate (PEM); with cert and key: mutual TLS on the client and peer ports' },
  { key: 'tlsCert', flag: '--tls-cert <file>', env: 'SYNOD_TLS_CERT', help: 'this member\'s certificate (PEM), valid for server and client auth' },
  { key: 'tlsKey', flag: '--tls-key <file>', env: 'SYNOD_TLS_KEY', help: 'this member\'s private key (PEM)' },
  { key: 'logLevel', flag: '--log-level <level>', env: 'SYNOD_LOG_LEVEL', help: 'debug, info, warn or error', def: 'info' },
];

function describe(s: Spec): string {
  return `${s.flag.split(' ')[0]} / ${s.env}`;
}

function int(s: Spec, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = raw ?? s.def;
  if (v === undefined) throw new ConfigError(`${describe(s)} is required`);
  if (!/^\d+$/.test(v.trim())) throw new ConfigError(`${describe(s)}: "${v}" is not a whole number`);
  const n = Number(v.trim());
  if (n < min || n > max) throw new ConfigError(`${describe(s)}: ${n} is out of range [${min}, ${max}]`);
  return n;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

/** Parses "host:port" (no scheme; "http://" or "https://" prefixes are tolerated and stripped). */
export function parseHostPort(what: string, v: string): string {
  const s = v.trim().replace(/^(https?|grpcs?):\/\//, '').replace(/\/$/, '');
  const m = HOST_PORT.exec(s);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new ConfigError(`${what}: "${v}" is not host:port (e.g. synod-0.synod-peer:2380 or 127.0.0.1:2380)`);
  return s;
}

/** Parses "1=host:port,2=host:port". */
export function parseMemberList(what: string, v: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const part of v.split(',').map((p) => p.trim()).filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${what}: "${part}" must look like <id>=<host>:<port>, e.g. 1=127.0.0.1:2380`);
    const idText = part.slice(0, eq).trim();
    if (!/^\d+$/.test(idText) || Number(idText) < 1 || Number(idText) > 0xffff_ffff) throw new ConfigError(`${what}: member id "${idText}" must be an integer in [1, 4294967295]`);
    const id = Number(idText);
    if (out.has(id)) throw new ConfigError(`${what}: member ${id} is listed twice`);
    out.set(id, parseHostPort(`${what} (member ${id})`, part.slice(eq + 1)));
  }
  return out;
}

/** ZooKeeper's myid from a StatefulSet pod name: "synod-2" → 3. */
export function idFromHostname(hostname: string | undefined): number | undefined {
  const m = hostname ? /-(\d+)$/.exec(hostname.split('.')[0]) : null;
  return m ? Number(m[1]) + 1 : undefined;
}

/** Builds the commander program (flags only; the environment is merged in `loadConfig`). */
export function buildProgram(): Command {
  const program = new Command('synod-consensus')
    .description('Synod consensus cluster member: a Raft-replicated ZooKeeper-style tree (gRPC)')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const s of OPTIONS) program.addOption(new Option(s.flag, `${s.help} [env ${s.env}]${s.def !== undefined ? ` (default ${s.def})` : ''}`));
  return program;
}

function readFile(what: string, file: string): Buffer {
  const p = resolve(file);
  if (!existsSync(p)) throw new ConfigError(`${what}: file ${p} does not exist`);
  try {
    return readFileSync(p);
  } catch (err) {
    throw new ConfigError(`${what}: cannot read ${p}: ${(err as Error).message}`);
  }
}

/** Merges flags over the environment over the defaults, and validates. Throws ConfigError. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ConsensusConfig {
  const program = buildProgram();
  program.parse(argv, { from: 'user' });
  const flags = program.opts<Record<string, string | undefined>>();
  const raw: RawValues = {};
  const spec = new Map(OPTIONS.map((s) => [s.key, s]));
  for (const s of OPTIONS) {
    const v = flags[new Option(s.flag).attributeName()] ?? env[s.env];
    if (v !== undefined && v !== '') raw[s.key] = v;
  }
  const S = (k: keyof RawValues): Spec => spec.get(k)!;

  let nodeId: number;
  if (raw.nodeId !== undefined) nodeId = int(S('nodeId'), raw.nodeId, 1, 0xffff_ffff);
  else {
    const derived = idFromHostname(env.HOSTNAME);
    if (derived === undefined) {
      throw new ConfigError(`${describe(S('nodeId'))} is required (or run as a StatefulSet pod whose HOSTNAME ends in -<ordinal>, e.g. synod-2 → member 3)`);
    }
    nodeId = derived;
  }
  if (raw.peers === undefined) throw new ConfigError(`${describe(S('peers'))} is required, e.g. 1=127.0.0.1:2380,2=127.0.0.1:2480,3=127.0.0.1:2580`);
  const peers = parseMemberList(describe(S('peers')), raw.peers);
  if (!peers.has(nodeId)) throw new ConfigError(`${describe(S('peers'))} must list this member (${nodeId}) too; it lists ${[...peers.keys()].join(', ') || 'nobody'}`);
  const clientUrls = raw.clientUrls ? parseMemberList(describe(S('clientUrls')), raw.clientUrls) : new Map<number, string>();

  const state = raw.initialClusterState ?? 'new';
  if (state !== 'new' && state !== 'existing') throw new ConfigError(`${describe(S('initialClusterState'))}: "${state}" must be new or existing`);

  const ownPeerPort = Number(peers.get(nodeId)!.split(':').pop());
  const tickMs = int(S('tickMs'), raw.tickMs, 1, 10_000);
  const heartbeatMs = int(S('heartbeatMs'), raw.heartbeatMs, 1);
  const electionMs = int(S('electionMs'), raw.electionMs, 1);
  const electionMaxMs = raw.electionMaxMs !== undefined ? int(S('electionMaxMs'), raw.electionMaxMs, 1) : 2 * electionMs;
  for (const [k, v] of [['heartbeatMs', heartbeatMs], ['electionMs', electionMs], ['electionMaxMs', electionMaxMs]] as const) {
    if (v % tickMs !== 0) throw new ConfigError(`${describe(S(k))}: ${v} ms is not a multiple of the ${tickMs} ms tick (${describe(S('tickMs'))})`);
  }
  if (heartbeatMs >= electionMs) throw new ConfigError(`the heartbeat (${heartbeatMs} ms) must be shorter than the election timeout (${electionMs} ms); etcd recommends election ≥ 5 × heartbeat`);
  if (electionMaxMs <= electionMs) throw new ConfigError(`${describe(S('electionMaxMs'))} (${electionMaxMs} ms) must exceed ${describe(S('electionMs'))} (${electionMs} ms)`);
  const maxDataBytes = int(S('maxDataBytes'), raw.maxDataBytes, 0, 64 * 1024 * 1024);
  const maxRequestBytes = int(S('maxRequestBytes'), raw.maxRequestBytes, 1024, 256 * 1024 * 1024);
  const minSessionTimeoutMs = int(S('minSessionTimeoutMs'), raw.minSessionTimeoutMs, 1);
  const maxSessionTimeoutMs = int(S('maxSessionTimeoutMs'), raw.maxSessionTimeoutMs, 1);
  if (minSessionTimeoutMs > maxSessionTimeoutMs) throw new ConfigError(`session timeout bounds: min ${minSessionTimeoutMs} ms exceeds max ${maxSessionTimeoutMs} ms`);

  let tls: TlsFiles | undefined;
  const tlsGiven = [raw.tlsCa, raw.tlsCert, raw.tlsKey].filter((v) => v !== undefined).length;
  if (tlsGiven > 0 && tlsGiven < 3) {
    throw new ConfigError(`TLS needs all three of ${describe(S('tlsCa'))}, ${describe(S('tlsCert'))} and ${describe(S('tlsKey'))} (mutual TLS); ${tlsGiven} given`);
  }
  if (tlsGiven === 3) {
    tls = {
      caFile: resolve(raw.tlsCa!),
      certFile: resolve(raw.tlsCert!),
      keyFile: resolve(raw.tlsKey!),
      ca: readFile(describe(S('tlsCa')), raw.tlsCa!),
      cert: readFile(describe(S('tlsCert')), raw.tlsCert!),
      key: readFile(describe(S('tlsKey')), raw.tlsKey!),
    };
  }
  const logLevel = raw.logLevel ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(`${describe(S('logLevel'))}: "${logLevel}" must be debug, info, warn or error`);

  const cfg: ConsensusConfig = {
    nodeId,
    clusterId: raw.clusterId ?? 'synod',
    peers,
    clientUrls,
    initialClusterState: state,
    dataDir: resolve(raw.dataDir ?? `.data/n${nodeId}`),
    listenHost: raw.listenHost ?? '0.0.0.0',
    clientPort: int(S('clientPort'), raw.clientPort, 0, 65535),
    peerPort: raw.peerPort !== undefined ? int(S('peerPort'), raw.peerPort, 0, 65535) : ownPeerPort,
    metricsPort: int(S('metricsPort'), raw.metricsPort, 0, 65535),
    tickMs,
    heartbeatMs,
    electionMs,
    electionMaxMs,
    maxDataBytes,
    maxRequestBytes,
    snapshotCount: int(S('snapshotCount'), raw.snapshotCount, 1),
    snapshotCatchUpEntries: int(S('snapshotCatchUpEntries'), raw.snapshotCatchUpEntries, 0),
    requestTimeoutMs: int(S('requestTimeoutMs'), raw.requestTimeoutMs, 10),
    minSessionTimeoutMs,
    maxSessionTimeoutMs,
    sessionCheckpointMs: int(S('sessionCheckpointMs'), raw.sessionCheckpointMs, 10),
    watchHistory: int(S('watchHistory'), raw.watchHistory, 1),
    shutdownTransferMs: int(S('shutdownTransferMs'), raw.shutdownTransferMs, 0),
    tls,
    logLevel: logLevel as ConsensusConfig['logLevel'],
  };
  if (cfg.maxRequestBytes < cfg.maxDataBytes) {
    throw new ConfigError(`${describe(S('maxRequestBytes'))} (${cfg.maxRequestBytes}) must be at least ${describe(S('maxDataBytes'))} (${cfg.maxDataBytes}), or no request could carry a full node`);
  }
  return cfg;
}
