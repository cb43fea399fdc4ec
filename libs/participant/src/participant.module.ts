/**
 * NestJS wiring of a participant, in the repository's pattern (apps/lock, apps/consensus): factory providers
 * with explicit `inject` lists, and a plain @grpc/grpc-js server (Nest's gRPC transport is not used).
 *
 *   @Module({ imports: [ParticipantModule.forRoot({ connectionString, name: 'orders', work, coordinator: ['txn:7400'], host: '0.0.0.0', port: 7410 })] })
 *
 * Start (onApplicationBootstrap): branches table, first recovery pass, gRPC port. Stop
 * (beforeApplicationShutdown, with `app.enableShutdownHooks()`): recovery timer, gRPC port, owned pool.
 */
import { BeforeApplicationShutdown, DynamicModule, Module, OnApplicationBootstrap } from '@nestjs/common';
import { PostgresParticipant, PostgresParticipantOptions } from './participant.js';

export const PARTICIPANT_OPTIONS = Symbol('PARTICIPANT_OPTIONS');

export interface ParticipantModuleOptions extends PostgresParticipantOptions {
  /** Where the Participant gRPC service listens (port 0 = any free port; see ParticipantLifecycle.port). */
  host: string;
  port: number;
}

export class ParticipantLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  /** The bound gRPC port (after bootstrap). */
  port = 0;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly options: ParticipantModuleOptions,
    readonly participant: PostgresParticipant,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.port = await this.participant.listen(this.options.host, this.options.port);
  }

  beforeApplicationShutdown(): Promise<void> {
    this.stopping ??= this.participant.close();
    return this.stopping;
  }
}

@Module({})
export class ParticipantModule {
  static forRoot(options: ParticipantModuleOptions): DynamicModule {
    return {
      module: ParticipantModule,
      providers: [
        { provide: PARTICIPANT_OPTIONS, useValue: options },
        { provide: PostgresParticipant, useFactory: (o: ParticipantModuleOptions) => new PostgresParticipant(o), inject: [PARTICIPANT_OPTIONS] },
        {
          provide: ParticipantLifecycle,
          useFactory: (o: ParticipantModuleOptions, p: PostgresParticipant) => new ParticipantLifecycle(o, p),
          inject: [PARTICIPANT_OPTIONS, PostgresParticipant],
        },
      ],
      exports: [PostgresParticipant, ParticipantLifecycle],
    };
  }
}
