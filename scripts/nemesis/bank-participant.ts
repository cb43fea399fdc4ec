/**
 * A bank participant process of the nemesis transaction workload (scripts/nemesis/workloads/txn.ts): accounts
 * and a per-branch `transfers` record in one PostgreSQL database (scripts/nemesis/workloads/bank.ts).
 *   node --import tsx scripts/nemesis/bank-participant.ts <connection string> <name> <port|0> <coordinator endpoints>
 * Prints `LISTENING <port>` once serving; SIGTERM closes it.
 */
import pg from 'pg';
import { PostgresParticipant } from '@app/participant';
import { transferWork } from './workloads/bank.js';

const [conn, name, port, coordinators] = process.argv.slice(2);
if (!conn || !name || port === undefined || !coordinators) {
  process.stderr.write('usage: bank-participant.ts <connection string> <name> <port|0> <coordinator endpoints>\n');
  process.exit(2);
}
const pool = new pg.Pool({ connectionString: conn, max: 8 });
pool.on('error', (e) => process.stderr.write(`${new Date().toISOString()} pool error: ${e.message}\n`));
const p = new PostgresParticipant({ pool, name, work: transferWork, coordinator: coordinators.split(','), recoveryIntervalMs: 500, recoverAfterMs: 1000, lockWaitMs: 5000 });
const bound = await p.listen('127.0.0.1', Number(port));
console.log(`LISTENING ${bound}`);
const stop = (): void => {
  const t = setTimeout(() => process.exit(1), 5000);
  void p
    .close()
    .then(() => pool.end())
    .finally(() => {
      clearTimeout(t);
      process.exit(0);
    });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
