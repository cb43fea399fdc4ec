/**
 * The coordinator's message broker (the delivery side of the outbox pattern, docs/outbox.md): Publish stores a
 * message in the replicated store, the leading replica delivers every stored message to every consumer
 * subscribed to its topic until that consumer acknowledges it, in publish order per message key.
 *
 * Keys in the store (T = base64url(topic), C = base64url(consumer), all writes guarded by the leadership):
 *   seq/<T>                 per-topic sequence counter (compare-and-set)
 *   msg/<T>/<seq, 16 digits> the message (JSON), or a tombstone filling a sequence that was never written
 *   msgid/<base64url(id)>   {topic, seq}: the idempotency record of a message id
 *   floor/<T>               every sequence ≤ floor was garbage-collected
 *   sub/<T>/<C>             {topic, consumer, address}
 *   cur/<T>/<C>             the consumer's cursor: every sequence ≤ cursor is acknowledged (or a tombstone)
 *   ack/<T>/<C>/<seq>       an acknowledgment above the cursor (out of order, since keys go in parallel)
 *
 * Publish: allocate the next sequence (CAS on seq/<T>) → create msg/<T>/<seq> → create msgid/<id>. The message
 * is durable before Publish returns; a sequence whose create lost against a tombstone is re-allocated; a
 * concurrent duplicate that loses the msgid create turns its own copy into a tombstone.
 *
 * Delivery, per (topic, consumer): the messages above the cursor, loaded without holes (a hole — a sequence
 * allocated but not written — is waited for while this leader's Publish is still writing it, else filled with a
 * tombstone: a Publish that later tries that sequence fails its create and takes another). Within that window
 * each key's first unacknowledged message is its head; heads go out in parallel (bounded), nothing behind a
 * head is sent before the head's acknowledgment is durable (ack marker written). Failed deliveries are retried
 * with back-off; only the failing key waits.
 */
import * as grpc from '@grpc/grpc-js';
import { loadTxnProto } from '@app/proto';
import { NotLeaderError, StoreUnavailableError } from '@app/txn';
import type { Leadership, TxnStore, Versioned } from '@app/txn';
import type { BrokerFactory, MessageBroker, PublishInput, SubscribeInput } from './broker.js';
import { TxnError } from './engine.js';
import type { Logger } from './engine.js';
import type { TxnMetrics } from './metrics.js';

export interface BrokerOptions {
  /** Deliveries in flight per (topic, consumer): distinct keys in parallel (default 16). */
  concurrency: number;
  /** Deadline of one Deliver call (default 10000 ms). */
  deliverTimeoutMs: number;
  /** Retry back-off of a failed delivery: base · 2^(attempt-1), capped (defaults 100 ms, 5000 ms), ±20% jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Fallback poll of the store for new messages (Publish on this replica wakes delivery at once; default 1000 ms). */
  pollMs: number;
  /** Messages acknowledged by every subscriber are deleted this long after Publish (default 1 h). */
  retentionMs: number;
  /** Interval of the garbage collection (default min(60 s, retention / 4)). */
  gcIntervalMs?: number;
  maxPayloadBytes: number;
}

export const DEFAULT_BROKER_OPTIONS: BrokerOptions = {
  concurrency: 16,
  deliverTimeoutMs: 10_000,
  retryBaseMs: 100,
  retryMaxMs: 5000,
  pollMs: 1000,
  retentionMs: 3_600_000,
  maxPayloadBytes: 256 * 1024,
};

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const ADDRESS_RE = /^(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/;
const MAX_KEY = 256;
const MAX_HEADERS = 64;
const MAX_HEADER_BYTES = 16 * 1024;

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The stored form of a message. */
export interface StoredMessage {
  id: string;
  topic: string;
  key: string;
  /** base64 */
  payload: string;
  headers: Record<string, string>;
  publishedAtMs: number;
  epoch: number;
}
interface Tombstone {
  tombstone: true;
  reason: string;
}
type Slot = StoredMessage | Tombstone;
const isTomb = (s: Slot | undefined): s is Tombstone => s !== undefined && (s as Tombstone).tombstone === true;

export const encodeName = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
export const decodeName = (s: string): string => Buffer.from(s, 'base64url').toString('utf8');
export const pad = (n: number): string => String(n).padStart(16, '0');
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), 'utf8');
const parse = <T>(b: Buffer): T => JSON.parse(b.toString('utf8')) as T;

