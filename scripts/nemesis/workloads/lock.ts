/**
 * The lock workload of the nemesis: H holder processes (scripts/nemesis/lock-holder.ts) take turns on the lock
 * `nemesis-counter` of one lock service process (consensus backend on the run's cluster) and increment a counter
 * held by a fenced resource that this (runner) process serves over HTTP on 127.0.0.1:
 *
 *   POST /enter {token, holder}           after the grant, before the read (fenced: a stale token gets 409)
 *   GET  /value?holder=&token=            the read of the read-modify-write
 *   POST /write {token, value, holder}    sets the counter to `value` (the holder's read + 1); fenced: 409 stale
 *   POST /exit  {token, holder}           done
 *
 * Fencing (FencedResource, highest token per lock) applies to /enter and /write, so once a newer holder has
 * entered, an older holder can neither write nor lose the newer one's increments: with fencing on, a correct
 * lock service gives no violation even when a holder is paused between its read and its write. In canary mode
 * (ctx.canary) the resource accepts everything, and the `pause` fault (SIGSTOP of a holder inside its critical
 * section for ≥ 3 × TTL, until a successor has written) makes the paused holder's stale write clobber the
 * increments made while it was stopped.
 *
 * check(): (a) lost updates: an accepted write whose value is not the counter + 1 (increments made between the
 * writer's read and its write are overwritten), final counter vs accepted increments; (b) a write accepted with a
 * token older than one already written; (c) the resource history (enter/read/incr) through the linearizability
 * checker with fencedCounterModel (plus the fenced `enter`). Overlaps (two holders inside at once, expected with a
 * paused holder) are counted, not violations.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FencedResource, StaleTokenError } from '@app/client';
import { checkOperations, fencedCounterModel } from '@app/testing';
import type { FencedInput, FencedOutput, FencedState, Model, Operation } from '@app/testing';
import { LockServiceProcess } from '../../../apps/lock/test/harness.js';
import { ROOT, waitFor } from '../../../apps/consensus/test/harness.js';
import { atMost, childEnv } from '../../../libs/testing/src/servers/process.js';
import type { FaultKind, RunContext, Workload, WorkloadResult } from '../types.js';

const LOCK = 'nemesis-counter';
/** Longest a holder stays paused (waiting for a successor's write). */
const MAX_PAUSE_MS = 15_000;
const HOLDER = join(ROOT, 'scripts/nemesis/lock-holder.ts');

export interface LockWorkloadOptions {
  /** Holder processes. Default 3. */
  holders?: number;
  /** Lease TTL of every grant, ms. Default 1000. */
  ttlMs?: number;
}

type LockInput = FencedInput | { key: string; op: 'enter'; token: number };
type LockOp = Operation<LockInput, FencedOutput>;

/** fencedCounterModel plus `enter`: a fenced operation that raises the highest token without changing the value. */
const fencedSessionModel: Model<FencedState, LockInput, FencedOutput> = {
  ...(fencedCounterModel as unknown as Model<FencedState, LockInput, FencedOutput>),
  step(state, input, output) {
    if (input.op !== 'enter') return fencedCounterModel.step(state, input, output);
    const accepted = input.token >= state.highestToken;
    const next = accepted ? { highestToken: input.token, value: state.value } : state;
    if (output === undefined) return { ok: true, state: next };
    return { ok: output.ok === accepted, state: output.ok ? next : state };
  },
  describeOperation(input, output) {
    if (input.op !== 'enter') return fencedCounterModel.describeOperation!(input, output);
    return `enter(${input.key}, token ${input.token}) -> ${output === undefined ? '?' : JSON.stringify(output)}`;
  },
};

interface Write {
  holder: number;
  token: number;
  value: number;
  /** The counter before this write. */
  prev: number;
  /** Accepted writes: the state (index in `states`) the holder read, and the state current when it wrote. */
  based: number;
  over: number;
  accepted: boolean;
  at: number;
}

interface Holder {
  id: number;
  proc: ChildProcess;
  lines: string[];
  log: WriteStream;
  exited: Promise<unknown>;
  err: string;
}

const alive = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

function signal(p: ChildProcess, sig: NodeJS.Signals): void {
  if (p.pid !== undefined && alive(p)) {
    try {
      process.kill(p.pid, sig);
    } catch {
      // already gone
    }
  }
}

