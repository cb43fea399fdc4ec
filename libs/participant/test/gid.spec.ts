/**
 * The gid encoding (pure): unambiguous, reversible, SQL-literal safe, within PostgreSQL's 199 bytes; and the
 * mapping of a Coordinator Status answer to a recovery decision. (Behaviour against a real PostgreSQL:
 * participant.spec.ts and recovery.spec.ts.)
 */
import fc from 'fast-check';
import { MAX_GID_BYTES, ParticipantError, branchGid, decisionOf, decodePart, encodePart, gidPrefix, parseGid } from '@app/participant';

function invalid(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ParticipantError);
  expect((err as ParticipantError).code).toBe('INVALID_ARGUMENT');
  expect((err as ParticipantError).message).toMatch(pattern);
}

describe('gid', () => {
  it('is synod:<name>:<global id>:<branch id> with every byte outside A-Z a-z 0-9 . _ - percent-encoded', () => {
    expect(branchGid('orders', 'tx-1', 'b.2_x')).toBe('synod:orders:tx-1:b.2_x');
    expect(branchGid('orders', "it's:a", 'é %')).toBe('synod:orders:it%27s%3Aa:%C3%A9%20%25');
    expect(gidPrefix('my app')).toBe('synod:my%20app:');
    expect(parseGid('synod:orders:it%27s%3Aa:%C3%A9%20%25')).toEqual({ name: 'orders', globalId: "it's:a", branchId: 'é %' });
  });

  it('round-trips any ids, never collides, and holds only characters safe in a SQL literal', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }), fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }), fc.string({ minLength: 1, maxLength: 20 }), (g, b, other) => {
        fc.pre(encodePart(g).length + encodePart(b).length + encodePart(other).length + 16 <= MAX_GID_BYTES);
        const gid = branchGid('p', g, b);
        expect(gid).toMatch(/^[A-Za-z0-9._%:-]+$/);
        expect(parseGid(gid)).toEqual({ name: 'p', globalId: g, branchId: b });
        if (other !== b) expect(branchGid('p', g, other)).not.toBe(gid);
        // Moving the split point between the ids changes the gid (no "a:b" + "c" = "a" + "b:c").
        expect(branchGid('p', g + ':' + b, 'x')).not.toBe(branchGid('p', g, b + ':x'));
      }),
      { numRuns: 500 },
    );
  });

  it('parses only canonical gids of this format', () => {
    expect(decodePart('%41')).toBeUndefined(); // 'A' is never escaped
    expect(decodePart('%c3%a9')).toBeUndefined(); // lower-case hex is not produced
    expect(decodePart('%FF')).toBeUndefined(); // not UTF-8
    expect(decodePart('a%2')).toBeUndefined();
    expect(parseGid('synod:a:b')).toBeUndefined();
    expect(parseGid('synod:a:b:c:d')).toBeUndefined();
    expect(parseGid('other:a:b:c')).toBeUndefined();
    expect(parseGid('synod:a::c')).toBeUndefined();
    expect(encodePart('\u{1F600}')).toBe('%F0%9F%98%80');
  });

  it('refuses missing ids, lone surrogates and ids whose gid would exceed 199 bytes (INVALID_ARGUMENT)', () => {
    invalid(() => branchGid('p', '', 'b'), /global_id is required/);
    invalid(() => branchGid('p', 'g', ''), /branch_id is required/);
    invalid(() => branchGid('p', undefined as unknown as string, 'b'), /global_id is required/);
    invalid(() => branchGid('p', '\uD800x', 'b'), /not valid Unicode/);
    const room = MAX_GID_BYTES - 'synod:p::b'.length;
    expect(branchGid('p', 'g'.repeat(room), 'b')).toHaveLength(MAX_GID_BYTES);
    invalid(() => branchGid('p', 'g'.repeat(room + 1), 'b'), /too long .* 200 bytes, at most 199/);
    // Escaped characters count three bytes each.
    invalid(() => branchGid('p', 'é'.repeat(Math.ceil(room / 6) + 1), 'b'), /too long/);
  });
});

describe('decisionOf (Coordinator Status → recovery decision)', () => {
  it('COMMITTED / ABORTED are final, NEEDS_ATTENTION uses `decision`, the rest is undecided', () => {
    expect(decisionOf({ state: 'COMMITTED' })).toBe('COMMITTED');
    expect(decisionOf({ state: 'ABORTED' })).toBe('ABORTED');
    expect(decisionOf({ state: 'NEEDS_ATTENTION', decision: 'COMMITTED' })).toBe('COMMITTED');
    expect(decisionOf({ state: 'NEEDS_ATTENTION', decision: 'ABORTED' })).toBe('ABORTED');
    expect(decisionOf({ state: 'NEEDS_ATTENTION', decision: 'TXN_STATE_UNSPECIFIED' })).toBe('UNDECIDED');
    expect(decisionOf({ state: 'ACTIVE' })).toBe('UNDECIDED');
    expect(decisionOf({ state: 'PREPARING' })).toBe('UNDECIDED');
    expect(decisionOf({ state: 'TXN_STATE_UNSPECIFIED' })).toBe('UNDECIDED');
  });
});
