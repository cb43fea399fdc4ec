/**
 * A linearizability checker: a TypeScript port of porcupine (Anish Athalye), i.e. the Wing–Gong–Lowe search with
 * P-compositionality (histories are checked one partition, usually one key, at a time) and a cache of
 * (set of linearized operations, model state) pairs already explored. See docs/linearizability.md.
 *
 * Pure: no I/O; the only impurity is reading the clock for the timeout.
 */

/** A sequential specification of the object whose history is checked. `step` must be deterministic. */
export interface Model<State, Input, Output> {
  init(): State;
  /**
   * Applies `input` to `state`; `ok` says whether `output` is a legal response. `output` is `undefined` for an
   * indeterminate operation (timed out, outcome unknown): the model must then accept (ok: true) and return the state
   * the operation would have produced had it taken effect at this point.
   */
  step(state: State, input: Input, output: Output | undefined): { ok: boolean; state: State };
  equal(a: State, b: State): boolean;
  /** A string that is equal for equal states (collisions are allowed; `equal` decides). */
  hash(state: State): string;
  /** Splits a history into independent sub-histories (P-compositionality), typically by key. */
  partition?(history: readonly Operation<Input, Output>[]): Operation<Input, Output>[][];
  describeOperation?(input: Input, output: Output | undefined): string;
  describeState?(state: State): string;
}

/**
 * One completed or indeterminate operation. `call` and `return` are times on one clock (any unit). An operation
 * whose outcome is unknown has `return = Infinity` and no `output`: it may have taken effect at any instant after
 * its call, or never.
 */
export interface Operation<Input, Output> {
  clientId: number;
  input: Input;
  call: number;
  output?: Output;
  return: number;
}

export type CheckVerdict = 'ok' | 'illegal' | 'unknown';

export interface CheckOptions {
  /** Overall budget for the whole history; past it the verdict is 'unknown'. Absent or <= 0: no limit. */
  timeoutMs?: number;
}

export interface PartitionResult<Input, Output> {
  index: number;
  operations: number;
  result: CheckVerdict;
  /** Length of the longest linearizable prefix found by the search. */
  longestPrefix: number;
  /** For an 'ok' partition: one valid linearization (indeterminate operations left out never took effect). */
  linearization?: Operation<Input, Output>[];
}

export interface CheckInfo<State, Input, Output> {
  partition: number;
  /** The longest linearizable prefix found, in linearization order. */
  linearized: Operation<Input, Output>[];
  /** The model state after that prefix. */
  state: State;
  /** Operations that could have come next (concurrent with the earliest pending return) but none of them fit. */
  candidates: Operation<Input, Output>[];
  message: string;
}

export interface CheckResult<State, Input, Output> {
  result: CheckVerdict;
  partitions: PartitionResult<Input, Output>[];
  illegalPartition?: number;
  info?: CheckInfo<State, Input, Output>;
  elapsedMs: number;
}

const NIL = -1;
const CLOCK_EVERY = 256;

