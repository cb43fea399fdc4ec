/**
 * A lock holder of the nemesis lock workload (scripts/nemesis/workloads/lock.ts), in its own process so the
 * workload can SIGSTOP it inside its critical section:
 *
 *   node --import tsx scripts/nemesis/lock-holder.ts <lock endpoint> <resource url> <holder id> <ttlMs> [seed]
 *
 * Prints `READY`, waits for a `GO` line on stdin, then loops until stdin closes or SIGTERM: acquire `nemesis-counter`, POST /enter with the token, GET /value, print
 * `INSIDE <token> <value>` (the read is done: a pause from here on falls between the read and the write), sleep
 * 25–50 ms, POST /write value+1 with the token, print `ACK <token> <newvalue>` / `REFUSED <token>` (409) /
 * `INDETERMINATE <token>` (no answer), POST /exit, release. Every line is written synchronously (a pipe on Linux).
 * Requests use a fresh connection each (no keep-alive socket that could be closed under a paused holder).
 */
import { request } from 'node:http';
import { LockClient } from '@app/client';

const LOCK = 'nemesis-counter';
const [endpoint, resourceUrl, holderArg, ttlArg, seedArg] = process.argv.slice(2);
if (!endpoint || !resourceUrl || !holderArg || !ttlArg) {
  process.stderr.write('usage: lock-holder.ts <lock endpoint> <resource url> <holder id> <ttlMs> [seed]\n');
  process.exit(2);
}
const holder = Number(holderArg);
const ttlMs = Number(ttlArg);
const base = new URL(resourceUrl);

// mulberry32: the holder's sleeps derive from the run's seed (passed by the workload).
let rs = (Number(seedArg ?? holder) ^ (holder * 0x9e3779b9)) >>> 0;
function rand(): number {
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let stopping = false;
const stopAc = new AbortController();
const stop = (): void => {
  stopping = true;
  stopAc.abort();
};
process.on('SIGTERM', stop);
// The workload writes `GO` on stdin when its start() is called; closing stdin stops the holder.
let go!: () => void;
const started = new Promise<void>((r) => (go = r));
let stdinText = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  stdinText += d;
  if (stdinText.includes('GO')) go();
});
process.stdin.on('end', stop);
process.stdin.on('close', stop);
stopAc.signal.addEventListener('abort', () => go());

/** One HTTP call on a fresh connection; resolves status and body, rejects on a transport error or timeout. */
function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: base.hostname,
        port: base.port,
        path,
        method,
        agent: false,
        headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        // A paused holder's timers catch up at once after SIGCONT: keep the timeout well past a pause.
        timeout: Math.max(5000, 4 * ttlMs + 5000),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
          } catch (err) {
            reject(err as Error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

const client = new LockClient({ endpoints: [endpoint] });

async function once(): Promise<void> {
  let lock;
  try {
    lock = await client.acquire(LOCK, { ttlMs, waitMs: 3000, signal: stopAc.signal });
  } catch (err) {
    if (!stopping) {
      out(`ACQUIRE-FAILED ${(err as Error).name}: ${(err as Error).message.split('\n')[0]}`);
      await sleep(100 + Math.floor(rand() * 100));
    }
    return;
  }
  const token = lock.token;
  out(`GRANTED ${token}`);
  let entered = false;
  try {
    const enter = await call('POST', '/enter', { token, holder });
    if (enter.status === 409) {
      out(`REFUSED ${token} enter`);
      return;
    }
    if (enter.status !== 200) throw new Error(`/enter answered ${enter.status}`);
    entered = true;
    const read = await call('GET', `/value?holder=${holder}&token=${token}`);
    if (read.status !== 200) throw new Error(`/value answered ${read.status}`);
    const value = Number(read.body.value);
    out(`INSIDE ${token} ${value}`);
    await sleep(25 + Math.floor(rand() * 26));
    let w;
    try {
      w = await call('POST', '/write', { token, value: value + 1, holder });
    } catch (err) {
      out(`INDETERMINATE ${token} ${(err as Error).message}`);
      return;
    }
    if (w.status === 200) out(`ACK ${token} ${value + 1}`);
    else if (w.status === 409) out(`REFUSED ${token}`);
    else out(`INDETERMINATE ${token} status ${w.status}`);
  } catch (err) {
    out(`ERROR ${token} ${(err as Error).message}`);
    await sleep(100);
  } finally {
    if (entered) await call('POST', '/exit', { token, holder }).catch(() => undefined);
    await lock.release().catch(() => undefined);
  }
}

out('READY');
await started;
while (!stopping) await once();
client.close();
out('STOPPED');
process.exit(0);
