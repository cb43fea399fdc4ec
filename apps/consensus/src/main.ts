/**
 * Entry point of a consensus cluster member:
 *   npx tsx apps/consensus/src/main.ts --node-id 1 --peers 1=127.0.0.1:2380,2=127.0.0.1:2480,3=127.0.0.1:2580 ...
 * Configuration: environment (SYNOD_*) overridden by flags (`--help` lists them; docs/consensus.md).
 * SIGTERM / SIGINT stop it gracefully (a leader hands leadership over first).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { CommanderError } from 'commander';
import { loadTestHooks } from './clock.js';
import { ConfigError, ConsensusConfig, loadConfig } from './config.js';
import { ConsensusModule } from './consensus.module.js';

async function main(): Promise<void> {
  let cfg: ConsensusConfig;
  try {
    cfg = loadConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    if (err instanceof ConfigError) {
      process.stderr.write(`synod-consensus: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  cfg.testHooks = await loadTestHooks();
  const app = await NestFactory.createApplicationContext(ConsensusModule.forRoot(cfg), {
    logger: cfg.logLevel === 'debug' ? ['error', 'warn', 'log', 'debug'] : ['error', 'warn'],
    abortOnError: false,
  });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
}

main().catch((err: unknown) => {
  process.stderr.write(`synod-consensus: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
