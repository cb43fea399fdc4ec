/**
 * A bank participant in its own process, for the coordinator's fault tests: accounts in one PostgreSQL
 * database; a branch's payload `{"account": "a1", "delta": -10}` adds delta to that account inside the
 * prepared transaction (a negative balance breaks the CHECK constraint: the branch votes no).
 *   node --import tsx apps/txn/test/bank-participant.ts <connection string> <name> <port> <coordinator endpoints>
 * Prints `LISTENING <port>` once serving.
 */
import pg from 'pg';
import { PostgresParticipant } from '@app/participant';
import { bankWork } from './bank.js';

const [conn, name, port, coordinators] = process.argv.slice(2);
const pool = new pg.Pool({ connectionString: conn, max: 8 });
const p = new PostgresParticipant({ pool, name, work: bankWork, coordinator: coordinators.split(','), recoveryIntervalMs: 500, recoverAfterMs: 1000 });
const bound = await p.listen('127.0.0.1', Number(port));
console.log(`LISTENING ${bound}`);
const stop = (): void => void p.close().then(() => pool.end()).then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
