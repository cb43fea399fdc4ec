/** Errors the driver reports to its callers. (A proposal the core refuses is `ProposalDroppedError` from @app/raft.) */

/** The node was stopped (or failed) before the request completed. */
export class NodeStoppedError extends Error {
  constructor(reason = 'raft node is stopped') {
    super(reason);
    this.name = 'NodeStoppedError';
  }
}

/**
 * A request was not completed within `proposalTimeoutMs` (typically: leadership was lost, or a forwarded
 * proposal was dropped by the leader). For a proposal the outcome is UNKNOWN: the entry may still be
 * committed and applied later; a client retrying must make its command idempotent.
 */
export class RequestTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not complete within ${ms} ms (outcome unknown)`);
    this.name = 'RequestTimeoutError';
  }
}
