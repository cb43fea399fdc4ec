/**
 * Health checks behind /livez and /readyz (see http-server.ts). A check answers { ok, reason }; the server
 * turns `ok: false` (or a check that throws) into 503 with the reason as the body.
 */
import type { RaftNodeStatus } from '@app/raft-node';

export interface HealthResult {
  ok: boolean;
  /** Why not (shown in the 503 body), or a short note when ok. */
  reason?: string;
}

export type HealthCheck = () => HealthResult | Promise<HealthResult>;

/** What the Raft checks need of a RaftNode. */
export interface StatusSource {
  status(): RaftNodeStatus;
}

/**
 * Ready when the node runs, knows a leader, and has applied everything it knew to be committed when it
 * started (its recovered commit index: a restarted member does not serve reads from a state older than what
 * it had already acknowledged). Create it after node.start() (or it takes the commit index the first time it
 * sees the node running). Once caught up, it stays ready while a leader is known: a follower briefly behind
 * the leader during normal replication is not taken out of service.
 */
export function raftReadiness(node: StatusSource): HealthCheck {
  let target: number | undefined;
  let caughtUp = false;
  const capture = (): void => {
    const s = node.status();
    if (target === undefined && s.phase === 'running') target = s.commit;
  };
  capture();
  return () => {
    capture();
    const s = node.status();
    if (s.phase !== 'running') return { ok: false, reason: `raft node ${s.id} is ${s.phase}${s.error ? `: ${s.error}` : ''}` };
    if (s.leader === 0) return { ok: false, reason: `raft node ${s.id} knows no leader (term ${s.term})` };
    if (!caughtUp) {
      if (s.applied < target!) return { ok: false, reason: `raft node ${s.id} is catching up: applied ${s.applied} of ${target} committed at start` };
      caughtUp = true;
    }
    return { ok: true, reason: `leader ${s.leader}, term ${s.term}, applied ${s.applied}` };
  };
}

/** Live unless the node failed for good (an I/O error or a broken invariant): restart the process then. */
export function raftLiveness(node: StatusSource): HealthCheck {
  return () => {
    const s = node.status();
    if (s.phase === 'failed') return { ok: false, reason: `raft node ${s.id} failed: ${s.error ?? 'unknown error'}` };
    return { ok: true };
  };
}

/** All of the checks must pass; the first failure's reason is reported. */
export function allOf(...checks: HealthCheck[]): HealthCheck {
  return async () => {
    const notes: string[] = [];
    for (const c of checks) {
      const r = await c();
      if (!r.ok) return r;
      if (r.reason) notes.push(r.reason);
    }
    return { ok: true, reason: notes.length > 0 ? notes.join('; ') : undefined };
  };
}