export const brokerKeys = {
  counter: (topic: string): string => `seq/${encodeName(topic)}`,
  floor: (topic: string): string => `floor/${encodeName(topic)}`,
  msgDir: (topic: string): string => `msg/${encodeName(topic)}`,
  msg: (topic: string, seq: number): string => `msg/${encodeName(topic)}/${pad(seq)}`,
  msgId: (id: string): string => `msgid/${encodeName(id)}`,
  subDir: (topic: string): string => `sub/${encodeName(topic)}`,
  sub: (topic: string, consumer: string): string => `sub/${encodeName(topic)}/${encodeName(consumer)}`,
  cursor: (topic: string, consumer: string): string => `cur/${encodeName(topic)}/${encodeName(consumer)}`,
  ackDir: (topic: string, consumer: string): string => `ack/${encodeName(topic)}/${encodeName(consumer)}`,
  ack: (topic: string, consumer: string, seq: number): string => `ack/${encodeName(topic)}/${encodeName(consumer)}/${pad(seq)}`,
};

function invalid(message: string): never {
  throw new TxnError('INVALID_ARGUMENT', message);
}

function checkId(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') invalid(`${field} is required`);
  if (!ID_RE.test(v)) invalid(`${field} "${v.slice(0, 140)}" must be 1..128 characters of [A-Za-z0-9._:-]`);
  return v;
}

/** Validates a Publish (the same rules as the gRPC service, so a direct caller gets the same clear errors). */
export function validatePublish(m: PublishInput, maxPayloadBytes = DEFAULT_BROKER_OPTIONS.maxPayloadBytes): void {
  if (!m || typeof m !== 'object') invalid('a message is required');
  checkId(m.messageId, 'message_id');
  checkId(m.topic, 'topic');
  if (typeof m.key !== 'string') invalid('key must be a string (empty for no key)');
  if (m.key.length > MAX_KEY) invalid(`key is ${m.key.length} characters; the limit is ${MAX_KEY}`);
  if (!((m.payload as unknown) instanceof Uint8Array)) invalid('payload must be bytes');
  if (m.payload.length > maxPayloadBytes) throw new TxnError('RESOURCE_EXHAUSTED', `payload is ${m.payload.length} bytes; the limit is ${maxPayloadBytes}`);
  const h = m.headers ?? {};
  if (typeof h !== 'object' || Array.isArray(h)) invalid('headers must be a map of strings');
  const entries = Object.entries(h);
  if (entries.length > MAX_HEADERS) invalid(`${entries.length} headers; the limit is ${MAX_HEADERS}`);
  let bytes = 0;
  for (const [k, v] of entries) {
    if (typeof v !== 'string') invalid(`header "${k.slice(0, 100)}" must be a string, got ${typeof v}`);
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (bytes > MAX_HEADER_BYTES) invalid(`headers are ${bytes} bytes; the limit is ${MAX_HEADER_BYTES}`);
}

export function validateSubscribe(s: SubscribeInput): void {
  if (!s || typeof s !== 'object') invalid('a subscription is required');
  checkId(s.topic, 'topic');
  checkId(s.consumer, 'consumer');
  const m = typeof s.address === 'string' ? ADDRESS_RE.exec(s.address) : null;
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) invalid(`address must be the host:port of a Consumer gRPC service, got "${String(s.address).slice(0, 100)}"`);
}

/** Sleeps `ms`, or less if `signal` aborts or `wake` fires (both optional). */
function nap(ms: number, signal: AbortSignal, wake?: (fire: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', done, { once: true });
    wake?.(done);
  });
}

// ---- delivery state -------------------------------------------------------------------------------------

class Stream {
  cursor = 0;
  cursorVersion: number | undefined;
  /** Acknowledged sequences above the cursor (their markers are durable). */
  readonly acked = new Set<number>();
  readonly inflight = new Map<number, grpc.ClientUnaryCall | undefined>();
  readonly attempts = new Map<number, number>();
  readonly notBefore = new Map<number, number>();
  cursorWrite: Promise<void> | undefined;

  constructor(
    readonly consumer: string,
    public address: string,
  ) {}
}

