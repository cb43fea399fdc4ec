/**
 * The contract between the nemesis runner (scripts/nemesis/runner.ts) and its workloads
 * (scripts/nemesis/workloads/*.ts). See docs/reliability.md for what a run is.
 *
 * A run: the runner starts a consensus cluster (3 or 5 real member processes on loopback, a TcpProxy on every
 * directed peer link), calls `setup` on each workload of the run, `start`, lets the load run, injects one
 * fault (calling `onFault` of each workload first, so a workload may add its own client-side fault, e.g. pause
 * a lock holder), heals, waits for recovery, calls `stop` (no new operations; in-flight ones finish or are
 * marked indeterminate), then `check` (final reads, invariants), then `teardown` (always, also on errors).
 */
import type { Rng } from '@app/testing';

export const FAULT_KINDS = ['kill', 'pause', 'partition', 'clock', 'restart-all', 'membership'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface RunContext {
  /** The run's seed: every random choice of the run (workload and fault) comes from `rng`. */
  readonly seed: number;
  readonly rng: Rng;
  /** Client addresses of every consensus member (host:port), for SynodClient / --consensus flags. */
  readonly endpoints: string[];
  /** A temp dir of this run (logs of extra processes go here); removed after a passing run. */
  readonly dir: string;
  /** The fault of this run. */
  readonly fault: FaultKind;
  /** Canary mode: safety mechanisms the workload can switch off (lock fencing) are off; violations expected. */
  readonly canary: boolean;
  /** Progress line (prefixed with the run). */
  log(msg: string): void;
}

/** What a workload found. Every string is one human-readable finding. */
export interface WorkloadResult {
  /** Operations completed (acknowledged or failed definitely) during the run. */
  ops: number;
  /** Operations whose outcome is unknown (timeouts): recorded as indeterminate, never as failed. */
  indeterminate: number;
  /** Safety violations: non-linearizable history, broken invariant, lock overlap, money created... */
  violations: string[];
  /** Acknowledged writes whose effect is missing at the end. */
  lost: string[];
  /** Figures worth printing (e.g. { grants: 120, staleRefused: 3 }). */
  stats?: Record<string, number | string>;
}

export interface Workload {
  readonly name: string;
  /** Starts what the workload needs besides the cluster (services, databases, processes). */
  setup(ctx: RunContext): Promise<void>;
  /** Begins issuing operations (returns at once; the load runs in the background). */
  start(): void;
  /** Operations completed so far (the runner measures the rate before the fault). */
  completed(): number;
  /** Called just before the runner injects its fault; a workload may inject a client-side fault of its own. */
  onFault?(kind: FaultKind): Promise<void>;
  /** Called after the runner healed its fault (resume paused clients, ...). */
  onHeal?(kind: FaultKind): Promise<void>;
  /** Stops issuing operations and waits for the in-flight ones (bounded). */
  stop(): Promise<void>;
  /** Final reads and checks, after the cluster has recovered. */
  check(): Promise<WorkloadResult>;
  /** Stops every process and connection the workload started (always called, also after a failure). */
  teardown(): Promise<void>;
}
