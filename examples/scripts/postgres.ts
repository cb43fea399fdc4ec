/**
 * A throw-away PostgreSQL 15 for the example (the test server of libs/testing: Debian binaries in
 * /usr/lib/postgresql/15/bin, run as the `postgres` OS user when you are root, a temp data directory,
 * max_prepared_transactions = 64). Creates the databases `orders` and `inventory`, prints their URLs and
 * keeps running until Ctrl-C / SIGTERM, which stops the server and deletes its directory (data included).
 *   npx tsx examples/scripts/postgres.ts
 */
import pg from 'pg';
import { PostgresServer } from '../../libs/testing/src/servers/postgres.js';

const server = await PostgresServer.start();
try {
  const admin = new pg.Client({ connectionString: server.connectionString });
  await admin.connect();
  for (const db of ['orders', 'inventory']) await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
} catch (err) {
  await server.stop();
  throw err;
}
process.stdout.write(
  [
    `PostgreSQL 15 on 127.0.0.1:${server.port} (pid ${server.pid}, data in ${server.dataDir})`,
    `ORDER_DATABASE_URL=${server.connectionStringFor('orders')}`,
    `INVENTORY_DATABASE_URL=${server.connectionStringFor('inventory')}`,
    'Ctrl-C stops it and deletes its data.',
    '',
  ].join('\n'),
);
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  server.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`stopping PostgreSQL failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
