/** Errors of the pure core. Invariant checks stay on in production: a broken invariant must stop the node. */

export class RaftInvariantError extends Error {
  constructor(message: string) {
    super(`raft invariant violated: ${message}`);
    this.name = 'RaftInvariantError';
  }
}

export function invariant(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new RaftInvariantError(typeof message === 'string' ? message : message());
}

/** The requested index is older than the latest snapshot. */
export class CompactedError extends Error {
  constructor(readonly index: number) {
    super(`requested index ${index} is unavailable due to compaction`);
    this.name = 'CompactedError';
  }
}

/** The requested index is beyond the last stored entry. */
export class UnavailableError extends Error {
  constructor(readonly index: number) {
    super(`requested entry at index ${index} is unavailable`);
    this.name = 'UnavailableError';
  }
}

/** A proposal could not be accepted (no leader, transfer in progress, pending conf change, ...). */
export class ProposalDroppedError extends Error {
  constructor(reason: string) {
    super(`raft proposal dropped: ${reason}`);
    this.name = 'ProposalDroppedError';
  }
}
