/**
 * What every real-server starter in this folder needs: finding a binary (with the "run npm run setup" message
 * when it is missing), free loopback ports, bounded waits, and a registry of live child pids that are killed
 * when the test process exits (so a failed test never leaves a server behind).
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits for `p` at most `ms`: true when `p` resolved first, false on the timeout (a rejection of `p` is thrown).
 * The timer is cleared when `p` settles first, so it holds no handle open.
 */
export async function atMost(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p.then(() => true), new Promise<boolean>((r) => (t = setTimeout(() => r(false), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** The environment for a `node --import tsx` child of a test: without jest's NODE_OPTIONS (ESM VM flags). */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_OPTIONS;
  return env;
}

/**
 * The lowest port the kernel hands out for outgoing connections and `listen(0)` (ip_local_port_range).
 * freePort() stays below it: a port found free and released again could otherwise be taken, before the server
 * that asked for it binds it, by any outgoing connection of a busy test (gRPC clients, proxies) — seen as
 * EADDRINUSE in nemesis runs.
 */
function ephemeralLow(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) && lo > 12_000 ? lo : 32_768;
  } catch {
    return 32_768;
  }
}

const handedOut = new Set<number>();

function canListen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/**
 * A free TCP port on 127.0.0.1 (bound then released), outside the kernel's ephemeral range and never the same
 * twice in one process. Falls back to a kernel-chosen port when no candidate is free.
 */
export async function freePort(): Promise<number> {
  const hi = ephemeralLow() - 1;
  const lo = Math.max(1024, hi - 12_000);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = lo + Math.floor(Math.random() * (hi - lo + 1));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
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
