/**
 * Sequential models for the linearizability checker. Every model partitions its history by `input.key` and accepts
 * any indeterminate step (`output === undefined`), returning the state the operation would have produced.
 */
import type { Model, Operation } from './checker.js';

/** Splits a history by `input.key`, keeping first-seen key order (deterministic). */
export function partitionByKey<I extends { key: string }, O>(history: readonly Operation<I, O>[]): Operation<I, O>[][] {
  const byKey = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    let list = byKey.get(op.input.key);
    if (!list) {
      list = [];
      byKey.set(op.input.key, list);
    }
    list.push(op);
  }
  return [...byKey.values()];
}

// ---------------------------------------------------------------------------------------------------------------
// Versioned register (a tree node: value + version; write; compare-and-set on the version)

export interface VersionedState {
  /** null: the key has never been written. */
  value: string | null;
  /** 0 before the first write; each successful write or cas adds 1. */
  version: number;
}

export type VersionedInput =
  | { key: string; op: 'read' }
  | { key: string; op: 'write'; value: string }
  | { key: string; op: 'cas'; expectedVersion: number; value: string };

/**
 * read → `{ value, version }`; write → `{}` or `{ version }` (the new version, checked when given);
 * cas → `{ ok }` (and optionally the new `version` when ok).
 */
export interface VersionedOutput {
  ok?: boolean;
  value?: string | null;
  version?: number;
}

export const versionedRegisterModel: Model<VersionedState, VersionedInput, VersionedOutput> = {
  init: () => ({ value: null, version: 0 }),
  step(state, input, output) {
    switch (input.op) {
      case 'read': {
        if (output === undefined) return { ok: true, state };
        const ok =
          output.value === state.value && (output.version === undefined || output.version === state.version);
        return { ok, state };
      }
      case 'write': {
        const next = { value: input.value, version: state.version + 1 };
        const ok = output === undefined || output.version === undefined || output.version === next.version;
        return { ok, state: next };
      }
      case 'cas': {
        const matches = input.expectedVersion === state.version;
        const next = matches ? { value: input.value, version: state.version + 1 } : state;
        if (output === undefined) return { ok: true, state: next };
        if (output.ok) {
          return { ok: matches && (output.version === undefined || output.version === next.version), state: next };
        }
        return { ok: !matches, state };
      }
    }
  },
  equal: (a, b) => a.value === b.value && a.version === b.version,
  hash: (s) => `${s.version}:${s.value ?? ''}`,
  partition: partitionByKey,
  describeOperation(input, output) {
    const out = output === undefined ? '?' : JSON.stringify(output);
    switch (input.op) {
      case 'read':
        return `read(${input.key}) -> ${out}`;
      case 'write':
        return `write(${input.key}, ${JSON.stringify(input.value)}) -> ${out}`;
      case 'cas':
        return `cas(${input.key}, v${input.expectedVersion}, ${JSON.stringify(input.value)}) -> ${out}`;
    }
  },
  describeState: (s) => (s.version === 0 ? 'absent (version 0)' : `${JSON.stringify(s.value)} @ version ${s.version}`),
};

// ---------------------------------------------------------------------------------------------------------------
// Plain key-value register

export type KvInput = { key: string; op: 'read' } | { key: string; op: 'write'; value: string };
/** read → `{ value }` (null: never written); write → `{}`. */
export interface KvOutput {
  value?: string | null;
}

export const kvRegisterModel: Model<string | null, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    if (input.op === 'write') return { ok: true, state: input.value };
    return { ok: output === undefined || output.value === state, state };
  },
  equal: (a, b) => a === b,
  hash: (s) => (s === null ? '\u0000' : s),
  partition: partitionByKey,
  describeOperation(input, output) {
    const out = output === undefined ? '?' : JSON.stringify(output);
    return input.op === 'read'
      ? `read(${input.key}) -> ${out}`
      : `write(${input.key}, ${JSON.stringify(input.value)}) -> ${out}`;
  },
  describeState: (s) => (s === null ? 'absent' : JSON.stringify(s)),
};

// ---------------------------------------------------------------------------------------------------------------
// Sequential names (sequential nodes under one parent): unique and increasing in linearization order

export interface SequentialInput {
  /** The parent (or prefix) under which names are created. */
  key: string;
  op: 'create';
}
/** The created name; its trailing digits are its sequence number (e.g. `lock-0000000042`). */
export interface SequentialOutput {
  name: string;
}

/** The sequence number of a sequential name: its trailing digits. Throws if there are none. */
export function sequenceOf(name: string): number {
  const m = /(\d+)$/.exec(name);
  if (!m) throw new Error(`sequential name without a trailing number: ${JSON.stringify(name)}`);
  return Number(m[1]);
}

/** State: the highest sequence number handed out so far (-1: none). */
export const sequentialNamesModel: Model<number, SequentialInput, SequentialOutput> = {
  init: () => -1,
  step(state, _input, output) {
    if (output === undefined) return { ok: true, state }; // it may have consumed a number: gaps are allowed
    const seq = sequenceOf(output.name);
    return seq > state ? { ok: true, state: seq } : { ok: false, state };
  },
  equal: (a, b) => a === b,
  hash: (s) => String(s),
  partition: partitionByKey,
  describeOperation: (input, output) => `create(${input.key}) -> ${output === undefined ? '?' : output.name}`,
  describeState: (s) => (s < 0 ? 'no name yet' : `last sequence ${s}`),
};

// ---------------------------------------------------------------------------------------------------------------
// Lock-fenced counter: a resource that accepts an increment only with a fencing token >= the highest it has seen

export type FencedInput = { key: string; op: 'read' } | { key: string; op: 'incr'; token: number };
/** read → `{ value }`; incr → `{ ok }` (rejected: ok false) and optionally the new `value` when ok. */
export interface FencedOutput {
  ok?: boolean;
  value?: number;
}
export interface FencedState {
  highestToken: number;
  value: number;
}

export const fencedCounterModel: Model<FencedState, FencedInput, FencedOutput> = {
  init: () => ({ highestToken: -Infinity, value: 0 }),
  step(state, input, output) {
    if (input.op === 'read') return { ok: output === undefined || output.value === state.value, state };
    const accepted = input.token >= state.highestToken;
    const next = accepted ? { highestToken: input.token, value: state.value + 1 } : state;
    if (output === undefined) return { ok: true, state: next };
    if (output.ok) return { ok: accepted && (output.value === undefined || output.value === next.value), state: next };
    return { ok: !accepted, state };
  },
  equal: (a, b) => a.highestToken === b.highestToken && a.value === b.value,
  hash: (s) => `${s.highestToken}:${s.value}`,
  partition: partitionByKey,
  describeOperation(input, output) {
    const out = output === undefined ? '?' : JSON.stringify(output);
    return input.op === 'read' ? `read(${input.key}) -> ${out}` : `incr(${input.key}, token ${input.token}) -> ${out}`;
  },
  describeState: (s) => `value ${s.value}, highest token ${s.highestToken}`,
};