export class LockWorkload implements Workload {
  readonly name = 'lock';
  private readonly holderCount: number;
  private readonly ttlMs: number;
  private ctx!: RunContext;
  private service: LockServiceProcess | undefined;
  private server: Server | undefined;
  private url = '';
  private readonly holders: Holder[] = [];

  // the resource
  private readonly fenced = new FencedResource();
  private counter = 0;
  private clock = 0;
  private readonly history: LockOp[] = [];
  private readonly writes: Write[] = [];
  private readonly inside = new Map<number, number>();
  private overlaps = 0;
  /** States of the counter: 0 is the initial 0; each accepted write adds one (so indices count accepted writes), its parent the state its holder read. */
  private readonly states: { parent: number; write?: Write }[] = [{ parent: -1 }];
  private current = 0;
  /** The state each holder read last (GET /value?holder=). */
  private readonly lastRead = new Map<number, number>();

  // the pause
  private armed: ((h: Holder) => void) | undefined;
  private paused: { holder: Holder; timer: ReturnType<typeof setTimeout>; done: Promise<void>; resume: () => void } | undefined;
  private pauses = 0;
  private stopped = false;
  private tornDown = false;

  constructor(opts: LockWorkloadOptions = {}) {
    this.holderCount = opts.holders ?? 3;
    this.ttlMs = opts.ttlMs ?? 1000;
  }

  async setup(ctx: RunContext): Promise<void> {
    this.ctx = ctx;
    await mkdir(ctx.dir, { recursive: true });
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((res, rej) => {
      this.server!.once('error', rej);
      this.server!.listen(0, '127.0.0.1', () => res());
    });
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    this.service = new LockServiceProcess(['--backend', 'consensus', '--consensus-endpoints', ctx.endpoints.join(',')]);
    await this.service.start();
    ctx.log(`lock: service on ${this.service.endpoint} (consensus ${ctx.endpoints.join(',')}), resource ${this.url}, fencing ${ctx.canary ? 'OFF (canary)' : 'on'}`);
    for (let i = 1; i <= this.holderCount; i++) this.holders.push(this.spawnHolder(i));
    await Promise.all(
      this.holders.map((h) =>
        waitFor(`lock holder ${h.id} ready`, () => {
          if (!alive(h.proc)) throw new Error(`lock holder ${h.id} exited: ${h.err}`);
          return h.lines.includes('READY');
        }, 30_000),
      ),
    );
  }

