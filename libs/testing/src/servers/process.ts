/**
 * What every real-server starter in this folder needs: finding a binary (with the "run npm run setup" message
 * when it is missing), free loopback ports, bounded waits, and a registry of live child pids that are killed
 * when the test process exits (so a failed test never leaves a server behind).
 */
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for `p` at most `ms` (the timer is cleared when `p` settles first, so it holds no handle open). */
export async function atMost(p: Promise<unknown>, ms: number): Promise<void> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([p, new Promise<void>((r) => (t = setTimeout(r, ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

const livePids = new Set<number>();
let exitHookInstalled = false;

/** Registers a child pid to be SIGKILLed if the test process exits while it still runs. */
export function trackPid(pid: number): void {
  livePids.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of livePids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export function untrackPid(pid: number): void {
  livePids.delete(pid);
}

/**
 * The executable `name`: `$envVar` if set, else the first on PATH, else one of `extra` paths. Throws
 * "<name> not found: run `npm run setup` (<hint>)" when there is none.
 */
export function findBinary(name: string, envVar: string, extra: string[], hint: string): string {
  const env = process.env[envVar];
  const candidates = env ? [env] : [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== '').map((d) => join(d, name)), ...extra];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new Error(`${name} not found: run \`npm run setup\` (${hint})${env ? ` — ${envVar}=${env} is not executable` : ''}`);
}
