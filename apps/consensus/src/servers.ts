/**
 * The member's two gRPC servers (plain @grpc/grpc-js `grpc.Server`s, provided to Nest as providers):
 * - client port: Coordination + Cluster (wrapped by the gRPC server metrics), grpc.health.v1.Health, server
 *   reflection; message size bounded by --max-request-bytes (grpc-js answers RESOURCE_EXHAUSTED above it);
 * - peer port: the Raft service of GrpcPeerTransport.
 * With TLS configured both require a client certificate signed by the cluster CA (mutual TLS).
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, ServingStatus } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import type { Registry } from 'prom-client';
import { PEER_SERVER_OPTIONS } from '@app/peer';
import { GrpcServerMetrics, instrumentService } from '@app/observability';
import { SERVICE_NAMES, loadConsensusProto } from '@app/proto';
import { ConsensusConfig } from './config.js';
import { ClusterService } from './cluster.js';
import { CoordinationService } from './coordination.js';
import { ConsensusMember } from './member.js';

export function serverCredentials(cfg: ConsensusConfig): grpc.ServerCredentials {
  if (!cfg.tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(cfg.tls.ca, [{ private_key: cfg.tls.key, cert_chain: cfg.tls.cert }], true);
}

export function peerChannelCredentials(cfg: ConsensusConfig): grpc.ChannelCredentials {
  if (!cfg.tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(cfg.tls.ca, cfg.tls.key, cfg.tls.cert);
}

function bind(server: grpc.Server, host: string, port: number, creds: grpc.ServerCredentials, what: string): Promise<number> {
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, p) => (err ? reject(new Error(`cannot listen on ${address} (${what}): ${err.message}`)) : resolve(p))),
  );
}

function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

export class PeerGrpcServer {
  readonly server = new grpc.Server(PEER_SERVER_OPTIONS);
  port = 0;
  constructor(private readonly cfg: ConsensusConfig) {}

  async listen(): Promise<number> {
    this.port = await bind(this.server, this.cfg.listenHost, this.cfg.peerPort, serverCredentials(this.cfg), 'peer port');
    return this.port;
  }

  close(): Promise<void> {
    return shutdown(this.server, 500);
  }
}

export class ClientGrpcServer {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  port = 0;
  private healthTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly cfg: ConsensusConfig,
    private readonly member: ConsensusMember,
    registry: Registry,
  ) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': cfg.maxRequestBytes,
      'grpc.max_send_message_length': Math.max(64 * 1024 * 1024, cfg.maxDataBytes * 2),
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    const proto = loadConsensusProto();
    const metrics = new GrpcServerMetrics(registry);
    this.server.addService(proto.Coordination.service, instrumentService(proto.Coordination.service, new CoordinationService(member).implementation(), metrics));
    this.server.addService(proto.Cluster.service, instrumentService(proto.Cluster.service, new ClusterService(member).implementation(), metrics));
    this.health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAMES.coordination]: 'NOT_SERVING', [SERVICE_NAMES.cluster]: 'SERVING' });
    this.health.addToServer(this.server);
    new ReflectionService(proto.packageDefinition).addToServer(this.server);
  }

  async listen(): Promise<number> {
    this.port = await bind(this.server, this.cfg.listenHost, this.cfg.clientPort, serverCredentials(this.cfg), 'client port');
    this.updateHealth();
    this.healthTimer = setInterval(() => this.updateHealth(), 250);
    this.healthTimer.unref();
    return this.port;
  }

  /** SERVING while the Raft node runs and knows a leader. */
  updateHealth(force?: ServingStatus): void {
    const s = this.member.status();
    const st: ServingStatus = force ?? (s.phase === 'running' && s.leader !== 0 ? 'SERVING' : 'NOT_SERVING');
    this.health.setStatus('', st);
    this.health.setStatus(SERVICE_NAMES.coordination, st);
  }

  async close(): Promise<void> {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.updateHealth('NOT_SERVING');
    await shutdown(this.server, 1000);
  }
}
