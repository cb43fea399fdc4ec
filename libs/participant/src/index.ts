/**
 * @app/participant — the Participant SDK of Synod's two-phase-commit coordinator: a branch done in PostgreSQL
 * with PREPARE TRANSACTION, served as synod.txn.v1.Participant, with recovery of prepared branches by asking
 * the coordinator. docs/participant.md.
 */
export { BRANCHES_TABLE, PostgresParticipant } from './participant.js';
export type {
  Branch,
  NoVote,
  ParticipantLogger,
  ParticipantStats,
  PhaseTwoResult,
  PostgresParticipantOptions,
  PrepareRequest,
  PrepareResult,
  PreparedBranch,
  RecoveryReport,
  Work,
} from './participant.js';
export { coordinatorDecisions, decisionOf } from './decisions.js';
export type { CoordinatorDecisions, CoordinatorDecisionsOptions, Decision, DecisionSource, TransactionStatus } from './decisions.js';
export { ParticipantError, isUnavailable } from './errors.js';
export type { ParticipantErrorCode } from './errors.js';
export { GID_PREFIX, MAX_GID_BYTES, MAX_NAME_BYTES, branchGid, decodePart, encodePart, gidPrefix, parseGid } from './gid.js';
export type { ParsedGid } from './gid.js';
export { PARTICIPANT_OPTIONS, ParticipantLifecycle, ParticipantModule } from './participant.module.js';
export type { ParticipantModuleOptions } from './participant.module.js';
