/**
 * Entry point of a transaction coordinator replica:
 *   npx tsx apps/txn/src/main.ts --consensus-endpoints 127.0.0.1:2379,127.0.0.1:2479,127.0.0.1:2579 --port 2395
 * Run 2 or 3 replicas: one leads (elected through the consensus cluster), the others stand by and take over.
 * Configuration: environment (SYNOD_*) overridden by flags (`--help`; docs/txn.md).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { CommanderError } from 'commander';
import { ConfigError, TxnConfig, loadConfig } from './config.js';
import { createMessageBroker } from './message-broker.js';
import { TxnModule } from './txn.module.js';

async function main(): Promise<void> {
  let cfg: TxnConfig;
  try {
    cfg = loadConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    if (err instanceof ConfigError) {
      process.stderr.write(`synod-txn: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const app = await NestFactory.createApplicationContext(TxnModule.forRoot(cfg, createMessageBroker), {
    logger: cfg.logLevel === 'debug' ? ['error', 'warn', 'log', 'debug'] : ['error', 'warn'],
    abortOnError: false,
  });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
}

main().catch((err: unknown) => {
  process.stderr.write(`synod-txn: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
