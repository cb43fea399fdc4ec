/**
 * The member's clocks, injectable so fault tests can skew them (the nemesis' clock fault, docs/reliability.md).
 *
 * - `now()`: wall-clock milliseconds since the epoch. Only for what is *recorded* (ctime/mtime of nodes): a
 *   wall clock may jump (NTP steps, an operator's `date -s`), so nothing that decides may read it.
 * - `monotonic()`: milliseconds from an arbitrary origin that never goes back. Session deadlines and every
 *   other "has this much time passed" decision use it (ZooKeeper and etcd do the same: an NTP step must not
 *   expire every session at once). Its *rate* can still be off (a slewed or faulty oscillator); test hooks can
 *   run it fast or slow.
 *
 * Production uses SYSTEM_CLOCK. Test builds may set `SYNOD_TEST_HOOKS=<control file>`: main.ts then loads
 * libs/testing/src/hooks/member-hooks.ts, which is not part of the release build (scripts/release.sh compiles
 * only what the entry points import statically).
 */
export interface Clock {
  now(): number;
  monotonic(): number;
}

export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};

/** What a test build may inject into a member (see libs/testing/src/hooks/member-hooks.ts). */
export interface MemberTestHooks {
  clock?: Clock;
  /** Dial these members at these addresses instead of the member table's (a fault proxy per peer link). */
  peerRoutes?: Map<number, string>;
  /**
   * Planted bugs, to prove the nemesis' checks see what they must (its canaries): `stale-reads` serves
   * LINEARIZABLE reads from the local state without a ReadIndex round.
   */
  plantedBugs?: ReadonlySet<string>;
  close?(): void;
}

/**
 * Loads the test hooks named by SYNOD_TEST_HOOKS, or undefined when it is not set. The module path is computed,
 * so the release compiler never follows it; in a release build the file is absent and this fails loudly.
 */
export async function loadTestHooks(env: NodeJS.ProcessEnv = process.env): Promise<MemberTestHooks | undefined> {
  const control = env.SYNOD_TEST_HOOKS;
  if (!control) return undefined;
  const mod = ['..', '..', '..', 'libs', 'testing', 'src', 'hooks', 'member-hooks.ts'].join('/');
  let loaded: { createMemberTestHooks(file: string): MemberTestHooks };
  try {
    loaded = (await import(new URL(mod, import.meta.url).href)) as typeof loaded;
  } catch (err) {
    throw new Error(`SYNOD_TEST_HOOKS is set (${control}) but this build has no test hooks (release builds leave them out): ${(err as Error).message}`);
  }
  return loaded.createMemberTestHooks(control);
}
