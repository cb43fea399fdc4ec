/**
 * Where recovery learns the outcome of a global transaction. The SDK's seam: `recover()` takes any
 * {@link DecisionSource}; the default one asks the Coordinator's `Status` over gRPC.
 */
import * as grpc from '@grpc/grpc-js';
import { loadTxnProto } from '@app/proto';
import { messageOf } from './errors.js';

export type Decision = 'COMMITTED' | 'ABORTED' | 'UNDECIDED';

/**
 * The decision of global transaction `globalId`. `UNDECIDED` (or a rejected promise) leaves the prepared branch
 * as it is; recovery asks again later. Must never answer COMMITTED/ABORTED unless that decision is durable.
 */
export type DecisionSource = (globalId: string) => Promise<Decision>;

/** The relevant part of a `synod.txn.v1.Transaction` as decoded with PROTO_LOADER_OPTIONS (enums as names). */
export interface TransactionStatus {
  globalId?: string;
  state?: string;
  decision?: string;
}

/**
 * Maps a Coordinator `Status` answer to a decision. COMMITTED / ABORTED are final (unknown ids answer ABORTED:
 * presumed abort). NEEDS_ATTENTION carries the decision in `decision` once made (phase two could not deliver
 * it); without one it stays undecided. ACTIVE / PREPARING / anything else: not decided yet.
 */
export function decisionOf(t: TransactionStatus): Decision {
  switch (t.state) {
    case 'COMMITTED':
      return 'COMMITTED';
    case 'ABORTED':
      return 'ABORTED';
    case 'NEEDS_ATTENTION':
      return t.decision === 'COMMITTED' || t.decision === 'ABORTED' ? t.decision : 'UNDECIDED';
    default:
      return 'UNDECIDED';
  }
}

export interface CoordinatorDecisionsOptions {
  /** Per-call deadline (ms, default 3000). */
  timeoutMs?: number;
  credentials?: grpc.ChannelCredentials;
}

/** A {@link DecisionSource} over the Coordinator service, with `close()` for its channels. */
export interface CoordinatorDecisions extends DecisionSource {
  close(): void;
}

/**
 * The default decision source: `Coordinator.Status(global_id)` on each endpoint in turn (starting with the one
 * that answered last); an endpoint that fails in any way (UNAVAILABLE, a deadline, a member that is not the
 * leader) is skipped. Rejects when no endpoint answered: recovery then leaves the branch prepared.
 */
export function coordinatorDecisions(endpoints: string[], options: CoordinatorDecisionsOptions = {}): CoordinatorDecisions {
  if (endpoints.length === 0) throw new Error('coordinatorDecisions: at least one Coordinator endpoint is required');
  const { Coordinator } = loadTxnProto();
  const creds = options.credentials ?? grpc.credentials.createInsecure();
  const clients = endpoints.map((e) => new Coordinator(e, creds));
  const timeoutMs = options.timeoutMs ?? 3000;
  let preferred = 0;

  const status = (client: grpc.Client, globalId: string): Promise<TransactionStatus> =>
    new Promise((resolve, reject) => {
      const call = (client as unknown as Record<string, (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: TransactionStatus) => void) => void>).status;
      call.call(client, { globalId }, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });

  const source = async (globalId: string): Promise<Decision> => {
    const errors: string[] = [];
    for (let i = 0; i < clients.length; i++) {
      const k = (preferred + i) % clients.length;
      try {
        const t = await status(clients[k], globalId);
        preferred = k;
        return decisionOf(t);
      } catch (e) {
        errors.push(`${endpoints[k]}: ${messageOf(e)}`);
      }
    }
    throw new Error(`no Coordinator answered Status(${globalId}): ${errors.join('; ')}`);
  };
  return Object.assign(source, {
    close: (): void => {
      for (const c of clients) c.close();
    },
  });
}
