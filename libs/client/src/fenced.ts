/**
 * FencedResource: the resource side of fencing (Martin Kleppmann's "How to do distributed locking"). It
 * remembers the highest fencing token it has accepted per lock name and refuses any operation that carries an
 * older one, so a holder that was paused past its lease (GC, SIGSTOP, a network partition) and still believes
 * it holds the lock cannot overwrite the work of the holder that came after it.
 *
 * In a real system the check lives where the data lives (a conditional write: `UPDATE ... WHERE token <= $t`,
 * a compare on an etcd revision). This in-process version is what tests and single-process resources use.
 */
export class StaleTokenError extends Error {
  constructor(
    readonly lock: string,
    readonly token: number,
    readonly highest: number,
  ) {
    super(`fencing token ${token} for lock "${lock}" is older than ${highest}, the highest this resource has accepted: the lock was lost and granted to someone else`);
    this.name = 'StaleTokenError';
  }
}

export class FencedResource {
  private readonly highest = new Map<string, number>();
  /** Operations refused because their token was stale. */
  rejected = 0;

  /** Accepts `token` for `lock` (and remembers it) or throws StaleTokenError. Equal tokens pass: one holder may write many times. */
  check(lock: string, token: number): void {
    const h = this.highest.get(lock) ?? 0;
    if (token < h) {
      this.rejected++;
      throw new StaleTokenError(lock, token, h);
    }
    this.highest.set(lock, token);
  }

  /** Runs `op` only if `token` is current for `lock`; the check and the operation happen in one turn when `op` is synchronous. */
  run<T>(lock: string, token: number, op: () => T): T {
    this.check(lock, token);
    return op();
  }

  highestToken(lock: string): number {
    return this.highest.get(lock) ?? 0;
  }
}
