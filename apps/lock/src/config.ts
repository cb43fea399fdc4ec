/**
 * Configuration of a lock service instance: environment variables (SYNOD_LOCK_*), overridden by flags.
 * Invalid values stop the process with exit code 2 and a message naming the flag and what is expected.
 * docs/locks.md has the table.
 */
import { Command, Option } from 'commander';
import { ConfigError, parseWithEnv, readTlsFiles } from '@app/config';
import type { TlsMaterial } from '@app/config';
import type { BackendKind } from '@app/lock';

export { ConfigError };

export interface LockConfig {
  backend: BackendKind;
  /** consensus: client addresses of the Synod consensus members. */
  consensusEndpoints: string[];
  /** consensus: timeout of the instance's session (how long its entries outlive a dead instance). */
  sessionTimeoutMs: number;
  etcdEndpoints: string[];
  redisUrl: string;
  /** redlock: N ≥ 3 independent Redis servers. */
  redlockUrls: string[];
  postgresUrl: string;
  listenHost: string;
  port: number;
  metricsPort: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  tls?: TlsMaterial;
}

const BACKENDS: BackendKind[] = ['consensus', 'etcd', 'redis', 'redlock', 'postgres'];

function list(v: string | undefined): string[] {
  return (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function port(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${flag} must be a port number (0..65535), got "${v}"`);
  return n;
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): LockConfig {
  const cmd = new Command('synod-lock')
    .description('Synod lock service: fenced exclusive, shared and counting locks over a chosen backend')
    .exitOverride()
    .addOption(new Option('--backend <kind>', `one of ${BACKENDS.join(', ')}`).env('SYNOD_LOCK_BACKEND').default('consensus'))
    .addOption(new Option('--consensus-endpoints <list>', 'consensus backend: host:port of the Synod consensus members, comma-separated').env('SYNOD_CONSENSUS_ENDPOINTS'))
    .addOption(new Option('--session-timeout-ms <ms>', 'consensus backend: session timeout of this instance').env('SYNOD_LOCK_SESSION_TIMEOUT_MS').default('10000'))
    .addOption(new Option('--etcd-endpoints <list>', 'etcd backend: etcd client endpoints, comma-separated').env('SYNOD_ETCD_ENDPOINTS'))
    .addOption(new Option('--redis-url <url>', 'redis backend: redis://host:port').env('SYNOD_REDIS_URL'))
    .addOption(new Option('--redlock-urls <list>', 'redlock backend: redis://host:port of N >= 3 independent servers, comma-separated').env('SYNOD_REDLOCK_URLS'))
    .addOption(new Option('--postgres-url <url>', 'postgres backend: postgresql://user@host:port/db').env('SYNOD_POSTGRES_URL'))
    .addOption(new Option('--listen-host <host>', 'bind address of both ports').env('SYNOD_LISTEN_HOST').default('0.0.0.0'))
    .addOption(new Option('--port <port>', 'gRPC port (synod.lock.v1.Lock, health, reflection)').env('SYNOD_LOCK_PORT').default('2390'))
    .addOption(new Option('--metrics-port <port>', 'HTTP port for /metrics /livez /readyz').env('SYNOD_LOCK_METRICS_PORT').default('2391'))
    .addOption(new Option('--log-level <level>', 'debug, info, warn, error').env('SYNOD_LOG_LEVEL').default('info'))
    .addOption(new Option('--tls-ca <file>', 'CA bundle: with --tls-cert and --tls-key, clients need a certificate signed by it (mutual TLS)').env('SYNOD_TLS_CA'))
    .addOption(new Option('--tls-cert <file>', 'server certificate (PEM)').env('SYNOD_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'server key (PEM)').env('SYNOD_TLS_KEY'));
  const o = parseWithEnv(cmd, argv, env);
  const backend = o.backend as BackendKind;
  if (!BACKENDS.includes(backend)) throw new ConfigError(`--backend (SYNOD_LOCK_BACKEND) must be one of ${BACKENDS.join(', ')}, got "${o.backend}"`);
  const cfg: LockConfig = {
    backend,
    consensusEndpoints: list(o.consensusEndpoints),
    sessionTimeoutMs: Number(o.sessionTimeoutMs),
    etcdEndpoints: list(o.etcdEndpoints),
    redisUrl: o.redisUrl ?? '',
    redlockUrls: list(o.redlockUrls),
    postgresUrl: o.postgresUrl ?? '',
    listenHost: o.listenHost!,
    port: port(o.port!, '--port (SYNOD_LOCK_PORT)'),
    metricsPort: port(o.metricsPort!, '--metrics-port (SYNOD_LOCK_METRICS_PORT)'),
    logLevel: o.logLevel as LockConfig['logLevel'],
  };
  if (!['debug', 'info', 'warn', 'error'].includes(cfg.logLevel)) throw new ConfigError(`--log-level must be debug, info, warn or error, got "${o.logLevel}"`);
  if (!Number.isInteger(cfg.sessionTimeoutMs) || cfg.sessionTimeoutMs < 1000) throw new ConfigError(`--session-timeout-ms must be an integer >= 1000, got "${o.sessionTimeoutMs}"`);
  const need = (ok: boolean, what: string): void => {
    if (!ok) throw new ConfigError(`--backend ${backend} needs ${what}`);
  };
  if (backend === 'consensus') need(cfg.consensusEndpoints.length > 0, '--consensus-endpoints (SYNOD_CONSENSUS_ENDPOINTS): host:port of the consensus members');
  if (backend === 'etcd') need(cfg.etcdEndpoints.length > 0, '--etcd-endpoints (SYNOD_ETCD_ENDPOINTS)');
  if (backend === 'redis') need(cfg.redisUrl !== '', '--redis-url (SYNOD_REDIS_URL)');
  if (backend === 'redlock') need(cfg.redlockUrls.length >= 3, '--redlock-urls (SYNOD_REDLOCK_URLS) with at least 3 independent Redis servers');
  if (backend === 'postgres') need(cfg.postgresUrl !== '', '--postgres-url (SYNOD_POSTGRES_URL)');
  cfg.tls = readTlsFiles(o.tlsCa, o.tlsCert, o.tlsKey);
  return cfg;
}
