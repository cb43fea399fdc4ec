/**
 * synodctl as a child process against a real 3-member cluster (the consensus test harness).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ProcessCluster, ROOT } from '../../consensus/test/harness.js';

const cluster = new ProcessCluster([1, 2, 3]);
let endpoints = '';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs synodctl with `args`; kills it (by pid) if it outlives `timeoutMs`. */
function synodctl(args: string[], timeoutMs = 15_000): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, SYNOD_ENDPOINTS: endpoints };
  delete env.NODE_OPTIONS;
  const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'apps/cli/src/main.ts'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((res) => {
    const timer = setTimeout(() => process.kill(p.pid!, 'SIGKILL'), timeoutMs);
    p.once('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  await cluster.start();
  await cluster.waitLeader();
  endpoints = [1, 2, 3].map((id) => `127.0.0.1:${cluster.members.get(id)!.clientPort}`).join(',');
}, 40_000);

afterAll(() => cluster.stopAll(), 30_000);

describe('synodctl', () => {
  test('create, get, set, ls, stat, rm (human output)', async () => {
    expect(await synodctl(['create', '/app', 'hello'])).toEqual({ code: 0, stdout: '/app\n', stderr: '' });
    const seq = await synodctl(['create', '--sequential', '/app/job-', 'x']);
    expect(seq.code).toBe(0);
    expect(seq.stdout).toBe('/app/job-0000000000\n');
    const [get, ls, stat, set] = await Promise.all([
      synodctl(['get', '/app']),
      synodctl(['ls', '/app']),
      synodctl(['stat', '/app']),
      synodctl(['set', '/app/job-0000000000', 'y', '--version', '0']),
    ]);
    expect(get).toEqual({ code: 0, stdout: 'hello\n', stderr: '' });
    expect(ls.stdout).toBe('job-0000000000\n');
    expect(stat.stdout).toMatch(/^FIELD\s+VALUE\n/);
    expect(stat.stdout).toMatch(/\nversion\s+0\n/);
    expect(stat.stdout).toMatch(/\nnumChildren\s+1\n/);
    expect(set.stdout).toMatch(/version 1/);
    expect((await synodctl(['rm', '/app/job-0000000000'])).stdout).toBe('deleted /app/job-0000000000\n');
  }, 40_000);

  test('--json output of create, get, ls, stat, status, members', async () => {
    const c = await synodctl(['--json', 'create', '/j', 'data']);
    expect(c.code).toBe(0);
    const created = JSON.parse(c.stdout);
    expect(created.path).toBe('/j');
    expect(created.stat.version).toBe(0);
    const [get, ls, stat, status, members] = await Promise.all([
      synodctl(['--json', 'get', '/j']),
      synodctl(['ls', '--json', '/']), // global options may also follow the command
      synodctl(['--json', 'stat', '/j']),
      synodctl(['--json', 'status']),
      synodctl(['--json', 'members']),
    ]);
    expect(JSON.parse(get.stdout)).toMatchObject({ path: '/j', data: 'data', stat: { czxid: created.stat.czxid } });
    expect(JSON.parse(ls.stdout).children).toEqual(expect.arrayContaining(['j']));
    expect(JSON.parse(stat.stdout).stat.dataLength).toBe(4);
    const st = JSON.parse(status.stdout) as { id: number; role: string; leader: number }[];
    expect(st.map((s) => s.id).sort()).toEqual([1, 2, 3]);
    expect(st.filter((s) => s.role === 'LEADER')).toHaveLength(1);
    expect(new Set(st.map((s) => s.leader)).size).toBe(1);
    expect((JSON.parse(members.stdout) as { id: number }[]).map((m) => m.id)).toEqual([1, 2, 3]);
    const ls2 = await synodctl(['--json', 'ls', '/']);
    expect(JSON.parse(ls2.stdout).children).toEqual(expect.arrayContaining(['app', 'j']));
  }, 40_000);

  test('status and members as tables', async () => {
    const [status, members] = await Promise.all([synodctl(['status']), synodctl(['members'])]);
    expect(status.code).toBe(0);
    const lines = status.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ENDPOINT\s+ID\s+ROLE\s+TERM\s+LEADER\s+COMMIT\s+APPLIED/);
    expect(lines).toHaveLength(4);
    expect(lines.slice(1).filter((l) => l.split(/\s+/)[2] === 'LEADER')).toHaveLength(1);
    expect(members.stdout).toMatch(/^ID\s+NAME\s+PEER URLS\s+CLIENT URLS\s+LEARNER\n1\s+n1\s/);
  }, 30_000);

  test('watch --count prints the events after --from', async () => {
    const a = await synodctl(['--json', 'create', '/wc', '0']);
    const from = JSON.parse(a.stdout).stat.czxid as number;
    await synodctl(['set', '/wc', '1']);
    await synodctl(['set', '/wc', '2']);
    const w = await synodctl(['watch', '/wc', '--from', String(from), '--count', '2']);
    expect(w.code).toBe(0);
    const lines = w.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => /^\d+\tNODE_DATA_CHANGED\t\/wc$/.test(l))).toBe(true);
  }, 30_000);

  test('a failing command exits 1 with the status name and the server message', async () => {
    const [missing, exists, cas] = await Promise.all([
      synodctl(['get', '/does/not/exist']),
      synodctl(['create', '/']),
      synodctl(['set', '/j', 'x', '--version', '7']),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/^synodctl: NOT_FOUND: .*\/does\/not\/exist.*\n$/);
    expect(missing.stderr.split('\n')).toHaveLength(2);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toMatch(/^synodctl: ALREADY_EXISTS: /);
    expect(cas.code).toBe(1);
    expect(cas.stderr).toMatch(/^synodctl: FAILED_PRECONDITION: .*expected version 7/);
    const down = await synodctl(['--endpoints', '127.0.0.1:1', '--deadline-ms', '300', 'ls', '/']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^synodctl: UNAVAILABLE: /);
    const usage = await synodctl(['set', '/j']);
    expect(usage.code).toBe(2);
  }, 30_000);
});