/** Deterministic 32-bit mixer used to give every operation id a random-looking hash contribution. */
function mix32(x: number, salt: number): number {
  let h = (x ^ salt) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

interface CacheEntry<State> {
  bits: Uint32Array;
  state: State;
}

interface SingleResult<State> {
  result: CheckVerdict;
  order: number[]; // op indices: the linearization (ok) or the longest prefix (otherwise)
  state: State;
}

function checkSingle<State, Input, Output>(
  model: Model<State, Input, Output>,
  ops: readonly Operation<Input, Output>[],
  deadline: number,
): SingleResult<State> {
  const n = ops.length;
  let definiteLeft = 0;
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    if (!(op.call <= op.return) || Number.isNaN(op.call)) {
      throw new Error(`operation ${i} of client ${op.clientId}: call ${op.call} is not <= return ${op.return}`);
    }
    if (op.return !== Infinity) definiteLeft++;
  }
  let state = model.init();
  if (definiteLeft === 0) return { result: 'ok', order: [], state };

  // Entries: call of op i is i, return of op i is n + i, sentinel head is 2n.
  const events = new Int32Array(2 * n);
  for (let i = 0; i < 2 * n; i++) events[i] = i;
  const timeOf = (e: number): number => (e < n ? ops[e]!.call : ops[e - n]!.return);
  const sorted = Array.from(events).sort((a, b) => {
    const ta = timeOf(a);
    const tb = timeOf(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = a < n ? 0 : 1;
    const kb = b < n ? 0 : 1;
    if (ka !== kb) return ka - kb; // calls before returns at equal time
    return a - b;
  });
  const head = 2 * n;
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  let last = head;
  prev[head] = NIL;
  for (const e of sorted) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = NIL;

  const lift = (c: number): void => {
    next[prev[c]!] = next[c]!;
    prev[next[c]!] = prev[c]!; // a call is always followed by its return
    const r = c + n;
    next[prev[r]!] = next[r]!;
    if (next[r] !== NIL) prev[next[r]!] = prev[r]!;
  };
  const unlift = (c: number): void => {
    const r = c + n;
    next[prev[r]!] = r;
    if (next[r] !== NIL) prev[next[r]!] = r;
    next[prev[c]!] = c;
    prev[next[c]!] = c;
  };

  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const hashA = new Uint32Array(n);
  const hashB = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    hashA[i] = mix32(i + 1, 0x9e3779b9);
    hashB[i] = mix32(i + 1, 0x85ebca6b);
  }
  let hA = 0;
  let hB = 0;
  const cache = new Map<string, CacheEntry<State>[]>();
  const sameBits = (a: Uint32Array): boolean => {
    for (let w = 0; w < words; w++) if (a[w] !== bits[w]) return false;
    return true;
  };

  const stackOp = new Int32Array(n);
  const stackState: State[] = new Array<State>(n);
  let depth = 0;
  let best: number[] = [];
  let bestState = state;
  let iterations = 0;

  let entry = next[head]!;
  for (;;) {
    if (++iterations % CLOCK_EVERY === 0 && Date.now() > deadline) {
      return { result: 'unknown', order: best, state: bestState };
    }
    if (entry !== NIL && entry < n) {
      const op = ops[entry]!;
      const indeterminate = op.return === Infinity;
      const r = model.step(state, op.input, indeterminate ? undefined : op.output);
      if (r.ok) {
        // Tentatively set the bit to look the (set, state) pair up in the cache.
        const w = entry >>> 5;
        const m = 1 << (entry & 31);
        bits[w] = bits[w]! | m;
        const nA = (hA ^ hashA[entry]!) >>> 0;
        const nB = (hB ^ hashB[entry]!) >>> 0;
        const key = `${nA}:${nB}:${model.hash(r.state)}`;
        let bucket = cache.get(key);
        let seen = false;
        if (bucket) {
          for (const c of bucket) {
            if (sameBits(c.bits) && model.equal(c.state, r.state)) {
              seen = true;
              break;
            }
          }
        }
        if (!seen) {
          if (!bucket) {
            bucket = [];
            cache.set(key, bucket);
          }
          bucket.push({ bits: bits.slice(), state: r.state });
          hA = nA;
          hB = nB;
          stackOp[depth] = entry;
          stackState[depth] = state;
          depth++;
          state = r.state;
          lift(entry);
          if (!indeterminate) definiteLeft--;
          if (depth > best.length) {
            best = Array.from(stackOp.subarray(0, depth));
            bestState = state;
          }
          if (definiteLeft === 0) {
            // Every definite operation is linearized; the indeterminate ones left never took effect.
            return { result: 'ok', order: Array.from(stackOp.subarray(0, depth)), state };
          }
          entry = next[head]!;
        } else {
          bits[w] = bits[w]! & ~m;
          entry = next[entry]!;
        }
      } else {
        entry = next[entry]!;
      }
    } else {
      // Reached a return (or the end): the op it belongs to cannot be postponed further; backtrack.
      if (depth === 0) return { result: 'illegal', order: best, state: bestState };
      depth--;
      const c = stackOp[depth]!;
      state = stackState[depth]!;
      stackState[depth] = undefined as unknown as State;
      bits[c >>> 5] = bits[c >>> 5]! & ~(1 << (c & 31));
      hA = (hA ^ hashA[c]!) >>> 0;
      hB = (hB ^ hashB[c]!) >>> 0;
      if (ops[c]!.return !== Infinity) definiteLeft++;
      unlift(c);
      entry = next[c]!;
    }
  }
}

