/**
 * The `synod.consensus.v1.Cluster` service: status, membership, leadership, snapshots. Membership changes and
 * leadership transfers are made by the leader (a follower answers UNAVAILABLE naming the leader and its client
 * address); one membership change at a time (FAILED_PRECONDITION while one is pending).
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ProposalDroppedError } from '@app/raft';
import { parseHostPort, ConfigError } from './config.js';
import { ServiceError, invalid, statusOf, toServiceError, unavailable } from './errors.js';
import { ConsensusMember } from './member.js';
import { deadlineOf, unary } from './coordination.js';
import { MemberInfo } from './state.js';

/** How far (in entries) a learner may lag the leader's log and still be promoted to voter. */
const PROMOTE_MAX_LAG = 1000;

type Obj = Record<string, unknown>;
export const VERSION = '0.1.0';
const SNAPSHOT_CHUNK = 256 * 1024;

export class ClusterService {
  /** Serializes membership changes on this member (the core allows one pending change anyway). */
  private changing = false;

  constructor(private readonly m: ConsensusMember) {}

  members(): Obj[] {
    const s = this.m.status();
    const ids = [...s.confState.voters, ...s.confState.learners].sort((a, b) => a - b);
    return ids.map((id) => {
      const info: MemberInfo = this.m.sm.member(id) ?? { id, name: '', peerUrls: [], clientUrls: [] };
      return { id, name: info.name, peerUrls: info.peerUrls, clientUrls: info.clientUrls, isLearner: s.confState.learners.includes(id) };
    });
  }

  private requireLeader(what: string): void {
    if (!this.m.isLeader()) throw unavailable(`${what} must be sent to the leader`, this.m.hint());
  }

