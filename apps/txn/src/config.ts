/**
 * Configuration of a coordinator replica: environment (SYNOD_TXN_*), overridden by flags. Invalid values stop
 * the process with exit code 2 and a message naming the flag. docs/txn.md has the table.
 */
import { Command, Option } from 'commander';
import { ConfigError, parseWithEnv, readTlsFiles } from '@app/config';
import type { TlsMaterial } from '@app/config';
import { DEFAULT_ENGINE_OPTIONS } from './engine.js';
import type { EngineOptions } from './engine.js';

export { ConfigError };

export interface TxnConfig {
  /** Where the decision log lives: the Synod consensus cluster (default) or etcd. */
  store: 'consensus' | 'etcd';
  /** Empty when `store` is etcd. */
  consensusEndpoints: string[];
  /** etcd client endpoints (`store` etcd); empty otherwise. */
  etcdEndpoints: string[];
  /** Tree path of the coordinator's state in the consensus cluster. */
  root: string;
  sessionTimeoutMs: number;
  listenHost: string;
  port: number;
  metricsPort: number;
  /** host:port other replicas and clients use to reach this one (leader redirects). */
  advertise: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  engine: EngineOptions;
  /** Mutual TLS: the gRPC port requires client certificates signed by `ca`; the same files authenticate this
   * coordinator to the consensus cluster. */
  tls?: TlsMaterial;
}

function int(v: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${flag} must be an integer between ${min} and ${max}, got "${v}"`);
  return n;
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): TxnConfig {
  const d = DEFAULT_ENGINE_OPTIONS;
  const cmd = new Command('synod-txn')
    .description('Synod transaction coordinator: two-phase commit with a replicated decision log, and outbox message delivery')
    .exitOverride()
    .addOption(new Option('--store <kind>', 'where the decision log lives: consensus or etcd').env('SYNOD_TXN_STORE').default('consensus'))
    .addOption(new Option('--etcd-endpoints <list>', 'host:port of the etcd members (the decision log with --store etcd), comma-separated').env('SYNOD_ETCD_ENDPOINTS'))
    .addOption(new Option('--consensus-endpoints <list>', 'host:port of the Synod consensus members (the decision log), comma-separated').env('SYNOD_CONSENSUS_ENDPOINTS'))
    .addOption(new Option('--root <path>', 'tree path of the coordinator state').env('SYNOD_TXN_ROOT').default('/txn'))
    .addOption(new Option('--session-timeout-ms <ms>', 'election session timeout: how long a dead leader blocks the next').env('SYNOD_TXN_SESSION_TIMEOUT_MS').default('5000'))
    .addOption(new Option('--listen-host <host>', 'bind address').env('SYNOD_LISTEN_HOST').default('0.0.0.0'))
    .addOption(new Option('--port <port>', 'gRPC port (synod.txn.v1.Coordinator, health, reflection)').env('SYNOD_TXN_PORT').default('2395'))
    .addOption(new Option('--metrics-port <port>', 'HTTP /metrics /livez /readyz').env('SYNOD_TXN_METRICS_PORT').default('2396'))
    .addOption(new Option('--advertise <host:port>', 'address of this replica for leader redirects (default 127.0.0.1:<port>; in Kubernetes the pod DNS name)').env('SYNOD_TXN_ADVERTISE'))
    .addOption(new Option('--prepare-timeout-ms <ms>', 'deadline of one Prepare').env('SYNOD_TXN_PREPARE_TIMEOUT_MS').default(String(d.prepareTimeoutMs)))
    .addOption(new Option('--phase-two-timeout-ms <ms>', 'deadline of one Commit/Abort call to a participant').env('SYNOD_TXN_PHASE_TWO_TIMEOUT_MS').default(String(d.phaseTwoTimeoutMs)))
    .addOption(new Option('--phase-two-attempts <n>', 'attempts before NEEDS_ATTENTION').env('SYNOD_TXN_PHASE_TWO_ATTEMPTS').default(String(d.phaseTwoAttempts)))
    .addOption(new Option('--attention-retry-ms <ms>', 'retry interval once NEEDS_ATTENTION').env('SYNOD_TXN_ATTENTION_RETRY_MS').default(String(d.attentionRetryMs)))
    .addOption(new Option('--retention-ms <ms>', 'how long completed transactions stay listed').env('SYNOD_TXN_RETENTION_MS').default(String(d.retentionMs)))
    .addOption(new Option('--log-level <level>', 'debug, info, warn, error').env('SYNOD_LOG_LEVEL').default('info'))
    .addOption(new Option('--tls-ca <file>', 'CA bundle: with --tls-cert and --tls-key, mutual TLS on the gRPC port and to the consensus cluster').env('SYNOD_TLS_CA'))
    .addOption(new Option('--tls-cert <file>', 'this replica\'s certificate (PEM; server and client auth)').env('SYNOD_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'its key (PEM)').env('SYNOD_TLS_KEY'));
  const o = parseWithEnv(cmd, argv, env);
  const store = o.store as TxnConfig['store'];
  if (store !== 'consensus' && store !== 'etcd') throw new ConfigError(`--store (SYNOD_TXN_STORE) must be consensus or etcd, got "${o.store}"`);
  const consensusEndpoints = (o.consensusEndpoints ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const etcdEndpoints = (o.etcdEndpoints ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (store === 'etcd' && etcdEndpoints.length === 0) throw new ConfigError('--etcd-endpoints (SYNOD_ETCD_ENDPOINTS) is required with --store etcd: host:port of the etcd members that keep the decision log');
  if (store === 'consensus' && consensusEndpoints.length === 0) throw new ConfigError('--consensus-endpoints (SYNOD_CONSENSUS_ENDPOINTS) is required: host:port of the consensus members that keep the decision log');
  const port = int(o.port, '--port (SYNOD_TXN_PORT)', 0, 65535);
  const logLevel = o.logLevel as TxnConfig['logLevel'];
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(`--log-level must be debug, info, warn or error, got "${o.logLevel}"`);
  if (!o.root!.startsWith('/') || o.root!.startsWith('/synod')) throw new ConfigError(`--root must be an absolute tree path outside /synod, got "${o.root}"`);
  return {
    tls: readTlsFiles(o.tlsCa, o.tlsCert, o.tlsKey),
    store,
    consensusEndpoints: store === 'consensus' ? consensusEndpoints : [],
    etcdEndpoints: store === 'etcd' ? etcdEndpoints : [],
    root: o.root!,
    sessionTimeoutMs: int(o.sessionTimeoutMs, '--session-timeout-ms', 1000, 600_000),
    listenHost: o.listenHost!,
    port,
    metricsPort: int(o.metricsPort, '--metrics-port (SYNOD_TXN_METRICS_PORT)', 0, 65535),
    advertise: o.advertise ?? `127.0.0.1:${port}`,
    logLevel,
    engine: {
      ...d,
      prepareTimeoutMs: int(o.prepareTimeoutMs, '--prepare-timeout-ms', 10, 600_000),
      phaseTwoTimeoutMs: int(o.phaseTwoTimeoutMs, '--phase-two-timeout-ms', 10, 600_000),
      phaseTwoAttempts: int(o.phaseTwoAttempts, '--phase-two-attempts', 1, 1000),
      attentionRetryMs: int(o.attentionRetryMs, '--attention-retry-ms', 10, 3_600_000),
      retentionMs: int(o.retentionMs, '--retention-ms', 1000, 30 * 86_400_000),
    },
  };
}
