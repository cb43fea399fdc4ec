/**
 * synodctl — the command line for Synod's consensus cluster (docs/cli.md).
 *
 *   npx tsx apps/cli/src/main.ts [--endpoints h:p,...] [--json] <command> ...
 *
 * Exit codes: 0 ok, 1 error (one line on stderr: `synodctl: <STATUS_NAME>: <server message>`), 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { SynodClient, SynodError } from '@app/client';
import type { CreateMode, Member, Stat, StatusResult, TlsOptions, WatchKind } from '@app/client';

export const DEFAULT_ENDPOINTS = '127.0.0.1:2379,127.0.0.1:2479,127.0.0.1:2579';

interface GlobalOpts {
  endpoints: string;
  json: boolean;
  cacert?: string;
  cert?: string;
  key?: string;
  deadlineMs: string;
}

const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
};
const json = (v: unknown): void => out(JSON.stringify(v, null, 2));

/** A left-aligned text table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

function int(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new CommanderError(2, 'synodctl.usage', `${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
}

function endpointsOf(g: GlobalOpts): string[] {
  return g.endpoints.split(',').map((e) => e.trim()).filter((e) => e.length > 0);
}

function tlsOf(g: GlobalOpts): TlsOptions | undefined {
  if (!g.cacert) {
    if (g.cert || g.key) throw new CommanderError(2, 'synodctl.usage', '--cert/--key need --cacert');
    return undefined;
  }
  return { ca: readFileSync(g.cacert), cert: g.cert ? readFileSync(g.cert) : undefined, key: g.key ? readFileSync(g.key) : undefined };
}

function statRows(s: Stat): (string | number)[][] {
  const t = (ms: number): string => (ms > 0 ? new Date(ms).toISOString() : '-');
  return [
    ['czxid', s.czxid],
    ['mzxid', s.mzxid],
    ['pzxid', s.pzxid],
    ['ctime', t(s.ctime)],
    ['mtime', t(s.mtime)],
    ['version', s.version],
    ['cversion', s.cversion],
    ['aversion', s.aversion],
    ['ephemeralOwner', s.ephemeralOwner],
    ['dataLength', s.dataLength],
    ['numChildren', s.numChildren],
  ];
}

function memberTable(ms: Member[]): string {
  return table(
    ['ID', 'NAME', 'PEER URLS', 'CLIENT URLS', 'LEARNER'],
    ms.map((m) => [m.id, m.name || '-', m.peerUrls.join(',') || '-', m.clientUrls.join(',') || '-', m.isLearner ? 'yes' : 'no']),
  );
}

interface StatusRow {
  endpoint: string;
  status?: StatusResult;
  error?: string;
}

const KINDS: Record<string, WatchKind> = { data: 'DATA', children: 'CHILDREN', persistent: 'PERSISTENT', recursive: 'PERSISTENT_RECURSIVE' };

export function buildProgram(state: { client?: SynodClient }): Command {
  const program = new Command('synodctl');
  program
    .description("command line for Synod's consensus cluster")
    .option('--endpoints <list>', 'client endpoints host:port,... (env SYNOD_ENDPOINTS)', process.env.SYNOD_ENDPOINTS || DEFAULT_ENDPOINTS)
    .option('--json', 'machine-readable JSON output', false)
    .option('--cacert <file>', 'CA certificate (PEM) for TLS (env SYNOD_CACERT)', process.env.SYNOD_CACERT)
    .option('--cert <file>', 'client certificate (PEM) for mutual TLS (env SYNOD_CERT)', process.env.SYNOD_CERT)
    .option('--key <file>', 'client key (PEM) for mutual TLS (env SYNOD_KEY)', process.env.SYNOD_KEY)
    .option('--deadline-ms <ms>', 'deadline of each request, retries included', '5000')
    .showHelpAfterError()
    .exitOverride();

  const g = (): GlobalOpts => program.opts<GlobalOpts>();
  const client = (): SynodClient => {
    if (!state.client) {
      const o = g();
      state.client = new SynodClient({ endpoints: endpointsOf(o), tls: tlsOf(o), deadlineMs: int('--deadline-ms', 1)(o.deadlineMs) });
    }
    return state.client;
  };
  const consistency = new Option('--sequential', 'SEQUENTIAL read (served locally by the member) instead of LINEARIZABLE');

  program
    .command('create')
    .description('create a node (data defaults to empty)')
    .argument('<path>')
    .argument('[data]', 'data (UTF-8)', '')
    .option('-e, --ephemeral', 'ephemeral: held by a session that lives until synodctl is stopped (Ctrl-C)')
    .option('-s, --sequential', 'append a 10-digit sequence number to the name')
    .option('--session-timeout-ms <ms>', 'session timeout for --ephemeral', '10000')
    .action(async (path: string, data: string, o: { ephemeral?: boolean; sequential?: boolean; sessionTimeoutMs: string }) => {
      const mode: CreateMode = `${o.ephemeral ? 'EPHEMERAL' : 'PERSISTENT'}${o.sequential ? '_SEQUENTIAL' : ''}` as CreateMode;
      const c = client();
      const session = o.ephemeral ? await c.session({ timeoutMs: int('--session-timeout-ms', 1)(o.sessionTimeoutMs) }) : undefined;
      const r = await c.create(path, data, { mode, session });
      if (g().json) json({ path: r.path, stat: r.stat, ...(session ? { sessionId: session.id } : {}) });
      else out(r.path);
      if (session) {
        if (!g().json) process.stderr.write(`holding session ${session.id} (Ctrl-C closes it and deletes ${r.path})\n`);
        await new Promise<void>((resolve, reject) => {
          const stop = (): void => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
          session.once('expired', (e: Error) => reject(e));
        });
        await session.close();
      }
    });

  program
    .command('get')
    .description("print a node's data")
    .argument('<path>')
    .addOption(consistency)
    .action(async (path: string, o: { sequential?: boolean }) => {
      const r = await client().get(path, { consistency: o.sequential ? 'SEQUENTIAL' : 'LINEARIZABLE' });
      if (g().json) json({ path, data: r.data.toString('utf8'), dataBase64: r.data.toString('base64'), stat: r.stat });
      else out(r.data.toString('utf8'));
    });

  program
    .command('set')
    .description("replace a node's data (compare-and-set with --version)")
    .argument('<path>')
    .argument('<data>')
    .option('--version <n>', 'expected version (-1: any)', int('--version', -1), -1)
    .action(async (path: string, data: string, o: { version: number }) => {
      const r = await client().set(path, data, { version: o.version });
      if (g().json) json({ path, stat: r.stat });
      else out(`${path} version ${r.stat.version} (mzxid ${r.stat.mzxid})`);
    });

  program
    .command('rm')
    .description('delete a node (it must have no children)')
    .argument('<path>')
    .option('--version <n>', 'expected version (-1: any)', int('--version', -1), -1)
    .action(async (path: string, o: { version: number }) => {
      await client().delete(path, { version: o.version });
      if (g().json) json({ deleted: path });
      else out(`deleted ${path}`);
    });

  program
    .command('ls')
    .description("list a node's children")
    .argument('[path]', 'the node', '/')
    .addOption(consistency)
    .action(async (path: string, o: { sequential?: boolean }) => {
      const r = await client().getChildren(path, { consistency: o.sequential ? 'SEQUENTIAL' : 'LINEARIZABLE' });
      if (g().json) json({ path, children: r.children, stat: r.stat });
      else if (r.children.length > 0) out(r.children.join('\n'));
    });

  program
    .command('stat')
    .description("print a node's metadata")
    .argument('<path>')
    .addOption(consistency)
    .action(async (path: string, o: { sequential?: boolean }) => {
      const r = await client().get(path, { consistency: o.sequential ? 'SEQUENTIAL' : 'LINEARIZABLE' });
      if (g().json) json({ path, stat: r.stat });
      else out(table(['FIELD', 'VALUE'], statRows(r.stat)));
    });

  program
    .command('watch')
    .description('print events on a node until interrupted (or --count events)')
    .argument('<path>')
    .addOption(new Option('--kind <kind>', 'watch kind').choices(Object.keys(KINDS)).default('persistent'))
    .option('--from <zxid>', 'replay the events after this zxid first', int('--from'))
    .option('--count <n>', 'exit after n events', int('--count', 1))
    .action(async (path: string, o: { kind: string; from?: number; count?: number }) => {
      const w = client().watch(path, KINDS[o.kind], { startZxid: o.from });
      const stop = (): void => w.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      let n = 0;
      try {
        for await (const e of w) {
          if (g().json) out(JSON.stringify(e));
          else out(`${e.zxid}\t${e.type}\t${e.path}`);
          if (o.count !== undefined && ++n >= o.count) break;
        }
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });

  program
    .command('status')
    .description('status of every endpoint (role, term, leader, indexes)')
    .action(async () => {
      const c = client();
      const results = await Promise.all(
        c.endpoints.map((endpoint) =>
          c.status({ endpoint }).then(
            (s): StatusRow => ({ endpoint, status: s }),
            (e: unknown): StatusRow => ({ endpoint, error: e instanceof SynodError ? e.message : String(e) }),
          ),
        ),
      );
      if (g().json) {
        json(results.map((r) => (r.status ? { endpoint: r.endpoint, ...r.status } : r)));
      } else {
        out(
          table(
            ['ENDPOINT', 'ID', 'ROLE', 'TERM', 'LEADER', 'COMMIT', 'APPLIED', 'NODES', 'SESSIONS', 'ERRORS'],
            results.map((r) =>
              r.status
                ? [r.endpoint, r.status.id, r.status.role, r.status.term, r.status.leader, r.status.commitIndex, r.status.appliedIndex, r.status.nodeCount, r.status.sessionCount, r.status.errors.join('; ') || '-']
                : [r.endpoint, '-', 'UNREACHABLE', '-', '-', '-', '-', '-', '-', r.error ?? ''],
            ),
          ),
        );
      }
      if (results.every((r) => r.error)) throw new SynodError(results.length ? 14 : 3, 'no endpoint answered');
    });

  program
    .command('members')
    .description('the cluster membership')
    .action(async () => {
      const ms = await client().members();
      if (g().json) json(ms);
      else out(memberTable(ms));
    });

  const member = program.command('member').description('change the membership (sent to the leader)');
  member
    .command('add')
    .description('add a member as a learner')
    .argument('<id>', 'member id', int('ID', 1))
    .argument('<peer_url>', 'where the other members reach it (host:port)')
    .option('--client-url <url>', "its client address (host:port), for clients' leader redirects")
    .option('--name <name>', 'its name (default n<id>)')
    .action(async (id: number, peerUrl: string, o: { clientUrl?: string; name?: string }) => {
      const r = await client().addMember({ id, peerUrls: [peerUrl], clientUrls: o.clientUrl ? [o.clientUrl] : [], name: o.name });
      if (g().json) json(r);
      else out(`member ${id} added as a learner; start it with --initial-cluster-state existing, then: synodctl member promote ${id}\n${memberTable(r.members)}`);
    });
  member
    .command('promote')
    .description('promote a learner to voter')
    .argument('<id>', 'member id', int('ID', 1))
    .action(async (id: number) => {
      const ms = await client().promoteMember(id);
      if (g().json) json({ members: ms });
      else out(`member ${id} promoted\n${memberTable(ms)}`);
    });
  member
    .command('remove')
    .description('remove a member')
    .argument('<id>', 'member id', int('ID', 1))
    .action(async (id: number) => {
      const ms = await client().removeMember(id);
      if (g().json) json({ members: ms });
      else out(`member ${id} removed\n${memberTable(ms)}`);
    });

  program
    .command('transfer-leader')
    .description('hand leadership to a voter (0: the most up-to-date one)')
    .argument('<id>', 'member id', int('ID'))
    .action(async (id: number) => {
      const leader = await client().transferLeadership(id);
      if (g().json) json({ leader });
      else out(`leader is member ${leader}`);
    });

  for (const c of program.commands) {
    c.exitOverride();
    for (const sub of c.commands) sub.exitOverride();
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const state: { client?: SynodClient } = {};
  const program = buildProgram(state);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return 0;
      if (err.code === 'synodctl.usage') process.stderr.write(`synodctl: ${err.message}\n`);
      return 2;
    }
    const msg = err instanceof SynodError ? err.message : err instanceof Error ? err.message : String(err);
    process.stderr.write(`synodctl: ${msg.split('\n')[0]}\n`);
    return 1;
  } finally {
    state.client?.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
