/** Small waiting helpers shared by the lock tests. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves with `p`'s value, or 'pending' if it has not settled within `ms`. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<'pending'>((r) => (t = setTimeout(() => r('pending'), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** Polls `f` every 25 ms until it returns true; fails after `timeoutMs`. */
export async function waitUntil(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}
