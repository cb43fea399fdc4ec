/**
 * The Nest application of a coordinator replica (same pattern as apps/consensus and apps/lock: a plain
 * @grpc/grpc-js server provided to Nest, factory providers with explicit inject lists).
 *
 * Start: store → gRPC port → HTTP → campaign loop (when elected: engine and broker take over, resuming every
 * unfinished transaction and delivery). Stop: resign (the next replica takes over at once) → gRPC → store.
 */
import { BeforeApplicationShutdown, DynamicModule, Module, OnApplicationBootstrap } from '@nestjs/common';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import type { Registry } from 'prom-client';
import { GrpcServerMetrics, ObservabilityServer, createLogger, createRegistry, instrumentService } from '@app/observability';
import { SERVICE_NAMES, loadTxnProto } from '@app/proto';
import { ConsensusTxnStore, EtcdTxnStore } from '@app/txn';
import type { Leadership, TxnStore } from '@app/txn';
import type { MessageBroker } from './broker.js';
import type { TxnConfig } from './config.js';
import { CoordinatorService } from './coordinator-service.js';
import { TxnEngine } from './engine.js';
import type { Logger } from './engine.js';
import { TxnMetrics } from './metrics.js';

export const CONFIG = Symbol('TXN_CONFIG');
export const LOGGER = Symbol('LOGGER');
export const REGISTRY = Symbol('REGISTRY');
export const STORE = Symbol('STORE');
export const BROKER = Symbol('BROKER');


export class CoordinatorServer implements OnApplicationBootstrap, BeforeApplicationShutdown {
  readonly server: grpc.Server;
  readonly health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAMES.coordinator]: 'NOT_SERVING' });
  http: ObservabilityServer | undefined;
  port = 0;
  private lead: Leadership | undefined;
  private readonly stop$ = new AbortController();
  private campaigning: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly cfg: TxnConfig,
    private readonly log: Logger,
    private readonly registry: Registry,
    private readonly store: TxnStore,
    readonly engine: TxnEngine,
    private readonly metrics: TxnMetrics,
    private readonly broker: MessageBroker | undefined,
  ) {
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': 1024 * 1024 });
    const proto = loadTxnProto();
    this.server.addService(
      proto.Coordinator.service,
      instrumentService(proto.Coordinator.service, new CoordinatorService(engine, store, broker, cfg.advertise).implementation(), new GrpcServerMetrics(registry)),
    );
    this.health.addToServer(this.server);
    new ReflectionService(proto.packageDefinition).addToServer(this.server);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.store.start();
    const host = this.cfg.listenHost.includes(':') ? `[${this.cfg.listenHost}]` : this.cfg.listenHost;
    this.port = await new Promise<number>((res, rej) =>
      this.server.bindAsync(`${host}:${this.cfg.port}`, this.credentials(), (err, p) => (err ? rej(new Error(`cannot listen on ${host}:${this.cfg.port}: ${err.message}`)) : res(p))),
    );
    this.health.setStatus('', 'SERVING');
    this.health.setStatus(SERVICE_NAMES.coordinator, 'SERVING');
    this.http = await ObservabilityServer.listen({ registry: this.registry, host: this.cfg.listenHost, port: this.cfg.metricsPort });
    this.log.info(`serving: gRPC ${this.cfg.listenHost}:${this.port} as ${this.cfg.advertise}, metrics ${this.http.url}/metrics; decision log ${this.cfg.root} on ${this.cfg.store} ${(this.cfg.store === 'etcd' ? this.cfg.etcdEndpoints : this.cfg.consensusEndpoints).join(',')}`);
    this.campaigning = this.campaignLoop();
  }

  private credentials(): grpc.ServerCredentials {
    const t = this.cfg.tls;
    return t ? grpc.ServerCredentials.createSsl(t.ca, [{ private_key: t.key, cert_chain: t.cert }], true) : grpc.ServerCredentials.createInsecure();
  }

  private async campaignLoop(): Promise<void> {
    while (!this.stop$.signal.aborted) {
      try {
        const lead = await this.store.campaign(this.cfg.advertise, this.stop$.signal);
        this.lead = lead;
        this.metrics.isLeader.set(1);
        await this.engine.becomeLeader(lead);
        await this.broker?.becomeLeader(lead);
        await new Promise<void>((r) => {
          if (lead.signal.aborted) r();
          lead.signal.addEventListener('abort', () => r(), { once: true });
        });
        this.metrics.isLeader.set(0);
        this.broker?.stepDown();
        this.log.warn(`leadership (epoch ${lead.epoch}) ended`);
      } catch (err) {
        if (this.stop$.signal.aborted) break;
        this.log.warn(`campaign: ${(err as Error).message}; retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  beforeApplicationShutdown(signal?: string): Promise<void> {
    this.stopping ??= this.stop(signal);
    return this.stopping;
  }

  private async stop(signal?: string): Promise<void> {
    this.log.info(`stopping${signal ? ` (${signal})` : ''}`);
    this.stop$.abort(new Error('stopping'));
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus(SERVICE_NAMES.coordinator, 'NOT_SERVING');
    await this.lead?.resign().catch(() => undefined);
    this.engine.close();
    await this.broker?.close().catch(() => undefined);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    await this.campaigning?.catch(() => undefined);
    await this.store.close().catch(() => undefined);
    await this.http?.close();
    this.log.info('stopped');
  }
}

@Module({})
export class TxnModule {
  static forRoot(cfg: TxnConfig, brokerFactory?: (store: TxnStore, metrics: TxnMetrics, log: Logger) => MessageBroker): DynamicModule {
    return {
      module: TxnModule,
      providers: [
        { provide: CONFIG, useValue: cfg },
        { provide: LOGGER, useFactory: (c: TxnConfig) => createLogger(c.logLevel, `txn ${c.advertise}`), inject: [CONFIG] },
        { provide: REGISTRY, useFactory: () => createRegistry() },
        {
          provide: STORE,
          useFactory: (c: TxnConfig) =>
            c.store === 'etcd'
              ? new EtcdTxnStore({ endpoints: c.etcdEndpoints, prefix: `synod${c.root.replace(/\/+$/, '')}/`, sessionTimeoutMs: c.sessionTimeoutMs })
              : new ConsensusTxnStore({ endpoints: c.consensusEndpoints, root: c.root, sessionTimeoutMs: c.sessionTimeoutMs, tls: c.tls }),
          inject: [CONFIG],
        },
        { provide: TxnMetrics, useFactory: (r: Registry) => new TxnMetrics(r), inject: [REGISTRY] },
        { provide: TxnEngine, useFactory: (c: TxnConfig, s: TxnStore, m: TxnMetrics, l: Logger) => new TxnEngine(s, c.engine, m, l), inject: [CONFIG, STORE, TxnMetrics, LOGGER] },
        { provide: BROKER, useFactory: (s: TxnStore, m: TxnMetrics, l: Logger) => brokerFactory?.(s, m, l), inject: [STORE, TxnMetrics, LOGGER] },
        {
          provide: CoordinatorServer,
          useFactory: (c: TxnConfig, l: Logger, r: Registry, s: TxnStore, e: TxnEngine, m: TxnMetrics, b: MessageBroker | undefined) => new CoordinatorServer(c, l, r, s, e, m, b),
          inject: [CONFIG, LOGGER, REGISTRY, STORE, TxnEngine, TxnMetrics, BROKER],
        },
      ],
    };
  }
}
