/**
 * Entry point of a lock service instance:
 *   npx tsx apps/lock/src/main.ts --backend consensus --consensus-endpoints 127.0.0.1:2379,127.0.0.1:2479 --port 2390
 * Configuration: environment (SYNOD_*) overridden by flags (`--help`; docs/locks.md). SIGTERM / SIGINT stop it
 * gracefully (holders are told `lost` SERVICE_SHUTDOWN and their entries released).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { CommanderError } from 'commander';
import { ConfigError, LockConfig, loadConfig } from './config.js';
import { LockModule } from './lock.module.js';

async function main(): Promise<void> {
  let cfg: LockConfig;
  try {
    cfg = loadConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    if (err instanceof ConfigError) {
      process.stderr.write(`synod-lock: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const app = await NestFactory.createApplicationContext(LockModule.forRoot(cfg), {
    logger: cfg.logLevel === 'debug' ? ['error', 'warn', 'log', 'debug'] : ['error', 'warn'],
    abortOnError: false,
  });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
}

main().catch((err: unknown) => {
  process.stderr.write(`synod-lock: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
