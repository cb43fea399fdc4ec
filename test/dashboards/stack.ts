/**
 * A small running Synod stack for the monitoring test, every server a real process on loopback: a 3-member
 * consensus cluster, one lock service (consensus backend), two transaction coordinator replicas, a PostgreSQL
 * server with two participant databases (participants and an outbox consumer in this process). `workload()`
 * drives a short, bounded mix that touches every metric the dashboards show; `stop()` kills every process by pid.
 */
import pg from 'pg';
import { LockClient, SynodClient, TxnClient } from '@app/client';
import type { LockHandle } from '@app/client';
import { InboxConsumer, quietLogger } from '@app/outbox';
import { PostgresParticipant } from '@app/participant';
import { PostgresServer } from '../../libs/testing/src/servers/postgres.js';
import { ProcessCluster } from '../../apps/consensus/test/harness.js';
import { ServiceProcess, TXN_MAIN, sleep, waitFor } from '../../apps/lock/test/harness.js';
import { bankWork, createAccounts } from '../../apps/txn/test/bank.js';
import type { ScrapeJob } from './prometheus.js';

const TXN_FLAGS = ['--session-timeout-ms', '1500', '--prepare-timeout-ms', '1500', '--phase-two-attempts', '4', '--phase-two-timeout-ms', '500', '--attention-retry-ms', '1000'];

export class Stack {
  readonly cluster = new ProcessCluster([1, 2, 3]);
  postgres: PostgresServer | undefined;
  lock: ServiceProcess | undefined;
  coordinators: ServiceProcess[] = [];
  participants: PostgresParticipant[] = [];
  consumer: InboxConsumer | undefined;
  pools: pg.Pool[] = [];
  p1 = '';
  p2 = '';

