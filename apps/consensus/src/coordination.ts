/**
 * The `synod.consensus.v1.Coordination` service on the client port (grpc-js handlers). Validation happens
 * here, before anything is proposed: a malformed request is answered INVALID_ARGUMENT (oversize data
 * RESOURCE_EXHAUSTED) and changes nothing. Tree failures map through libs/tree's GRPC_STATUS_OF table.
 */
import * as grpc from '@grpc/grpc-js';
import {
  Command,
  CommandResult,
  CreateMode,
  MultiFailure,
  Op,
  OpResult,
  TreeErrorCode,
  TreeFailure,
  WatchKind,
  isEphemeralMode,
  isSequentialMode,
  pathError,
} from '@app/tree';
import { ServiceError, invalid, statusOf, toServiceError, treeError, treeStatus } from './errors.js';
import { ConsensusMember } from './member.js';
import { WatchAddRequest } from './watch-hub.js';

/** What every server call has (grpc-js does not export ServerSurfaceCall). */
export type SurfaceCall = { getDeadline(): grpc.Deadline };

type Obj = Record<string, unknown>;
interface RequestHeaderMsg {
  clientId: string;
  seq: number;
}

const MODES: Record<string, CreateMode> = {
  PERSISTENT: CreateMode.PERSISTENT,
  EPHEMERAL: CreateMode.EPHEMERAL,
  PERSISTENT_SEQUENTIAL: CreateMode.PERSISTENT_SEQUENTIAL,
  EPHEMERAL_SEQUENTIAL: CreateMode.EPHEMERAL_SEQUENTIAL,
};
const MODE_BY_NUMBER = ['PERSISTENT', 'EPHEMERAL', 'PERSISTENT_SEQUENTIAL', 'EPHEMERAL_SEQUENTIAL'];

export function deadlineOf(call: SurfaceCall, defaultMs: number): number {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : Number(d);
  const fallback = Date.now() + defaultMs;
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, fallback) : fallback;
}

/** Wraps an async unary handler: its throw becomes a gRPC status. */
export function unary<Req, Res>(member: ConsensusMember, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    fn(call.request, call).then(
      (res) => cb(null, res),
      (err: unknown) => cb(statusOf(toServiceError(err, () => member.hint()))),
    );
  };
}

function checkPath(p: unknown, sequential = false): string {
  const e = pathError(p, sequential);
  if (e) throw invalid(e);
  return p as string;
}

