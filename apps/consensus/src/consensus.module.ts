/**
 * The Nest application of a consensus member: configuration, DI and lifecycle. Nest's own gRPC transport is
 * not used (it cannot give bidi streams with backpressure, the standard health and reflection services,
 * mutual TLS on two ports and our instrumentation together); the gRPC servers are @grpc/grpc-js servers
 * provided here. Factory providers with explicit `inject` lists: no reliance on emitted decorator metadata
 * (tsx/esbuild does not emit it).
 *
 * Start (onApplicationBootstrap): peer port → Raft node (WAL recovery, replay) → client port → HTTP.
 * Stop (beforeApplicationShutdown, on SIGTERM/SIGINT via enableShutdownHooks): a leader hands leadership
 * over (bounded) → client port closes → node stops → peer port closes → HTTP closes.
 */
import { BeforeApplicationShutdown, DynamicModule, Module, OnApplicationBootstrap } from '@nestjs/common';
import type { Registry } from 'prom-client';
import { ObservabilityServer, createRegistry } from '@app/observability';
import { ConsensusConfig } from './config.js';
import { Logger, createLogger } from './logger.js';
import { ConsensusMember } from './member.js';
import { ClientGrpcServer, PeerGrpcServer, peerChannelCredentials } from './servers.js';

export const CONFIG = Symbol('CONSENSUS_CONFIG');
export const LOGGER = Symbol('LOGGER');
export const REGISTRY = Symbol('REGISTRY');

export class MemberLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  http: ObservabilityServer | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly cfg: ConsensusConfig,
    private readonly log: Logger,
    private readonly registry: Registry,
    readonly member: ConsensusMember,
    readonly peer: PeerGrpcServer,
    readonly client: ClientGrpcServer,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const peerPort = await this.peer.listen();
    await this.member.start();
    const clientPort = await this.client.listen();
    this.http = await ObservabilityServer.listen({ registry: this.registry, host: this.cfg.listenHost, port: this.cfg.metricsPort, raftNode: this.member.node });
    this.log.info(
      `serving: client ${this.cfg.listenHost}:${clientPort} (Coordination, Cluster, health, reflection${this.cfg.tls ? ', mTLS' : ''}), ` +
        `peer ${this.cfg.listenHost}:${peerPort}, metrics ${this.http.url}/metrics; data ${this.cfg.dataDir}`,
    );
  }

  beforeApplicationShutdown(signal?: string): Promise<void> {
    this.stopping ??= this.stop(signal);
    return this.stopping;
  }

  private async stop(signal?: string): Promise<void> {
    this.log.info(`stopping${signal ? ` (${signal})` : ''}`);
    await this.member.handOver(this.cfg.shutdownTransferMs);
    this.member.closeStreams();
    await this.client.close();
    await this.member.stop();
    await this.peer.close();
    await this.http?.close();
    this.log.info('stopped');
  }
}

@Module({})
export class ConsensusModule {
  static forRoot(cfg: ConsensusConfig): DynamicModule {
    return {
      module: ConsensusModule,
      providers: [
        { provide: CONFIG, useValue: cfg },
        { provide: LOGGER, useFactory: (c: ConsensusConfig) => createLogger(c.nodeId, c.logLevel), inject: [CONFIG] },
        { provide: REGISTRY, useFactory: () => createRegistry() },
        { provide: PeerGrpcServer, useFactory: (c: ConsensusConfig) => new PeerGrpcServer(c), inject: [CONFIG] },
        {
          provide: ConsensusMember,
          useFactory: (c: ConsensusConfig, r: Registry, l: Logger, p: PeerGrpcServer) => new ConsensusMember(c, r, l, p.server, peerChannelCredentials(c)),
          inject: [CONFIG, REGISTRY, LOGGER, PeerGrpcServer],
        },
        {
          provide: ClientGrpcServer,
          useFactory: (c: ConsensusConfig, m: ConsensusMember, r: Registry) => new ClientGrpcServer(c, m, r),
          inject: [CONFIG, ConsensusMember, REGISTRY],
        },
        {
          provide: MemberLifecycle,
          useFactory: (c: ConsensusConfig, l: Logger, r: Registry, m: ConsensusMember, p: PeerGrpcServer, cl: ClientGrpcServer) => new MemberLifecycle(c, l, r, m, p, cl),
          inject: [CONFIG, LOGGER, REGISTRY, ConsensusMember, PeerGrpcServer, ClientGrpcServer],
        },
      ],
      exports: [MemberLifecycle, ConsensusMember],
    };
  }
}