  private spawnHolder(id: number): Holder {
    const seed = this.ctx.rng.u32();
    const proc = spawn(process.execPath, ['--import', 'tsx', HOLDER, this.service!.endpoint, this.url, String(id), String(this.ttlMs), String(seed)], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const log = createWriteStream(join(this.ctx.dir, `lock-holder-${id}.log`), { flags: 'a' });
    const h: Holder = { id, proc, lines: [], log, exited: new Promise((r) => proc.once('exit', r)), err: '' };
    proc.stdin!.on('error', () => undefined);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      h.lines.push(l);
      log.write(`${Date.now()} ${l}\n`);
      if (l.startsWith('INSIDE ') && this.armed) this.armed(h);
    });
    proc.stderr!.on('data', (d: Buffer) => {
      h.err = (h.err + d.toString()).slice(-4000);
      log.write(d);
    });
    return h;
  }

  start(): void {
    for (const h of this.holders) h.proc.stdin!.write('GO\n');
  }

  private count(prefix: string): number {
    let n = 0;
    for (const h of this.holders) for (const l of h.lines) if (l.startsWith(prefix)) n++;
    return n;
  }

  completed(): number {
    return this.count('ACK ') + this.count('REFUSED ');
  }

  async onFault(kind: FaultKind): Promise<void> {
    if (kind !== 'pause' || this.stopped || this.paused) return;
    const pauseMs = 3 * this.ttlMs;
    let got: Holder | undefined;
    const caught = new Promise<void>((res) => {
      this.armed = (h) => {
        // In the line handler, at once: the holder has read and is sleeping before its write.
        this.armed = undefined;
        signal(h.proc, 'SIGSTOP');
        got = h;
        res();
      };
    });
    const ok = await atMost(caught, 5000);
    this.armed = undefined;
    if (!ok || !got) {
      this.ctx.log('lock: no holder got inside its critical section within 5 s: no holder paused');
      return;
    }
    const h: Holder = got;
    this.pauses++;
    const inside = h.lines.filter((l) => l.startsWith('INSIDE ')).at(-1);
    this.ctx.log(`lock: paused holder ${h.id} (pid ${h.proc.pid}) inside its critical section (${inside}) for ${pauseMs} ms`);
    let resume!: () => void;
    const done = new Promise<void>((r) => (resume = r));
    const doResume = (): void => {
      if (!this.paused) return;
      clearTimeout(this.paused.timer);
      this.paused = undefined;
      signal(h.proc, 'SIGCONT');
      this.ctx.log(`lock: resumed holder ${h.id}`);
      resume();
    };
    // Resume once the lease is long gone (3 × TTL) *and* another holder has written with a newer token, so the
    // paused holder's late write always meets a successor's work, whatever the cluster fault did meanwhile (a
    // paused consensus leader can delay the next grant); at most MAX_PAUSE_MS.
    const token = Number(inside?.split(' ')[1] ?? 0);
    const since = Date.now();
    const poll = (): void => {
      if (!this.paused) return;
      const overtaken = this.writes.some((w) => w.accepted && w.token > token && w.holder !== h.id);
      if ((Date.now() - since >= pauseMs && overtaken) || Date.now() - since >= MAX_PAUSE_MS) doResume();
      else this.paused.timer = setTimeout(poll, 100);
    };
    this.paused = { holder: h, timer: setTimeout(poll, pauseMs), done, resume: doResume };
  }

  async onHeal(_kind: FaultKind): Promise<void> {
    // The paused holder resumes on its own timer (≥ 3 × TTL, once a successor wrote); wait for it, bounded.
    const p = this.paused;
    if (p && !(await atMost(p.done, MAX_PAUSE_MS + 2000))) p.resume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.armed = undefined;
    this.paused?.resume();
    for (const h of this.holders) {
      h.proc.stdin!.end();
      signal(h.proc, 'SIGTERM');
    }
    await Promise.all(
      this.holders.map(async (h) => {
        if (!(await atMost(h.exited, 2000))) {
          signal(h.proc, 'SIGKILL');
          await atMost(h.exited, 5000);
        }
      }),
    );
  }

  async check(): Promise<WorkloadResult> {
    const violations: string[] = [];
    const lost: string[] = [];
    const r = await fetch(`${this.url}/value`, { signal: AbortSignal.timeout(5000) });
    const final = Number(((await r.json()) as { value: number }).value);

    const accepted = this.writes.filter((w) => w.accepted);
    const acks = this.count('ACK ');
    const refused = this.count('REFUSED ');
    const holderIndeterminate = this.count('INDETERMINATE ');
    // Writes the resource answered but whose holder never printed the outcome (killed at stop) are indeterminate too.
    const indeterminate = holderIndeterminate + Math.max(0, this.writes.length - (acks + refused + holderIndeterminate));

    // (a) lost updates: every accepted write made a new state of the counter whose parent is the state its
    // holder read; the increments present at the end are the writes on the final state's ancestry.
    for (const w of accepted) {
      const desc = `holder ${w.holder} token ${w.token} wrote ${w.value}`;
      if (w.based !== w.over) {
        violations.push(`lost update: ${desc} based on its read of ${w.value - 1}, but the counter was already ${w.prev}: the ${w.over - w.based} write(s) accepted since its read are overwritten`);
      } else if (w.value !== w.prev + 1) {
        violations.push(`bad increment: ${desc} over ${w.prev}`);
      }
    }
    const present = new Set<Write>();
    for (let s = this.current; s > 0; s = this.states[s]!.parent) present.add(this.states[s]!.write!);
    for (const w of accepted) {
      if (!present.has(w)) lost.push(`holder ${w.holder} token ${w.token}: acknowledged increment to ${w.value} is missing from the final counter ${final}`);
    }
    // (b) a write accepted with a token older than one already written
    let maxToken = -Infinity;
    let maxHolder = 0;
    for (const w of accepted) {
      if (w.token < maxToken) violations.push(`stale write accepted: holder ${w.holder} token ${w.token} wrote ${w.value} after holder ${maxHolder} had written with newer token ${maxToken}`);
      if (w.token > maxToken) {
        maxToken = w.token;
        maxHolder = w.holder;
      }
    }
    if (final !== accepted.length) violations.push(`final counter ${final} != ${accepted.length} accepted increments`);
    if (final < acks) violations.push(`final counter ${final} < ${acks} acknowledged increments: ${acks - final} lost`);

    // (c) the resource history against the fenced counter model
    const lin = checkOperations(fencedSessionModel, this.history, { timeoutMs: 10_000 });
    if (lin.result !== 'ok') {
      violations.push(`resource history (${this.history.length} ops) is ${lin.result} for the fenced counter model${lin.info ? `:\n${lin.info.message}` : ''}`);
    }

    return {
      ops: acks + refused,
      indeterminate,
      violations,
      lost,
      stats: {
        grants: this.count('GRANTED '),
        acks,
        refused,
        staleRefused: this.fenced.rejected,
        accepted: accepted.length,
        final,
        overlaps: this.overlaps,
        pauses: this.pauses,
        acquireFailed: this.count('ACQUIRE-FAILED '),
        errors: this.count('ERROR '),
        fencing: this.ctx.canary ? 'off' : 'on',
      },
    };
  }

  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    this.armed = undefined;
    if (this.paused) clearTimeout(this.paused.timer);
    for (const h of this.holders) {
      signal(h.proc, 'SIGCONT');
      signal(h.proc, 'SIGKILL');
    }
    await Promise.all(this.holders.map((h) => atMost(h.exited, 5000)));
    for (const h of this.holders) h.log.end();
    if (this.service) {
      await writeFile(join(this.ctx.dir, 'lock-service.log'), this.service.logText).catch(() => undefined);
      await this.service.stop();
    }
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise<void>((r) => this.server!.close(() => r()));
    }
  }

  // ----------------------------------------------------------------------------------------------------------
  // The fenced counter resource

  private tick(): { call: number; return: number } {
    const call = ++this.clock;
    return { call, return: call + 0.5 };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', this.url);
    if (req.method === 'GET' && url.pathname === '/value') {
      if (url.searchParams.has('holder')) this.lastRead.set(Number(url.searchParams.get('holder')), this.current);
      this.history.push({ clientId: Number(url.searchParams.get('holder') ?? 0), input: { key: LOCK, op: 'read' }, output: { value: this.counter }, ...this.tick() });
      reply(200, { value: this.counter });
      return;
    }
    if (req.method !== 'POST' || !['/enter', '/write', '/exit'].includes(url.pathname)) {
      reply(404, { error: `no ${req.method} ${url.pathname}` });
      return;
    }
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      let body: { token?: unknown; value?: unknown; holder?: unknown };
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        reply(400, { error: 'body must be JSON' });
        return;
      }
      const token = Number(body.token);
      const holder = Number(body.holder);
      if (!Number.isFinite(token) || !Number.isInteger(holder)) {
        reply(400, { error: 'token and holder are required' });
        return;
      }
      // Everything below is synchronous: the fence check and the effect happen in one turn.
      const stale = url.pathname === '/exit' ? undefined : this.fence(token);
      switch (url.pathname) {
        case '/enter': {
          this.history.push({ clientId: holder, input: { key: LOCK, op: 'enter', token }, output: { ok: !stale }, ...this.tick() });
          if (stale) {
            reply(409, { error: stale.message });
            return;
          }
          const others = [...this.inside.entries()].filter(([h]) => h !== holder);
          if (others.length > 0) {
            if (++this.overlaps <= 3) this.ctx.log(`lock: overlap: holder ${holder} (token ${token}) entered while ${others.map(([h, t]) => `holder ${h} (token ${t})`).join(', ')} inside`);
          }
          this.inside.set(holder, token);
          reply(200, { ok: true });
          return;
        }
        case '/write': {
          const value = Number(body.value);
          const based = this.lastRead.get(holder) ?? this.current;
          const w: Write = { holder, token, value, prev: this.counter, based, over: this.current, accepted: !stale, at: Date.now() };
          this.writes.push(w);
          if (!stale) {
            this.states.push({ parent: based, write: w });
            this.current = this.states.length - 1;
          }
          this.history.push({ clientId: holder, input: { key: LOCK, op: 'incr', token }, output: stale ? { ok: false } : { ok: true, value }, ...this.tick() });
          if (stale) {
            reply(409, { error: stale.message });
            return;
          }
          this.counter = value;
          reply(200, { ok: true, value });
          return;
        }
        default: {
          if (this.inside.get(holder) === token) this.inside.delete(holder);
          reply(200, { ok: true });
        }
      }
    });
  }

  /** Fencing on: checks (and raises) the highest token; the error when stale. Canary: everything passes. */
  private fence(token: number): StaleTokenError | undefined {
    if (this.ctx.canary) return undefined;
    try {
      this.fenced.check(LOCK, token);
      return undefined;
    } catch (err) {
      if (err instanceof StaleTokenError) return err;
      throw err;
    }
  }
}