function checkId(what: string, v: unknown, required: boolean): number | undefined {
  if (v === 0 || v === undefined || v === null) {
    if (required) throw invalid(`${what} is required (a session id from CreateSession)`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(`${what} ${String(v)} is not a valid id`);
  return v;
}

function checkVersion(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -1) throw invalid(`version ${String(v)} must be >= 0, or -1 for any version`);
  return v;
}

function mode(v: unknown): CreateMode {
  const name = typeof v === 'number' ? MODE_BY_NUMBER[v] : v;
  const m = typeof name === 'string' ? MODES[name] : undefined;
  if (!m) throw invalid(`unknown create mode ${JSON.stringify(v)}; use PERSISTENT, EPHEMERAL, PERSISTENT_SEQUENTIAL or EPHEMERAL_SEQUENTIAL`);
  return m;
}

function requestIdentity(h: RequestHeaderMsg | null | undefined): { clientId?: string; seq?: number } {
  if (!h || h.clientId === '') {
    if (h && h.seq) throw invalid('request.seq was sent without request.client_id: send both (exactly-once) or neither');
    return {};
  }
  if (h.clientId.length > 256) throw invalid(`request.client_id is ${h.clientId.length} characters; at most 256`);
  if (!Number.isSafeInteger(h.seq) || h.seq <= 0) throw invalid(`request.seq must be > 0 when request.client_id is set (got ${h.seq}); increase it by one per new request`);
  return { clientId: h.clientId, seq: h.seq };
}

export class CoordinationService {
  constructor(private readonly m: ConsensusMember) {}

  private data(d: unknown): Uint8Array {
    const b = d instanceof Uint8Array ? d : new Uint8Array(0);
    if (b.length > this.m.cfg.maxDataBytes) {
      throw new ServiceError(
        grpc.status.RESOURCE_EXHAUSTED,
        `data of ${b.length} bytes exceeds the ${this.m.cfg.maxDataBytes}-byte limit per node; store large values elsewhere and keep a reference here`,
      );
    }
    return b;
  }

  private deadline(call: SurfaceCall): number {
    return deadlineOf(call, this.m.cfg.requestTimeoutMs);
  }

  private async run(cmd: Command, call: SurfaceCall): Promise<{ result: CommandResult; index: number }> {
    const r = await this.m.write(cmd, this.deadline(call));
    if (cmd.sessionId) this.m.saw(cmd.sessionId, r.index);
    return r;
  }

  private ok<T extends CommandResult>(r: CommandResult): T {
    if (!r.ok) throw treeError(r);
    return r as T;
  }

  private async readBarrier(req: Obj, call: SurfaceCall): Promise<number> {
    const sessionId = checkId('session_id', req.sessionId, false) ?? 0;
    const c = req.consistency;
    const deadline = this.deadline(call);
    if (c === 'SEQUENTIAL' || c === 1) {
      const minZxid = typeof req.minZxid === 'number' && req.minZxid > 0 ? req.minZxid : 0;
      await this.m.sequential(minZxid, sessionId, deadline);
    } else if (c === 'LINEARIZABLE' || c === 0 || c === undefined) {
      await this.m.linearizable(deadline);
    } else throw invalid(`unknown consistency ${JSON.stringify(c)}; use LINEARIZABLE or SEQUENTIAL`);
    return sessionId;
  }

  private served(sessionId: number): Obj {
    const h = this.m.header();
    this.m.saw(sessionId, h.zxid);
    return h;
  }

  implementation(): grpc.UntypedServiceImplementation {
    const m = this.m;
    return {
      CreateSession: unary<Obj, Obj>(m, async (req, call) => {
        const t = req.timeoutMs;
        if (typeof t !== 'number' || !Number.isSafeInteger(t) || t <= 0) {
          throw invalid(`timeout_ms must be > 0 (the server clamps it to [${m.cfg.minSessionTimeoutMs}, ${m.cfg.maxSessionTimeoutMs}] ms)`);
        }
        const id = requestIdentity(req.request as RequestHeaderMsg);
        const r = await this.run({ op: 'createSession', timeoutMs: t, nowMs: 0, ...id }, call);
        const res = this.ok<Extract<CommandResult, { sessionId: number }>>(r.result);
        m.saw(res.sessionId, r.index);
        return { header: m.header(), sessionId: res.sessionId, timeoutMs: res.timeoutMs };
      }),

      CloseSession: unary<Obj, Obj>(m, async (req, call) => {
        const sessionId = checkId('session_id', req.sessionId, true)!;
        const id = requestIdentity(req.request as RequestHeaderMsg);
        const r = await this.run({ op: 'closeSession', sessionId, nowMs: 0, ...id }, call);
        // Idempotent: closing a session that is already gone is a success.
        if (!r.result.ok && r.result.code !== TreeErrorCode.SESSION_EXPIRED) throw treeError(r.result);
        return { header: m.header() };
      }),

      KeepAlive: (call: grpc.ServerDuplexStream<Obj, Obj>) => this.keepAlive(call),

      Create: unary<Obj, Obj>(m, async (req, call) => {
        const md = mode(req.mode);
        const path = checkPath(req.path, isSequentialMode(md));
        const data = this.data(req.data);
        const sessionId = checkId('session_id', req.sessionId, isEphemeralMode(md));
        const id = requestIdentity(req.request as RequestHeaderMsg);
        const r = await this.run({ op: 'create', path, data, mode: md, nowMs: 0, sessionId, ...id }, call);
        const res = this.ok<Extract<CommandResult, { path: string }>>(r.result);
        return { header: m.header(), path: res.path, stat: res.stat };
      }),

      Set: unary<Obj, Obj>(m, async (req, call) => {
        const path = checkPath(req.path);
        const data = this.data(req.data);
        const version = checkVersion(req.version);
        const id = requestIdentity(req.request as RequestHeaderMsg);
        const r = await this.run({ op: 'setData', path, data, version, nowMs: 0, ...id }, call);
        const res = this.ok<Extract<CommandResult, { stat: unknown }>>(r.result);
        return { header: m.header(), stat: res.stat };
      }),

      Delete: unary<Obj, Obj>(m, async (req, call) => {
        const path = checkPath(req.path);
        if (path === '/') throw invalid('the root node "/" cannot be deleted');
        const version = checkVersion(req.version);
        const id = requestIdentity(req.request as RequestHeaderMsg);
        const r = await this.run({ op: 'delete', path, version, nowMs: 0, ...id }, call);
        this.ok(r.result);
        return { header: m.header() };
      }),

      Get: unary<Obj, Obj>(m, async (req, call) => {
        const path = checkPath(req.path);
        const sessionId = await this.readBarrier(req, call);
        const g = m.tree.get(path);
        if (!g.ok) throw treeError(g);
        if (req.watch) m.watches.addForRead(sessionId, path, WatchKind.Data);
        return { header: this.served(sessionId), data: g.data, stat: g.stat };
      }),

      Exists: unary<Obj, Obj>(m, async (req, call) => {
        const path = checkPath(req.path);
        const sessionId = await this.readBarrier(req, call);
        const e = m.tree.exists(path);
        if (!e.ok) throw treeError(e);
        if (req.watch) m.watches.addForRead(sessionId, path, WatchKind.Data);
        return e.stat ? { header: this.served(sessionId), exists: true, stat: e.stat } : { header: this.served(sessionId), exists: false };
      }),

      GetChildren: unary<Obj, Obj>(m, async (req, call) => {
        const path = checkPath(req.path);
        const sessionId = await this.readBarrier(req, call);
        const c = m.tree.getChildren(path);
        if (!c.ok) throw treeError(c);
        if (req.watch) m.watches.addForRead(sessionId, path, WatchKind.Child);
        return { header: this.served(sessionId), children: c.children, stat: c.stat };
      }),

      Multi: unary<Obj, Obj>(m, async (req, call) => {
        const rawOps = (req.ops as Obj[] | undefined) ?? [];
        if (rawOps.length === 0) throw invalid('multi needs at least one op');
        let sessionId: number | undefined;
        const ops: Op[] = rawOps.map((o, i): Op => {
          const which = o.op as string | undefined;
          const body = (which ? o[which] : undefined) as Obj | undefined;
          if (!which || !body) throw invalid(`multi op ${i} is empty: set one of create, set, delete, check`);
          switch (which) {
            case 'create': {
              const md = mode(body.mode);
              const sid = checkId(`multi op ${i} session_id`, body.sessionId, false);
              if (sid !== undefined) {
                if (sessionId !== undefined && sessionId !== sid) throw invalid(`multi op ${i}: every create in one multi must use the same session_id (${sessionId}, not ${sid})`);
                sessionId = sid;
              }
              return { op: 'create', path: body.path as string, data: this.data(body.data), mode: md };
            }
            case 'set':
              return { op: 'setData', path: body.path as string, data: this.data(body.data), version: body.version as number };
            case 'delete':
              return { op: 'delete', path: body.path as string, version: body.version as number };
            case 'check':
              return { op: 'check', path: body.path as string, version: body.version as number };
            default:
              throw invalid(`multi op ${i}: unknown op ${which}`);
          }
        });
        const id = requestIdentity(req.request as RequestHeaderMsg);
        const r = await this.run({ op: 'multi', ops, nowMs: 0, sessionId, ...id }, call);
        const res = r.result;
        if (res.ok) {
          const results = (res as Extract<CommandResult, { results: OpResult[] }>).results.map((x) => {
            switch (x.op) {
              case 'create':
                return { create: { path: x.path, stat: x.stat } };
              case 'setData':
                return { set: { stat: x.stat } };
              default:
                return { ok: true };
            }
          });
          return { header: m.header(), succeeded: true, results };
        }
        const f = res as TreeFailure | MultiFailure;
        if (!('failedOp' in f)) throw treeError(f);
        const results = f.results.map((_, i) =>
          i < f.failedOp ? { rolledBack: true } : i === f.failedOp ? { error: { code: treeStatus(f.code), message: f.message } } : { notRun: true },
        );
        return { header: m.header(), succeeded: false, results, failedOp: f.failedOp };
      }),

      Watch: (call: grpc.ServerDuplexStream<Obj, Obj>) => this.watch(call),
    };
  }

  private keepAlive(call: grpc.ServerDuplexStream<Obj, Obj>): void {
    let ended = false;
    const end = (e: ServiceError): void => {
      if (ended) return;
      ended = true;
      call.emit('error', statusOf(e));
    };
    call.on('data', (req: Obj) => {
      if (ended) return;
      const id = req.sessionId;
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) {
        end(invalid(`keep-alive: session_id ${String(id)} is not a session id from CreateSession`));
        return;
      }
      const ttlBound = Math.max(1000, this.m.cfg.electionMaxMs * 2);
      this.m.touch([id], Date.now() + ttlBound).then(
        ([r]) => {
          if (!ended) call.write({ header: this.m.header(), sessionId: id, ttlMs: r.ttlMs, expired: r.expired });
        },
        // No leader reachable now: this ping gets no answer; the client pings again (every ~timeout/3).
        (err: unknown) => this.m.status().phase === 'running' || end(toServiceError(err, () => this.m.hint())),
      );
    });
    call.on('end', () => {
      if (!ended) {
        ended = true;
        call.end();
      }
    });
    call.on('error', () => (ended = true));
    call.on('cancelled', () => (ended = true));
  }

  private watch(call: grpc.ServerDuplexStream<Obj, Obj>): void {
    let ended = false;
    const s = this.m.watches.open(
      (msg) => call.write(msg),
      () => call.writableLength,
      (e) => {
        if (ended) return;
        ended = true;
        call.emit('error', statusOf(e));
      },
    );
    call.on('data', (req: Obj) => {
      if (s.closed) return;
      try {
        if (req.request === 'add' && req.add) this.m.watches.add(s, req.add as WatchAddRequest);
        else if (req.request === 'remove' && req.remove) this.m.watches.remove(s, (req.remove as { watchId: number }).watchId);
        else throw invalid('a WatchRequest must set add or remove');
      } catch (err) {
        s.end(toServiceError(err, () => this.m.hint()));
      }
    });
    const close = (): void => {
      this.m.watches.close(s);
    };
    call.on('end', () => {
      close();
      if (!ended) {
        ended = true;
        call.end();
      }
    });
    call.on('error', close);
    call.on('cancelled', close);
  }
}
