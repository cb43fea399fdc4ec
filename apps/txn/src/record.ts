/**
 * The decision log's record of one global transaction, as stored (JSON) under `tx/<global id>` in the
 * replicated store, and its validation.
 */
export type TxnStateName = 'ACTIVE' | 'PREPARING' | 'COMMITTED' | 'ABORTED' | 'NEEDS_ATTENTION';
export type Decision = 'COMMITTED' | 'ABORTED';
export type Vote = 'NONE' | 'YES' | 'NO' | 'TIMEOUT';
export type Outcome = 'NONE' | 'COMMITTED' | 'ABORTED';

export interface BranchRecord {
  branchId: string;
  participant: string;
  /** base64 */
  payload: string;
  vote: Vote;
  outcome: Outcome;
  attempts: number;
  lastError: string;
}

export interface TxnRecord {
  globalId: string;
  state: TxnStateName;
  decision?: Decision;
  branches: BranchRecord[];
  createdAtMs: number;
  deadlineMs: number;
  decidedAtMs?: number;
  reason?: string;
  /** The epoch of the leader that last wrote the record. */
  epoch: number;
  completed: boolean;
  resolvedBy?: string;
}

export const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function encodeRecord(r: TxnRecord): Buffer {
  return Buffer.from(JSON.stringify(r), 'utf8');
}

export function decodeRecord(b: Buffer): TxnRecord {
  return JSON.parse(b.toString('utf8')) as TxnRecord;
}

/** The wire shape (synod.txn.v1.Transaction). */
export function toWire(r: TxnRecord): Record<string, unknown> {
  return {
    globalId: r.globalId,
    state: r.state,
    decision: r.decision ?? 'TXN_STATE_UNSPECIFIED',
    branches: r.branches.map((b) => ({ branchId: b.branchId, participant: b.participant, payload: Buffer.from(b.payload, 'base64'), vote: b.vote, outcome: b.outcome, attempts: b.attempts, lastError: b.lastError })),
    completed: r.completed,
    createdAtMs: r.createdAtMs,
    deadlineMs: r.deadlineMs,
    decidedAtMs: r.decidedAtMs ?? 0,
    reason: r.reason ?? '',
    epoch: r.epoch,
    resolvedBy: r.resolvedBy ?? '',
  };
}