class TopicRun {
  readonly streams = new Map<string, Stream>();
  readonly slots = new Map<number, Slot>();
  floor = 0;
  counter = 0;
  private dirty = true;
  private fire: (() => void) | undefined;

  constructor(readonly topic: string) {}

  wake(): void {
    this.dirty = true;
    const f = this.fire;
    this.fire = undefined;
    f?.();
  }

  async idle(ms: number, signal: AbortSignal): Promise<void> {
    if (this.dirty) {
      this.dirty = false;
      return;
    }
    await nap(ms, signal, (f) => (this.fire = f));
    this.dirty = false;
  }
}

/** One leadership's delivery: started by becomeLeader, stopped (aborted) by stepDown. */
class Run {
  readonly ac = new AbortController();
  readonly topics = new Map<string, TopicRun>();
  readonly loops = new Set<Promise<void>>();

  constructor(readonly lead: Leadership) {}

  get signal(): AbortSignal {
    return this.ac.signal;
  }
}

export class StoreMessageBroker implements MessageBroker {
  readonly opts: BrokerOptions;
  private run: Run | undefined;
  private readonly clients = new Map<string, grpc.Client>();
  /** Sequences allocated by a Publish on this replica whose message create has not returned yet. */
  private readonly writing = new Map<string, Set<number>>();
  private readonly counters = new Map<string, { value: number; version: number | undefined }>();
  private readonly topicLocks = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly store: TxnStore,
    private readonly metrics: TxnMetrics,
    private readonly log: Logger,
    opts: Partial<BrokerOptions> = {},
  ) {
    this.opts = { ...DEFAULT_BROKER_OPTIONS, ...opts };
  }

  // ---- Publish / Subscribe ------------------------------------------------------------------------------

  async publish(m: PublishInput, lead: Leadership): Promise<{ duplicate: boolean; sequence: number }> {
    validatePublish(m, this.opts.maxPayloadBytes);
    if (lead.signal.aborted) throw new NotLeaderError(`candidate ${lead.candidateId} (epoch ${lead.epoch}) is no longer the leader`);
    const idKey = brokerKeys.msgId(m.messageId);
    const seen = await this.store.get(idKey);
    if (seen) return this.duplicateOf(seen, m);
    const record: StoredMessage = {
      id: m.messageId,
      topic: m.topic,
      key: m.key,
      payload: Buffer.from(m.payload).toString('base64'),
      headers: { ...(m.headers ?? {}) },
      publishedAtMs: Date.now(),
      epoch: lead.epoch,
    };
    for (let i = 0; i < 20; i++) {
      const seq = await this.allocate(m.topic, lead);
      let stored: boolean;
      try {
        stored = await this.store.create(brokerKeys.msg(m.topic, seq), json(record), lead);
      } finally {
        this.writing.get(m.topic)?.delete(seq);
      }
      if (!stored) continue; // the delivery side filled this hole with a tombstone: take the next sequence
      if (!(await this.store.create(idKey, json({ topic: m.topic, seq }), lead))) {
        // a concurrent Publish of the same id won: our copy becomes a tombstone (if it was delivered meanwhile, consumers dedupe)
        const cur = await this.store.get(brokerKeys.msg(m.topic, seq));
        if (cur) await this.store.update(cur.key, json({ tombstone: true, reason: `duplicate of message ${m.messageId}` }), cur.version, lead).catch(() => false);
        const orig = await this.store.get(idKey);
        if (orig) return this.duplicateOf(orig, m);
        throw new TxnError('ABORTED', `message ${m.messageId}: concurrent publishes; retry`);
      }
      this.metrics.published.inc();
      this.run?.topics.get(m.topic)?.wake();
      return { duplicate: false, sequence: seq };
    }
    throw new TxnError('ABORTED', `message ${m.messageId}: no sequence could be written on topic ${m.topic} in 20 attempts; retry`);
  }

  private duplicateOf(v: Versioned, m: PublishInput): { duplicate: boolean; sequence: number } {
    const orig = parse<{ topic: string; seq: number }>(v.value);
    if (orig.topic !== m.topic) throw new TxnError('FAILED_PRECONDITION', `message id ${m.messageId} was already published to topic ${orig.topic}; message ids must be unique`);
    return { duplicate: true, sequence: orig.seq };
  }

  /** Next sequence of `topic` (compare-and-set on the counter; serialized per topic on this replica). */
  private allocate(topic: string, lead: Leadership): Promise<number> {
    const prev = this.topicLocks.get(topic) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.allocateLocked(topic, lead));
    this.topicLocks.set(topic, next);
    void next.finally(() => {
      if (this.topicLocks.get(topic) === next) this.topicLocks.delete(topic);
    }).catch(() => undefined);
    return next;
  }

  private async allocateLocked(topic: string, lead: Leadership): Promise<number> {
    const key = brokerKeys.counter(topic);
    let writing = this.writing.get(topic);
    if (!writing) this.writing.set(topic, (writing = new Set()));
    for (let i = 0; i < 50; i++) {
      let c = this.counters.get(topic);
      if (!c) {
        const v = await this.store.get(key);
        c = v ? { value: parse<{ n: number }>(v.value).n, version: v.version } : { value: 0, version: undefined };
      }
      const seq = c.value + 1;
      writing.add(seq);
      let ok = false;
      try {
        ok = c.version === undefined ? await this.store.create(key, json({ n: seq }), lead) : await this.store.update(key, json({ n: seq }), c.version, lead);
      } finally {
        if (!ok) writing.delete(seq);
      }
      if (ok) {
        this.counters.set(topic, { value: seq, version: c.version === undefined ? 0 : c.version + 1 });
        return seq;
      }
      this.counters.delete(topic);
    }
    throw new TxnError('ABORTED', `topic ${topic}: the sequence counter kept changing; retry`);
  }

  async subscribe(s: SubscribeInput, lead: Leadership): Promise<void> {
    validateSubscribe(s);
    const key = brokerKeys.sub(s.topic, s.consumer);
    const value = json({ topic: s.topic, consumer: s.consumer, address: s.address });
    for (let i = 0; i < 20; i++) {
      // the cursor first: a new subscriber starts at the oldest retained message
      if (!(await this.store.get(brokerKeys.cursor(s.topic, s.consumer)))) {
        const f = await this.store.get(brokerKeys.floor(s.topic));
        await this.store.create(brokerKeys.cursor(s.topic, s.consumer), json({ n: f ? parse<{ n: number }>(f.value).n : 0 }), lead);
      }
      const cur = await this.store.get(key);
      if (cur) {
        const old = parse<SubscribeInput>(cur.value);
        if (old.address === s.address) break;
        if (await this.store.update(key, value, cur.version, lead)) break;
      } else if (await this.store.create(key, value, lead)) break;
      if (i === 19) throw new TxnError('ABORTED', `subscription ${s.topic}/${s.consumer} kept changing; retry`);
    }
    const run = this.run;
    if (run && run.lead === lead && !run.signal.aborted) await this.addStream(run, s.topic, s.consumer, s.address);
  }

  // ---- leadership -----------------------------------------------------------------------------------------

  async becomeLeader(lead: Leadership): Promise<void> {
    if (this.closed) return;
    this.stepDown();
    this.counters.clear();
    const run = new Run(lead);
    this.run = run;
    lead.signal.addEventListener('abort', () => {
      if (this.run === run) this.stepDown();
    }, { once: true });
    let subs = 0;
    for (const t of await this.store.list('sub')) {
      for (const v of await this.store.list(t.key)) {
        if (run.signal.aborted) return;
        const s = parse<SubscribeInput>(v.value);
        await this.addStream(run, s.topic, s.consumer, s.address);
        subs++;
      }
    }
    this.spawn(run, this.gcLoop(run));
    this.log.info(`message broker leading (epoch ${lead.epoch}): ${subs} subscription(s) on ${run.topics.size} topic(s) resumed`);
  }

  stepDown(): void {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    run.ac.abort(new NotLeaderError('stepped down'));
    for (const t of run.topics.values()) for (const s of t.streams.values()) for (const call of s.inflight.values()) call?.cancel();
  }

  async close(): Promise<void> {
    this.closed = true;
    const run = this.run;
    this.stepDown();
    if (run) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.allSettled([...run.loops]), new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
    }
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  /** For tests and operators: the delivery state this replica holds (undefined when not leading). */
  snapshot(): { topic: string; consumer: string; cursor: number; acked: number[]; inflight: number[] }[] | undefined {
    const run = this.run;
    if (!run) return undefined;
    return [...run.topics.values()].flatMap((t) => [...t.streams.values()].map((s) => ({ topic: t.topic, consumer: s.consumer, cursor: s.cursor, acked: [...s.acked].sort((a, b) => a - b), inflight: [...s.inflight.keys()] })));
  }

  private spawn(run: Run, p: Promise<void>): void {
    const q = p.catch((err: unknown) => {
      if (!run.signal.aborted && !(err instanceof NotLeaderError)) this.log.error(`message broker: ${(err as Error).message}`);
    });
    run.loops.add(q);
    void q.finally(() => run.loops.delete(q));
  }

  private async addStream(run: Run, topic: string, consumer: string, address: string): Promise<void> {
    let t = run.topics.get(topic);
    const existing = t?.streams.get(consumer);
    if (existing) {
      existing.address = address;
      t!.wake();
      return;
    }
    const s = new Stream(consumer, address);
    const f = await this.store.get(brokerKeys.floor(topic));
    const floor = f ? parse<{ n: number }>(f.value).n : 0;
    const cur = await this.store.get(brokerKeys.cursor(topic, consumer));
    s.cursor = Math.max(floor, cur ? parse<{ n: number }>(cur.value).n : 0);
    s.cursorVersion = cur?.version;
    for (const a of await this.store.list(brokerKeys.ackDir(topic, consumer))) {
      const seq = Number(a.key.slice(a.key.lastIndexOf('/') + 1));
      if (seq > s.cursor) s.acked.add(seq);
      else await this.store.delete(a.key, undefined, run.lead).catch(() => false);
    }
    if (run.signal.aborted) return;
    t = run.topics.get(topic); // may have been created meanwhile
    if (!t) {
      t = new TopicRun(topic);
      t.floor = floor;
      run.topics.set(topic, t);
      t.streams.set(consumer, s);
      this.spawn(run, this.topicLoop(run, t));
    } else if (!t.streams.has(consumer)) t.streams.set(consumer, s);
    t.wake();
  }

  // ---- delivery ---------------------------------------------------------------------------------------------

  private async topicLoop(run: Run, t: TopicRun): Promise<void> {
    let failures = 0;
    while (!run.signal.aborted) {
      let delay = this.opts.pollMs;
      try {
        await this.refresh(run, t);
        for (const s of t.streams.values()) {
          const next = this.pump(run, t, s);
          delay = Math.min(delay, next);
          this.advanceCursor(run, t, s);
        }
        failures = 0;
      } catch (err) {
        if (err instanceof NotLeaderError || run.signal.aborted) return;
        failures++;
        delay = Math.min(this.opts.pollMs * 5, 100 * 2 ** Math.min(failures, 6));
        this.log.warn(`message broker, topic ${t.topic}: ${(err as Error).message}; retrying in ${delay} ms`);
      }
      await t.idle(delay, run.signal);
    }
  }

  /** Loads the messages above the lowest cursor up to the counter, filling holes nobody is writing. */
  private async refresh(run: Run, t: TopicRun): Promise<void> {
    const c = await this.store.get(brokerKeys.counter(t.topic));
    t.counter = c ? parse<{ n: number }>(c.value).n : 0;
    if (t.streams.size === 0) return;
    const base = Math.max(t.floor, Math.min(...[...t.streams.values()].map((s) => s.cursor)));
    for (const seq of [...t.slots.keys()]) if (seq <= base) t.slots.delete(seq);
    const missing: number[] = [];
    for (let seq = base + 1; seq <= t.counter; seq++) if (!t.slots.has(seq)) missing.push(seq);
    for (let i = 0; i < missing.length; i += 32) {
      const batch = missing.slice(i, i + 32);
      const got = await Promise.all(batch.map((seq) => this.store.get(brokerKeys.msg(t.topic, seq))));
      for (let j = 0; j < batch.length; j++) {
        const seq = batch[j];
        const v = got[j];
        if (v) {
          t.slots.set(seq, parse<Slot>(v.value));
          continue;
        }
        if (this.writing.get(t.topic)?.has(seq)) continue; // this replica's Publish is still writing it
        if (run.signal.aborted) return;
        // allocated, but its Publish failed or its leader is gone: nobody will write it; fill it
        const tomb: Tombstone = { tombstone: true, reason: `sequence allocated but never written (filled by epoch ${run.lead.epoch})` };
        if (await this.store.create(brokerKeys.msg(t.topic, seq), json(tomb), run.lead)) t.slots.set(seq, tomb);
        else {
          const again = await this.store.get(brokerKeys.msg(t.topic, seq));
          if (again) t.slots.set(seq, parse<Slot>(again.value));
        }
      }
    }
  }

  /** Starts the deliveries that may go now; returns how long until the next retry is due. */
  private pump(run: Run, t: TopicRun, s: Stream): number {
    const now = Date.now();
    let nextDue = Infinity;
    const heads = new Set<string>();
    for (let seq = s.cursor + 1; t.slots.has(seq); seq++) {
      const slot = t.slots.get(seq)!;
      if (isTomb(slot) || s.acked.has(seq)) continue;
      if (heads.has(slot.key)) continue; // behind its key's head
      heads.add(slot.key);
      if (s.inflight.has(seq)) continue;
      const due = s.notBefore.get(seq) ?? 0;
      if (due > now) {
        nextDue = Math.min(nextDue, due - now);
        continue;
      }
      if (s.inflight.size >= this.opts.concurrency) break;
      this.deliver(run, t, s, seq, slot);
    }
    return nextDue;
  }

  private client(address: string): grpc.Client {
    let c = this.clients.get(address);
    if (!c) {
      c = new (loadTxnProto().Consumer)(address, grpc.credentials.createInsecure());
      this.clients.set(address, c);
    }
    return c;
  }

  private deliver(run: Run, t: TopicRun, s: Stream, seq: number, m: StoredMessage): void {
    const attempt = (s.attempts.get(seq) ?? 0) + 1;
    s.attempts.set(seq, attempt);
    if (attempt > 1) this.metrics.redelivered.inc();
    s.inflight.set(seq, undefined);
    const req = { messageId: m.id, topic: m.topic, key: m.key, payload: Buffer.from(m.payload, 'base64'), headers: m.headers, sequence: seq, attempt };
    const c = this.client(s.address) as unknown as Record<string, (r: Msg, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>;
    const p = new Promise<void>((resolve, reject) => {
      const call = c.Deliver.call(c, req, { deadline: Date.now() + this.opts.deliverTimeoutMs }, (e) => (e ? reject(e) : resolve()));
      s.inflight.set(seq, call);
    });
    const done = p
      .then(async () => {
        if (run.signal.aborted) return;
        // durable acknowledgment before the key's next message may go
        await this.store.create(brokerKeys.ack(t.topic, s.consumer, seq), json({ at: Date.now() }), run.lead);
        s.acked.add(seq);
        s.attempts.delete(seq);
        s.notBefore.delete(seq);
        this.metrics.delivered.inc();
        this.metrics.deliveryLag.observe(Math.max(0, Date.now() - m.publishedAtMs) / 1000);
      })
      .catch((err: unknown) => {
        if (run.signal.aborted || err instanceof NotLeaderError) return;
        const e = err as grpc.ServiceError;
        const backoff = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** Math.min(attempt - 1, 20)) * (0.8 + Math.random() * 0.4);
        s.notBefore.set(seq, Date.now() + backoff);
        const what = e instanceof StoreUnavailableError ? `acknowledgment not recorded: ${e.message}` : `${e.details || e.message}`;
        this.log.debug(`deliver ${t.topic}#${seq} (${m.id}) to ${s.consumer} at ${s.address}, attempt ${attempt}: ${what}; retry in ${Math.round(backoff)} ms`);
      })
      .finally(() => {
        s.inflight.delete(seq);
        t.wake();
      });
    run.loops.add(done);
    void done.finally(() => run.loops.delete(done));
  }

  /** Moves the durable cursor over the acknowledged prefix, then drops the markers it covers. */
  private advanceCursor(run: Run, t: TopicRun, s: Stream): void {
    if (s.cursorWrite) return;
    let n = s.cursor;
    while (t.slots.has(n + 1) && (s.acked.has(n + 1) || isTomb(t.slots.get(n + 1)))) n++;
    if (n === s.cursor) return;
    const from = s.cursor;
    const key = brokerKeys.cursor(t.topic, s.consumer);
    s.cursorWrite = (async () => {
      const ok = s.cursorVersion === undefined ? await this.store.create(key, json({ n }), run.lead) : await this.store.update(key, json({ n }), s.cursorVersion, run.lead);
      if (!ok) {
        const cur = await this.store.get(key);
        s.cursorVersion = cur?.version;
        return;
      }
      s.cursorVersion = s.cursorVersion === undefined ? 0 : s.cursorVersion + 1;
      s.cursor = n;
      const covered = [...s.acked].filter((q) => q > from && q <= n);
      for (const q of covered) s.acked.delete(q);
      for (let i = 0; i < covered.length; i += 16)
        await Promise.all(covered.slice(i, i + 16).map((q) => this.store.delete(brokerKeys.ack(t.topic, s.consumer, q), undefined, run.lead).catch(() => false)));
    })()
      .catch((err: unknown) => {
        if (!run.signal.aborted && !(err instanceof NotLeaderError)) this.log.warn(`cursor of ${t.topic}/${s.consumer}: ${(err as Error).message}`);
      })
      .finally(() => {
        s.cursorWrite = undefined;
        t.wake();
      });
    run.loops.add(s.cursorWrite);
  }

  // ---- garbage collection -----------------------------------------------------------------------------------

  private async gcLoop(run: Run): Promise<void> {
    const every = this.opts.gcIntervalMs ?? Math.min(60_000, Math.max(1000, this.opts.retentionMs / 4));
    while (!run.signal.aborted) {
      await nap(every, run.signal);
      if (run.signal.aborted) return;
      try {
        await this.gc(run);
      } catch (err) {
        if (err instanceof NotLeaderError || run.signal.aborted) return;
        this.log.warn(`message broker gc: ${(err as Error).message}`);
      }
    }
  }

  /** Deletes messages every subscriber acknowledged (or tombstones) once past the retention; moves the floor. Returns how many. */
  async gc(run: Run | undefined = this.run): Promise<number> {
    if (!run) return 0;
    const now = Date.now();
    let removed = 0;
    for (const c of await this.store.list('seq')) {
      const topic = decodeName(c.key.slice('seq/'.length));
      const counter = parse<{ n: number }>(c.value).n;
      const fv = await this.store.get(brokerKeys.floor(topic));
      const floor = fv ? parse<{ n: number }>(fv.value).n : 0;
      const subs = await this.store.list(brokerKeys.subDir(topic));
      let upTo = counter;
      for (const sv of subs) {
        const sub = parse<SubscribeInput>(sv.value);
        const cur = await this.store.get(brokerKeys.cursor(topic, sub.consumer));
        upTo = Math.min(upTo, cur ? parse<{ n: number }>(cur.value).n : floor);
      }
      let newFloor = floor;
      for (let seq = floor + 1; seq <= upTo && !run.signal.aborted; seq++) {
        const v = await this.store.get(brokerKeys.msg(topic, seq));
        if (v) {
          const slot = parse<Slot>(v.value);
          if (!isTomb(slot)) {
            if (slot.publishedAtMs + this.opts.retentionMs > now) break;
            const idv = await this.store.get(brokerKeys.msgId(slot.id));
            if (idv) {
              const ref = parse<{ topic: string; seq: number }>(idv.value);
              if (ref.topic === topic && ref.seq === seq) await this.store.delete(idv.key, idv.version, run.lead);
            }
          }
          await this.store.delete(v.key, v.version, run.lead);
          removed++;
        }
        newFloor = seq;
      }
      if (newFloor > floor) {
        if (fv) await this.store.update(fv.key, json({ n: newFloor }), fv.version, run.lead);
        else await this.store.create(brokerKeys.floor(topic), json({ n: newFloor }), run.lead);
        const tr = run.topics.get(topic);
        if (tr) tr.floor = Math.max(tr.floor, newFloor);
      }
    }
    return removed;
  }
}

/** The factory for `TxnModule.forRoot(cfg, createMessageBroker)`. */
export const createMessageBroker: BrokerFactory = (store, metrics, log) => new StoreMessageBroker(store, metrics, log);

/** A factory with non-default options (tests, tuning). */
export function messageBrokerFactory(opts: Partial<BrokerOptions>): BrokerFactory {
  return (store, metrics, log) => new StoreMessageBroker(store, metrics, log, opts);
}
