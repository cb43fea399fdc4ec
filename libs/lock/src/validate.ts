/**
 * Input validation for the lock service: every field of an Acquire, Release, KeepAlive, Describe and List is
 * checked here before any backend sees it, so bad input gets INVALID_ARGUMENT and changes nothing.
 */
import { LockError } from './types.js';
import type { AcquireSpec, LockMode } from './types.js';

export const LIMITS = {
  nameMaxLength: 256,
  idMaxLength: 128,
  minTtlMs: 1000,
  maxTtlMs: 3_600_000,
  maxWaitMs: 86_400_000,
  maxLimit: 10_000,
  listMax: 10_000,
} as const;

const NAME_RE = /^[A-Za-z0-9._:/-]+$/;

export function invalid(message: string): LockError {
  return new LockError('INVALID_ARGUMENT', message);
}

/** Lock names: 1..256 chars of [A-Za-z0-9._:/-]; no leading or trailing '/', no empty, '.' or '..' segment. */
export function validateName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw invalid(`${field} is required: a lock name such as "orders/42"`);
  if (name.length > LIMITS.nameMaxLength) throw invalid(`${field} is ${name.length} characters long; the limit is ${LIMITS.nameMaxLength}`);
  if (!NAME_RE.test(name)) throw invalid(`${field} "${name}" has a character outside [A-Za-z0-9._:/-]`);
  const segs = name.split('/');
  if (segs.some((s) => s === '' || s === '.' || s === '..'))
    throw invalid(`${field} "${name}" has an empty, "." or ".." segment (no leading, trailing or double "/")`);
  return name;
}

function optionalId(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalid(`${field} must be a string`);
  if (v.length > LIMITS.idMaxLength) throw invalid(`${field} is ${v.length} characters long; the limit is ${LIMITS.idMaxLength}`);
  if ([...v].some((c) => c.charCodeAt(0) < 0x20)) throw invalid(`${field} contains a control character`);
  return v;
}

function intIn(v: unknown, field: string, min: number, max: number, unit = ''): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`${field} must be an integer${unit ? ` (${unit})` : ''}`);
  if (v < min || v > max) throw invalid(`${field} is ${v}${unit}; it must be between ${min}${unit} and ${max}${unit}`);
  return v;
}

export interface RawAcquire {
  name?: unknown;
  mode?: unknown;
  limit?: unknown;
  ttlMs?: unknown;
  waitMs?: unknown;
  ownerId?: unknown;
  requestId?: unknown;
}

/** Defaults: mode EXCLUSIVE, limit 1, TTL 10 s, wait 0 (try once) when omitted (0 / empty in proto3). */
export function validateAcquire(r: RawAcquire, supportsSharedAndCounting = true, backend = 'this backend'): AcquireSpec {
  const name = validateName(r.name);
  const mode: LockMode = r.mode === undefined || r.mode === '' || r.mode === 'MODE_UNSPECIFIED' || r.mode === 'EXCLUSIVE' ? 'EXCLUSIVE' : r.mode === 'SHARED' ? 'SHARED' : (() => {
    throw invalid(`mode must be EXCLUSIVE or SHARED, got ${String(r.mode)}`);
  })();
  const limit = r.limit === undefined || r.limit === 0 ? 1 : intIn(r.limit, 'limit', 1, LIMITS.maxLimit);
  if (mode === 'SHARED' && limit !== 1) throw invalid(`limit ${limit} is only valid with mode EXCLUSIVE (a counting semaphore); a SHARED lock takes limit 1`);
  const ttlMs = r.ttlMs === undefined || r.ttlMs === 0 ? 10_000 : intIn(r.ttlMs, 'ttl_ms', LIMITS.minTtlMs, LIMITS.maxTtlMs, ' ms');
  const waitMs = r.waitMs === undefined ? 0 : intIn(r.waitMs, 'wait_ms', 0, LIMITS.maxWaitMs, ' ms');
  if (!supportsSharedAndCounting && (mode === 'SHARED' || limit > 1))
    throw new LockError(
      'FAILED_PRECONDITION',
      `${backend} supports only EXCLUSIVE locks with limit 1: majority voting over independent servers cannot count readers or permits; use the consensus, etcd, redis or postgres backend for SHARED and counting locks`,
    );
  return { name, mode, limit, ttlMs, waitMs, ownerId: optionalId(r.ownerId, 'owner_id'), requestId: optionalId(r.requestId, 'request_id') };
}

export function validateLease(leaseId: unknown, token: unknown): { leaseId: string; token: number } {
  if (typeof leaseId !== 'string' || leaseId.length === 0) throw invalid('lease_id is required: the lease id of the grant (from the Granted event)');
  if (leaseId.length > 512) throw invalid(`lease_id is ${leaseId.length} characters long; the limit is 512`);
  if (typeof token !== 'number' || !Number.isInteger(token) || token <= 0) throw invalid('token is required: the fencing token of the grant (from the Granted event), a positive integer');
  return { leaseId, token };
}

export function validateTtl(ttlMs: unknown): number {
  return ttlMs === undefined || ttlMs === 0 ? 0 : intIn(ttlMs, 'ttl_ms', LIMITS.minTtlMs, LIMITS.maxTtlMs, ' ms');
}

export function validateListLimit(limit: unknown): number {
  return limit === undefined || limit === 0 ? 1000 : intIn(limit, 'limit', 1, LIMITS.listMax);
}
