/**
 * A relay in its own process for the crash test (outbox.spec.ts): publishes, prints `PUBLISHED <id> <seq>` after
 * the coordinator's acknowledgment and then hangs before marking the row sent, so the test can SIGKILL it at
 * exactly that point. Exits by itself after 60 s (bounded). Env: PG_URL, COORDINATOR.
 */
import pg from 'pg';
import { OutboxRelay } from '@app/outbox';

const pool = new pg.Pool({ connectionString: process.env.PG_URL, max: 4 });
const relay = new OutboxRelay({
  pool,
  coordinators: [process.env.COORDINATOR ?? ''],
  pollMs: 200,
  afterPublish: async (row) => {
    process.stdout.write(`PUBLISHED ${row.id} ${row.sequence}\n`);
    await new Promise((r) => setTimeout(r, 60_000));
  },
});
relay.start();
setTimeout(() => process.exit(3), 60_000).unref();
