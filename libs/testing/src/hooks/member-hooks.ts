/**
 * Test-only hooks of a consensus member (loaded by apps/consensus/src/clock.ts `loadTestHooks` when
 * SYNOD_TEST_HOOKS names a control file; never part of a release build). The control file is JSON:
 *
 *   { "clockOffsetMs": 0,      wall clock = real wall clock + offset (a step / "bump")
 *     "clockRate": 1,          the monotonic clock runs at this rate (1.5 = 50 % fast; a faulty oscillator)
 *     "peerRoutes": { "2": "127.0.0.1:41234" },    dial member 2 there (a TcpProxy of the nemesis)
 *     "plantedBugs": ["stale-reads"] }              canary runs only: see MemberTestHooks.plantedBugs
 *
 * The clock fields are re-read every 50 ms, so a test changes the clock of a running member by rewriting the
 * file (write a temp file and rename it: readers never see half a file). Routes are read once, at start.
 */
import { readFileSync } from 'node:fs';
import type { Clock, MemberTestHooks } from '../../../../apps/consensus/src/clock.js';

export interface HookControl {
  clockOffsetMs?: number;
  clockRate?: number;
  peerRoutes?: Record<string, string>;
  /** Read once at start: planted bugs for canary runs (see MemberTestHooks.plantedBugs). */
  plantedBugs?: string[];
}

export function readControl(file: string): HookControl {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as HookControl;
  } catch {
    return {};
  }
}

/** A clock whose wall offset and monotonic rate follow `control()`; the monotonic value never goes back. */
export class SkewableClock implements Clock {
  private offsetMs = 0;
  private rate = 1;
  private anchorReal = performance.now();
  private anchorMono = performance.now();

  set(offsetMs: number, rate: number): void {
    if (!(rate > 0)) throw new Error(`clock rate must be > 0, got ${rate}`);
    if (rate !== this.rate) {
      this.anchorMono = this.monotonic();
      this.anchorReal = performance.now();
      this.rate = rate;
    }
    this.offsetMs = offsetMs;
  }

  now(): number {
    return Date.now() + this.offsetMs;
  }

  monotonic(): number {
    return this.anchorMono + (performance.now() - this.anchorReal) * this.rate;
  }
}

export function createMemberTestHooks(file: string): MemberTestHooks {
  const clock = new SkewableClock();
  const apply = (): void => {
    const c = readControl(file);
    clock.set(c.clockOffsetMs ?? 0, c.clockRate ?? 1);
  };
  apply();
  const timer = setInterval(apply, 50);
  timer.unref();
  const initial = readControl(file);
  const peerRoutes = new Map(Object.entries(initial.peerRoutes ?? {}).map(([id, addr]) => [Number(id), addr]));
  const plantedBugs = new Set(initial.plantedBugs ?? []);
  const bugs = plantedBugs.size > 0 ? `, PLANTED BUGS: ${[...plantedBugs].join(', ')}` : '';
  process.stderr.write(`synod-consensus: TEST HOOKS ACTIVE (${file}): skewable clock, ${peerRoutes.size} peer routes${bugs}\n`);
  return { clock, peerRoutes, plantedBugs, close: () => clearInterval(timer) };
}