  get consensusEndpoints(): string[] {
    return [...this.cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`);
  }

  /** Scrape jobs: job names as the chart's Services name them (the alerts match `job=~".*consensus.*"`). */
  scrapeJobs(): ScrapeJob[] {
    return [
      { job: 'synod-consensus', targets: [...this.cluster.members.values()].map((m) => `127.0.0.1:${m.metricsPort}`) },
      { job: 'synod-lock', targets: [`127.0.0.1:${this.lock!.metricsPort}`] },
      { job: 'synod-txn', targets: this.coordinators.map((c) => `127.0.0.1:${c.metricsPort}`) },
    ];
  }

  async start(): Promise<void> {
    const [pgServer] = await Promise.all([PostgresServer.start(), this.cluster.start()]);
    this.postgres = pgServer;
    await this.cluster.waitLeader();
    const consensus = this.consensusEndpoints.join(',');
    this.lock = new ServiceProcess(['--backend', 'consensus', '--consensus-endpoints', consensus, '--session-timeout-ms', '2000']);
    this.coordinators = [0, 1].map(() => new ServiceProcess(['--consensus-endpoints', consensus, '--root', '/txn-dash', ...TXN_FLAGS], TXN_MAIN));
    const admin = new pg.Pool({ connectionString: pgServer.connectionString, max: 1 });
    await admin.query('CREATE DATABASE bank1');
    await admin.query('CREATE DATABASE bank2');
    await admin.end();
    const bank1 = new pg.Pool({ connectionString: pgServer.connectionStringFor('bank1'), max: 8 });
    const bank2 = new pg.Pool({ connectionString: pgServer.connectionStringFor('bank2'), max: 8 });
    this.pools.push(bank1, bank2);
    for (const pool of this.pools) pool.on('error', () => undefined);
    await createAccounts(bank1, { a1: 1000, a2: 1000 });
    await createAccounts(bank2, { b1: 1000, b2: 1000 });
    await Promise.all([this.lock.start(), ...this.coordinators.map((c) => c.start())]);
    const endpoints = this.coordinators.map((c) => c.endpoint);
    const mk = async (pool: pg.Pool, name: string): Promise<string> => {
      const p = new PostgresParticipant({ pool, name, work: bankWork, coordinator: endpoints, recoveryIntervalMs: 500, recoverAfterMs: 1000 });
      this.participants.push(p);
      return `127.0.0.1:${await p.listen('127.0.0.1', 0)}`;
    };
    this.p1 = await mk(bank1, 'dash-bank1');
    this.p2 = await mk(bank2, 'dash-bank2');
    this.consumer = new InboxConsumer({ pool: bank2, name: 'dash-consumer', topics: ['dash'], coordinators: endpoints, handler: async () => undefined, log: quietLogger });
    await this.consumer.ensureSchema();
    await this.consumer.listen('127.0.0.1', 0);
    await waitFor('a coordinator leader', async () => {
      for (const c of this.coordinators) if ((await c.metric('synod_txn_is_leader').catch(() => 0)) === 1) return true;
      return undefined;
    }, 20_000);
    await this.consumer.subscribe();
  }

  /** A short bounded workload: writes, sessions, contended locks with waiters, transactions (one aborts), outbox messages. */
  async workload(): Promise<{ writes: number; grants: number; committed: number; aborted: number; delivered: number }> {
    const kv = new SynodClient({ endpoints: this.consensusEndpoints });
    const locks = [0, 1, 2].map(() => new LockClient({ endpoints: [this.lock!.endpoint] }));
    const txn = new TxnClient({ endpoints: this.coordinators.map((c) => c.endpoint), deadlineMs: 20_000 });
    const out = { writes: 0, grants: 0, committed: 0, aborted: 0, delivered: 0 };
    try {
      // consensus: a session, node writes and reads
      const session = await kv.session({ timeoutMs: 5000 });
      await kv.create('/dash', 'x').catch(() => undefined);
      for (let i = 0; i < 30; i++) {
        await kv.set('/dash', `v${i}`);
        out.writes++;
      }
      await kv.getChildren('/');
      await session.close();

      const transfer = async (from: string, to: string, amount: number): Promise<string> => {
        const { globalId } = await txn.begin({ timeoutMs: 20_000 });
        await txn.registerBranch(globalId, 'debit', this.p1, JSON.stringify({ account: from, delta: -amount }));
        await txn.registerBranch(globalId, 'credit', this.p2, JSON.stringify({ account: to, delta: amount }));
        return (await txn.commit(globalId, { wait: true })).state;
      };

      // Warm-up: one grant and one committed transaction create the histogram series that only appear at their
      // first observation (hold time, phase and commit latencies by label); then two scrapes go by so that the
      // rest of the workload shows up as an increase (a series' first sample carries no rate).
      await (await locks[0].acquire('dash-warm-up', { ttlMs: 5000 })).release();
      out.grants++;
      if ((await transfer('a1', 'b1', 1)) === 'COMMITTED') out.committed++;
      if ((await transfer('a2', 'b2', 1_000_000)) === 'ABORTED') out.aborted++;
      await sleep(2500);

      // locks: three clients on one lock, each round one holds while two wait, then releases
      for (let round = 0; round < 4; round++) {
        const held: LockHandle[] = [];
        const acquires = locks.map((c, i) => sleep(i * 30).then(() => c.acquire('dash-lock', { ttlMs: 5000, waitMs: 10_000 })));
        for (const a of acquires) {
          const h = await a;
          out.grants++;
          held.push(h);
          await sleep(50);
          await h.release();
        }
      }
      // a try-once that finds the lock held: timed_out
      const h = await locks[0].acquire('dash-lock-2', { ttlMs: 5000 });
      await locks[1].acquire('dash-lock-2', { waitMs: 0 }).catch(() => undefined);
      await h.release();

      // transactions: commits, and one that aborts (a participant votes no)
      for (let i = 0; i < 5; i++) if ((await transfer('a1', 'b1', 1)) === 'COMMITTED') out.committed++;
      if ((await transfer('a2', 'b2', 1_000_000)) === 'ABORTED') out.aborted++;

      // outbox: published messages delivered to the consumer
      for (let i = 0; i < 5; i++) await txn.publish({ messageId: `dash-${Date.now()}-${i}`, topic: 'dash', key: 'k', payload: `{"n":${i}}` });
      out.delivered = await waitFor('outbox messages delivered', async () => {
        const n = await this.coordinators[0].metric('synod_txn_messages_delivered_total').catch(() => 0) + (await this.coordinators[1].metric('synod_txn_messages_delivered_total').catch(() => 0));
        return n >= 5 ? n : undefined;
      }, 20_000);
    } finally {
      kv.close();
      for (const c of locks) await c[Symbol.asyncDispose]().catch(() => undefined);
      txn.close();
    }
    return out;
  }

  async stop(): Promise<void> {
    await this.consumer?.close().catch(() => undefined);
    for (const p of this.participants) await p.close().catch(() => undefined);
    for (const pool of this.pools) await pool.end().catch(() => undefined);
    for (const c of this.coordinators) await c.stop().catch(() => undefined);
    await this.lock?.stop().catch(() => undefined);
    await Promise.allSettled([this.postgres?.stop(), this.cluster.stopAll()]);
  }
}
