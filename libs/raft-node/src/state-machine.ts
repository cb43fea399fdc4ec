import { Entry } from '@app/raft';

/**
 * The application replicated by Raft. Must be deterministic: every node applies the same commands in the same
 * order and must reach the same state. Called only from the driver's Ready loop, one call at a time.
 *
 * The instance handed to a RaftNode must be empty: on start the node restores it from the latest snapshot (if
 * any) and then re-applies the committed log after it.
 */
export interface StateMachine {
  /**
   * Apply one committed command (`entry.data` is the command as proposed, without the driver's header). The
   * return value is handed to the proposer's promise. A throw is treated as the command's result too (the
   * proposer's promise rejects with it), so it must be deterministic and leave the state unchanged.
   */
  apply(entry: Entry): unknown;
  /** Serialize the whole state (taken at the last applied index). */
  snapshot(): Uint8Array;
  /** Replace the whole state with a snapshot produced by `snapshot()` (possibly on another node). */
  restore(data: Uint8Array): void;
}
