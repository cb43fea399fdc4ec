/**
 * The Nest application of a lock service instance: configuration, DI and lifecycle, as apps/consensus does it
 * (a plain @grpc/grpc-js server provided to Nest; factory providers with explicit `inject` lists).
 *
 * Start: backend (connect, create tables / directories) → gRPC port → HTTP (/metrics, /livez, /readyz).
 * Stop (SIGTERM/SIGINT): `lost` SERVICE_SHUTDOWN to every holder and waiter attached here, their entries
 * released → gRPC port closed → backend closed → HTTP closed.
 */
import { BeforeApplicationShutdown, DynamicModule, Module, OnApplicationBootstrap } from '@nestjs/common';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import type { Registry } from 'prom-client';
import { GrpcServerMetrics, ObservabilityServer, createLogger, createRegistry, instrumentService } from '@app/observability';
import { SERVICE_NAMES, loadLockProto } from '@app/proto';
import type { LockBackend } from '@app/lock';
import { createBackend } from './backends.js';
import type { LockConfig } from './config.js';
import { LockService } from './lock-service.js';
import type { Logger } from './lock-service.js';
import { LockMetrics } from './metrics.js';

export const CONFIG = Symbol('LOCK_CONFIG');
export const LOGGER = Symbol('LOGGER');
export const REGISTRY = Symbol('REGISTRY');
export const BACKEND = Symbol('BACKEND');


export class LockServer implements OnApplicationBootstrap, BeforeApplicationShutdown {
  readonly server: grpc.Server;
  readonly health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAMES.lock]: 'NOT_SERVING' });
  http: ObservabilityServer | undefined;
  port = 0;
  private ready = false;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly cfg: LockConfig,
    private readonly log: Logger,
    private readonly registry: Registry,
    readonly service: LockService,
  ) {
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024, 'grpc.keepalive_permit_without_calls': 1, 'grpc.http2.min_ping_interval_without_data_ms': 5_000 });
    const proto = loadLockProto();
    this.server.addService(proto.Lock.service, instrumentService(proto.Lock.service, service.implementation(), new GrpcServerMetrics(registry)));
    this.health.addToServer(this.server);
    new ReflectionService(proto.packageDefinition).addToServer(this.server);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.service.backend.start();
    const creds = this.cfg.tls ? grpc.ServerCredentials.createSsl(this.cfg.tls.ca, [{ private_key: this.cfg.tls.key, cert_chain: this.cfg.tls.cert }], true) : grpc.ServerCredentials.createInsecure();
    const host = this.cfg.listenHost.includes(':') ? `[${this.cfg.listenHost}]` : this.cfg.listenHost;
    this.port = await new Promise<number>((res, rej) =>
      this.server.bindAsync(`${host}:${this.cfg.port}`, creds, (err, p) => (err ? rej(new Error(`cannot listen on ${host}:${this.cfg.port}: ${err.message}`)) : res(p))),
    );
    this.ready = true;
    this.health.setStatus('', 'SERVING');
    this.health.setStatus(SERVICE_NAMES.lock, 'SERVING');
    this.http = await ObservabilityServer.listen({
      registry: this.registry,
      host: this.cfg.listenHost,
      port: this.cfg.metricsPort,
      readiness: () => (this.ready ? { ok: true, message: `serving (${this.cfg.backend} backend)` } : { ok: false, message: 'stopping' }),
    });
    this.log.info(`serving: gRPC ${this.cfg.listenHost}:${this.port} (synod.lock.v1.Lock, health, reflection${this.cfg.tls ? ', mTLS' : ''}), metrics ${this.http.url}/metrics; backend ${this.cfg.backend}`);
  }

  beforeApplicationShutdown(signal?: string): Promise<void> {
    this.stopping ??= this.stop(signal);
    return this.stopping;
  }

  private async stop(signal?: string): Promise<void> {
    this.log.info(`stopping${signal ? ` (${signal})` : ''}`);
    this.ready = false;
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus(SERVICE_NAMES.lock, 'NOT_SERVING');
    await this.service.shutdown();
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
    await this.service.backend.close().catch((err: unknown) => this.log.warn(`closing the backend: ${(err as Error).message}`));
    await this.http?.close();
    this.log.info('stopped');
  }
}

@Module({})
export class LockModule {
  static forRoot(cfg: LockConfig): DynamicModule {
    return {
      module: LockModule,
      providers: [
        { provide: CONFIG, useValue: cfg },
        { provide: LOGGER, useFactory: (c: LockConfig) => createLogger(c.logLevel, `lock :${c.port}`), inject: [CONFIG] },
        { provide: REGISTRY, useFactory: () => createRegistry() },
        { provide: BACKEND, useFactory: (c: LockConfig) => createBackend(c), inject: [CONFIG] },
        { provide: LockMetrics, useFactory: (r: Registry, c: LockConfig) => new LockMetrics(r, c.backend), inject: [REGISTRY, CONFIG] },
        { provide: LockService, useFactory: (b: LockBackend, m: LockMetrics, l: Logger) => new LockService(b, m, l), inject: [BACKEND, LockMetrics, LOGGER] },
        { provide: LockServer, useFactory: (c: LockConfig, l: Logger, r: Registry, s: LockService) => new LockServer(c, l, r, s), inject: [CONFIG, LOGGER, REGISTRY, LockService] },
      ],
    };
  }
}
