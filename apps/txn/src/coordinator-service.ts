/**
 * gRPC `synod.txn.v1.Coordinator` over the TxnEngine (and the MessageBroker for Publish/Subscribe). Writes
 * are served by the leading replica only; another replica answers UNAVAILABLE with the leader's address in
 * the `synod-txn-leader` trailer (libs/client's TxnClient follows it). Status and List read the replicated
 * store and are served by any replica.
 */
import * as grpc from '@grpc/grpc-js';
import { NotLeaderError, StoreUnavailableError } from '@app/txn';
import type { TxnStore } from '@app/txn';
import type { MessageBroker } from './broker.js';
import { TxnEngine, TxnError, validateId } from './engine.js';
import type { Decision, TxnStateName } from './record.js';
import { toWire } from './record.js';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export const LEADER_KEY = 'synod-txn-leader';

const STATES: TxnStateName[] = ['ACTIVE', 'PREPARING', 'COMMITTED', 'ABORTED', 'NEEDS_ATTENTION'];

export class CoordinatorService {
  constructor(
    private readonly engine: TxnEngine,
    private readonly store: TxnStore,
    private readonly broker: MessageBroker | undefined,
    private readonly self: string,
  ) {}

  private async status(err: unknown): Promise<Partial<grpc.StatusObject>> {
    if (err instanceof TxnError && err.code === 'UNAVAILABLE' || err instanceof NotLeaderError) {
      const leader = await this.store.leader().catch(() => undefined);
      const md = new grpc.Metadata();
      if (leader && leader !== this.self) md.set(LEADER_KEY, leader);
      return {
        code: grpc.status.UNAVAILABLE,
        details: `coordinator ${this.self} is not the leader; ${leader && leader !== this.self ? `the leader is at ${leader}` : 'no leader yet (election in progress); retry shortly'}`,
        metadata: md,
      };
    }
    if (err instanceof TxnError) return { code: grpc.status[err.code], details: err.message };
    if (err instanceof StoreUnavailableError) return { code: grpc.status.UNAVAILABLE, details: `the decision log is unavailable: ${err.message}` };
    return { code: grpc.status.INTERNAL, details: `coordinator: ${err instanceof Error ? err.message : String(err)}` };
  }

  private handle(f: (req: Msg) => Promise<Msg>): grpc.handleUnaryCall<Msg, Msg> {
    return (call, cb) => {
      f(call.request).then(
        (r) => cb(null, r),
        (err: unknown) => void this.status(err).then((s) => cb(s as grpc.ServiceError)),
      );
    };
  }

  implementation(): grpc.UntypedServiceImplementation {
    const e = this.engine;
    return {
      Begin: this.handle(async (r) => {
        const timeoutMs = r.timeoutMs === 0 || r.timeoutMs === undefined ? 30_000 : r.timeoutMs;
        if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 3_600_000) throw new TxnError('INVALID_ARGUMENT', `timeout_ms is ${timeoutMs}; it must be between 100 and 3600000`);
        const gid = r.globalId ? validateId(r.globalId, 'global_id') : undefined;
        const rec = await e.begin(timeoutMs, gid);
        return { globalId: rec.globalId, deadlineMs: rec.deadlineMs };
      }),
      RegisterBranch: this.handle(async (r) => {
        const gid = validateId(r.globalId, 'global_id');
        const branchId = validateId(r.branchId, 'branch_id');
        if (typeof r.participant !== 'string' || !/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(r.participant))
          throw new TxnError('INVALID_ARGUMENT', `participant must be the host:port of a Participant gRPC service, got "${String(r.participant).slice(0, 100)}"`);
        return { branches: await e.register(gid, branchId, r.participant, Buffer.from(r.payload ?? [])) };
      }),
      Commit: this.handle(async (r) => {
        const rec = await e.commit(validateId(r.globalId, 'global_id'), Boolean(r.waitForCompletion));
        return { state: rec.decision ?? rec.state, reason: rec.reason ?? '', completed: rec.completed };
      }),
      Abort: this.handle(async (r) => {
        const rec = await e.abort(validateId(r.globalId, 'global_id'), typeof r.reason === 'string' ? r.reason.slice(0, 1000) : '');
        return { state: rec.state };
      }),
      Status: this.handle(async (r) => toWire(await e.status(validateId(r.globalId, 'global_id')))),
      List: this.handle(async (r) => {
        const states = ((r.states as string[]) ?? []).map((s) => {
          if (!STATES.includes(s as TxnStateName)) throw new TxnError('INVALID_ARGUMENT', `unknown state ${s}; use ${STATES.join(', ')}`);
          return s as TxnStateName;
        });
        const limit = r.limit ? r.limit : 1000;
        if (limit < 1 || limit > 10_000) throw new TxnError('INVALID_ARGUMENT', `limit must be between 1 and 10000, got ${limit}`);
        return { transactions: (await e.list(states, limit)).map(toWire) };
      }),
      Resolve: this.handle(async (r) => {
        if (r.decision !== 'COMMITTED' && r.decision !== 'ABORTED') throw new TxnError('INVALID_ARGUMENT', `decision must be COMMITTED or ABORTED, got ${r.decision}`);
        return toWire(await e.resolve(validateId(r.globalId, 'global_id'), r.decision as Decision, String(r.reason ?? '').slice(0, 1000), String(r.operator ?? '').slice(0, 200)));
      }),
      Publish: this.handle(async (r) => {
        if (!this.broker) throw new TxnError('FAILED_PRECONDITION', 'this coordinator has no message broker configured');
        const lead = e.leading;
        if (!lead) throw new TxnError('UNAVAILABLE', 'not the leader');
        const messageId = validateId(r.messageId, 'message_id');
        const topic = validateId(r.topic, 'topic');
        if (typeof r.key !== 'string' || r.key.length > 256) throw new TxnError('INVALID_ARGUMENT', 'key must be a string of at most 256 characters');
        const payload = Buffer.from(r.payload ?? []);
        if (payload.length > 256 * 1024) throw new TxnError('RESOURCE_EXHAUSTED', `payload is ${payload.length} bytes; the limit is 262144`);
        return this.broker.publish({ messageId, topic, key: r.key, payload, headers: (r.headers as Record<string, string>) ?? {} }, lead);
      }),
      Subscribe: this.handle(async (r) => {
        if (!this.broker) throw new TxnError('FAILED_PRECONDITION', 'this coordinator has no message broker configured');
        const lead = e.leading;
        if (!lead) throw new TxnError('UNAVAILABLE', 'not the leader');
        const topic = validateId(r.topic, 'topic');
        const consumer = validateId(r.consumer, 'consumer');
        if (typeof r.address !== 'string' || !/^[A-Za-z0-9.-]+:\d{1,5}$/.test(r.address)) throw new TxnError('INVALID_ARGUMENT', 'address must be the host:port of a Consumer gRPC service');
        await this.broker.subscribe({ topic, consumer, address: r.address }, lead);
        return {};
      }),
    };
  }
}