  private async change<T>(what: string, f: () => Promise<T>): Promise<T> {
    this.requireLeader(what);
    if (this.changing) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `${what}: another membership change is in progress on this member; one change at a time, retry when it completed`);
    this.changing = true;
    try {
      return await f();
    } catch (err) {
      if (err instanceof ProposalDroppedError && /pending|one change at a time|no voters|not a member|learner/i.test(err.message)) {
        throw new ServiceError(grpc.status.FAILED_PRECONDITION, `${what}: ${err.message}`);
      }
      throw err;
    } finally {
      this.changing = false;
    }
  }

  implementation(): grpc.UntypedServiceImplementation {
    const m = this.m;
    return {
      Status: unary<Obj, Obj>(m, async () => {
        const s = m.status();
        const self = m.sm.member(m.id);
        const errors = [...m.errors];
        if (s.phase !== 'running') errors.push(`raft node is ${s.phase}${s.error ? `: ${s.error}` : ''}`);
        if (s.applied > 0 && !s.confState.voters.includes(m.id) && !s.confState.learners.includes(m.id)) {
          errors.push(`member ${m.id} is not in the applied configuration (removed, or not yet added): stop this process`);
        }
        return {
          header: m.header(),
          id: m.id,
          role: m.role(),
          term: s.term,
          leader: s.leader,
          commitIndex: s.commit,
          appliedIndex: s.applied,
          lastIndex: s.lastIndex,
          snapshotIndex: s.snapshotIndex,
          peerUrls: self?.peerUrls ?? [m.cfg.peers.get(m.id)!],
          clientUrls: self?.clientUrls ?? [],
          members: this.members(),
          version: VERSION,
          nodeCount: m.tree.nodeCount,
          sessionCount: m.tree.sessions().length,
          errors,
        };
      }),

      Members: unary<Obj, Obj>(m, async (req, call) => {
        if (!req.serializable) await m.linearizable(deadlineOf(call, m.cfg.requestTimeoutMs));
        return { header: m.header(), members: this.members() };
      }),

      AddMember: unary<Obj, Obj>(m, async (req) => {
        const id = req.id;
        if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0 || id > 0xffff_ffff) throw invalid(`AddMember: id ${String(id)} must be in [1, 4294967295]`);
        const peerUrls = (req.peerUrls as string[]) ?? [];
        const clientUrls = (req.clientUrls as string[]) ?? [];
        if (peerUrls.length === 0) throw invalid('AddMember: peer_urls is required (where the other members reach the new one, e.g. synod-3.synod-peer:2380)');
        let info: MemberInfo;
        try {
          info = {
            id,
            name: (req.name as string) || `n${id}`,
            peerUrls: peerUrls.map((u) => parseHostPort('AddMember peer_urls', u)),
            clientUrls: clientUrls.map((u) => parseHostPort('AddMember client_urls', u)),
          };
        } catch (err) {
          throw invalid((err as ConfigError).message);
        }
        const cs = m.status().confState;
        if (cs.voters.includes(id) || cs.learners.includes(id)) throw new ServiceError(grpc.status.ALREADY_EXISTS, `member ${id} is already in the cluster; remove it first or pick another id`);
        return this.change(`AddMember ${id}`, async () => {
          await m.writeMembers({ op: 'setMember', member: info });
          try {
            await m.node.addLearner(id, JSON.stringify(info));
          } catch (err) {
            await m.writeMembers({ op: 'removeMember', id }).catch(() => undefined);
            throw err;
          }
          m.log.info(`member ${id} added as a learner (peer ${info.peerUrls[0]})`);
          return { header: m.header(), member: { ...info, isLearner: true }, members: this.members() };
        });
      }),

      PromoteMember: unary<Obj, Obj>(m, async (req) => {
        const id = req.id as number;
        const cs = m.status().confState;
        if (cs.voters.includes(id)) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `PromoteMember: member ${id} is already a voter`);
        if (!cs.learners.includes(id)) throw new ServiceError(grpc.status.NOT_FOUND, `PromoteMember: member ${id} is not a learner of this cluster; add it with AddMember first`);
        // A learner that is far behind would, as a voter, slow every commit (or cost the quorum) until it caught
        // up: refuse until it has replicated most of the log.
        const st = m.node.status();
        const learner = st.progress.find((p) => p.id === id);
        if (st.leader === m.id && learner && st.lastIndex - learner.match > PROMOTE_MAX_LAG) {
          throw new ServiceError(
            grpc.status.FAILED_PRECONDITION,
            `PromoteMember: learner ${id} is ${st.lastIndex - learner.match} entries behind the leader (match ${learner.match}, last index ${st.lastIndex}); retry once it has caught up (at most ${PROMOTE_MAX_LAG} behind)`,
          );
        }
        return this.change(`PromoteMember ${id}`, async () => {
          await m.node.promote(id);
          m.log.info(`member ${id} promoted to voter`);
          return { header: m.header(), members: this.members() };
        });
      }),

      RemoveMember: unary<Obj, Obj>(m, async (req) => {
        const id = req.id as number;
        const cs = m.status().confState;
        if (!cs.voters.includes(id) && !cs.learners.includes(id)) throw new ServiceError(grpc.status.NOT_FOUND, `RemoveMember: member ${id} is not in the cluster (members: ${[...cs.voters, ...cs.learners].join(', ')})`);
        return this.change(`RemoveMember ${id}`, async () => {
          await m.node.remove(id);
          await m.writeMembers({ op: 'removeMember', id }).catch((err: unknown) => m.log.warn(`removing member ${id} from the member table failed: ${(err as Error).message}`));
          m.log.info(`member ${id} removed`);
          return { header: m.header(), members: this.members() };
        });
      }),

      TransferLeadership: unary<Obj, Obj>(m, async (req) => {
        this.requireLeader('TransferLeadership');
        const cs = m.status().confState;
        let target = (req.targetId as number) || 0;
        if (target === 0) target = m.node.mostCaughtUpVoter() ?? 0;
        if (target === 0) throw new ServiceError(grpc.status.FAILED_PRECONDITION, 'TransferLeadership: there is no other voter to hand leadership to');
        if (!cs.voters.includes(target)) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `TransferLeadership: member ${target} is not a voter (voters: ${cs.voters.join(', ')})`);
        if (target !== m.id) await m.node.transferLeadership(target);
        return { header: m.header(), leader: m.status().leader };
      }),

      Snapshot: (call: grpc.ServerWritableStream<Obj, Obj>) => {
        this.snapshot(call).catch((err: unknown) => call.emit('error', statusOf(toServiceError(err, () => m.hint()))));
      },
    };
  }

  /** Streams the state machine's snapshot at the current applied index (consistent: taken synchronously). */
  private async snapshot(call: grpc.ServerWritableStream<Obj, Obj>): Promise<void> {
    const s = this.m.status();
    if (s.phase !== 'running') throw unavailable(`the member is ${s.phase}`, this.m.hint());
    const data = this.m.sm.snapshot();
    const index = s.applied;
    const sha = createHash('sha256').update(data).digest();
    let cancelled = false;
    call.on('cancelled', () => (cancelled = true));
    for (let at = 0; at < data.length || at === 0; at += SNAPSHOT_CHUNK) {
      if (cancelled) return;
      const chunk = data.subarray(at, Math.min(data.length, at + SNAPSHOT_CHUNK));
      const remaining = data.length - at - chunk.length;
      const msg: Obj = { data: chunk, remainingBytes: remaining };
      if (at === 0) Object.assign(msg, { header: this.m.header(), index, term: s.term, totalBytes: data.length });
      if (remaining === 0) msg.sha256 = sha;
      if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', () => r()));
      if (data.length === 0) break;
    }
    call.end();
  }
}
