/**
 * A lock holder in its own process, for the SIGKILL / SIGSTOP tests: acquires `name` through the lock service
 * at `endpoint` with `ttl` ms, prints `GRANTED <token>`, then every 50 ms `WRITE <token>` (the write it would
 * make to the protected resource) until it learns the lock is lost, then `LOST <reason>` and exits.
 *   node --import tsx apps/lock/test/holder.ts 127.0.0.1:2390 my-lock 2000
 */
import { LockClient, LockLostError } from '@app/client';

const [endpoint, name, ttl] = process.argv.slice(2);
const client = new LockClient({ endpoints: [endpoint] });
const lock = await client.acquire(name, { ttlMs: Number(ttl), waitMs: 30_000 });
console.log(`GRANTED ${lock.token}`);
const timer = setInterval(() => {
  if (lock.signal.aborted) {
    const r = lock.signal.reason as LockLostError;
    console.log(`LOST ${r.reason}`);
    clearInterval(timer);
    client.close();
    process.exit(0);
  }
  console.log(`WRITE ${lock.token}`);
}, 50);