function fmtTime(t: number): string {
  return t === Infinity ? '∞' : String(t);
}

function describeOp<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const out = op.return === Infinity ? undefined : op.output;
  const body = model.describeOperation
    ? model.describeOperation(op.input, out)
    : `${JSON.stringify(op.input)} -> ${out === undefined ? '?' : JSON.stringify(out)}`;
  return `client ${op.clientId} [${fmtTime(op.call)}, ${fmtTime(op.return)}] ${body}`;
}

function describeState<S, I, O>(model: Model<S, I, O>, s: S): string {
  return model.describeState ? model.describeState(s) : JSON.stringify(s);
}

function buildInfo<S, I, O>(
  model: Model<S, I, O>,
  partition: number,
  ops: readonly Operation<I, O>[],
  single: SingleResult<S>,
  verdict: CheckVerdict,
): CheckInfo<S, I, O> {
  const linearized = single.order.map((i) => ops[i]!);
  const done = new Set(single.order);
  const remaining = ops.filter((_, i) => !done.has(i));
  let minReturn = Infinity;
  for (const op of remaining) if (op.return < minReturn) minReturn = op.return;
  const candidates = remaining.filter((op) => op.call <= minReturn);
  const tail = linearized.slice(-10);
  const lines = [
    verdict === 'illegal'
      ? `partition ${partition} is not linearizable: the longest linearizable prefix has ${linearized.length} of ${ops.length} operations`
      : `partition ${partition}: search timed out; the longest linearizable prefix found has ${linearized.length} of ${ops.length} operations`,
    `last linearized operations${linearized.length > tail.length ? ` (last ${tail.length})` : ''}:`,
    ...tail.map((op) => `  ${describeOp(model, op)}`),
    `state after the prefix: ${describeState(model, single.state)}`,
    `none of these could come next:`,
    ...candidates.slice(0, 10).map((op) => `  ${describeOp(model, op)}`),
  ];
  if (candidates.length > 10) lines.push(`  ... and ${candidates.length - 10} more`);
  return { partition, linearized, state: single.state, candidates, message: lines.join('\n') };
}

/**
 * Checks that `history` is linearizable with respect to `model`. 'unknown' means the search ran out of time: callers
 * must count it as a failure, never as a pass.
 */
export function checkOperations<State, Input, Output>(
  model: Model<State, Input, Output>,
  history: readonly Operation<Input, Output>[],
  options: CheckOptions = {},
): CheckResult<State, Input, Output> {
  const start = Date.now();
  const deadline = options.timeoutMs && options.timeoutMs > 0 ? start + options.timeoutMs : Infinity;
  const parts = model.partition ? model.partition(history) : [history.slice()];
  const partitions: PartitionResult<Input, Output>[] = [];
  let unknownInfo: CheckInfo<State, Input, Output> | undefined;
  for (let p = 0; p < parts.length; p++) {
    const ops = parts[p]!;
    const single = checkSingle(model, ops, deadline);
    const pr: PartitionResult<Input, Output> = {
      index: p,
      operations: ops.length,
      result: single.result,
      longestPrefix: single.order.length,
    };
    if (single.result === 'ok') pr.linearization = single.order.map((i) => ops[i]!);
    partitions.push(pr);
    if (single.result === 'illegal') {
      return {
        result: 'illegal',
        partitions,
        illegalPartition: p,
        info: buildInfo(model, p, ops, single, 'illegal'),
        elapsedMs: Date.now() - start,
      };
    }
    if (single.result === 'unknown') {
      unknownInfo = buildInfo(model, p, ops, single, 'unknown');
      break; // the budget is spent; the remaining partitions are not checked
    }
  }
  if (unknownInfo) return { result: 'unknown', partitions, info: unknownInfo, elapsedMs: Date.now() - start };
  return { result: 'ok', partitions, elapsedMs: Date.now() - start };
}
