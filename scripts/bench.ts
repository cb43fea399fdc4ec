/**
 * Benchmarks: `npm run bench -- <name> [options]` (`npm run bench -- --help` lists them). Each benchmark is a
 * commander subcommand in scripts/bench/<name>.ts. By the team's rule every figure is printed with its
 * conditions and as a ratio against an anchor measured in the same run on the same machine.
 */
import { Command } from 'commander';
import { failoverCommand } from './bench/failover.js';
import { kvCommand } from './bench/kv.js';
import { lockCommand } from './bench/lock.js';
import { memoryCommand } from './bench/memory.js';
import { raftCommand } from './bench/raft.js';
import { txnCommand } from './bench/txn.js';

const program = new Command('bench')
  .description('Synod benchmarks (figures are reported as ratios against an anchor measured in the same run)')
  .showHelpAfterError();

program.addCommand(raftCommand());
program.addCommand(kvCommand());
program.addCommand(failoverCommand());
program.addCommand(lockCommand());
program.addCommand(memoryCommand());
program.addCommand(txnCommand());

await program.parseAsync(process.argv);
