/** Configuration: flags over environment over defaults, validation with actionable messages; a real process
 * exits 2 with the message on bad configuration. */
import { spawnSync } from 'node:child_process';
import { ConfigError, idFromHostname, loadConfig } from '../src/config.js';
import { MAIN, ROOT } from './harness.js';

const PEERS = '1=127.0.0.1:2380,2=127.0.0.1:2480,3=127.0.0.1:2580';

test('flags override the environment, which overrides the defaults', () => {
  const cfg = loadConfig(['--election-ms', '150', '--heartbeat-ms', '50', '--snapshot-catchup-entries', '7', '--tls-ca', '/x', '--tls-cert', '/y', '--tls-key', '/z'].slice(0, 6), { SYNOD_NODE_ID: '2', SYNOD_PEERS: PEERS, SYNOD_ELECTION_MS: '2000', SYNOD_CLIENT_PORT: '3000' });
  expect(cfg.nodeId).toBe(2);
  expect(cfg.peers.get(3)).toBe('127.0.0.1:2580');
  expect(cfg.electionMs).toBe(150);
  expect(cfg.electionMaxMs).toBe(300);
  expect(cfg.heartbeatMs).toBe(50);
  expect(cfg.clientPort).toBe(3000);
  expect(cfg.peerPort).toBe(2480);
  expect(cfg.maxDataBytes).toBe(1024 * 1024);
  expect(cfg.snapshotCatchUpEntries).toBe(7);
  expect(cfg.tls).toBeUndefined();
  // etcd's defaults: 100 ms heartbeat, 1000 ms election.
  const d = loadConfig([], { SYNOD_NODE_ID: '1', SYNOD_PEERS: PEERS });
  expect([d.heartbeatMs, d.electionMs, d.electionMaxMs, d.tickMs]).toEqual([100, 1000, 2000, 10]);
});

test('the member id derives from a StatefulSet HOSTNAME (ZooKeeper myid = ordinal + 1)', () => {
  expect(idFromHostname('synod-2')).toBe(3);
  expect(idFromHostname('synod-0.synod-peer.default.svc')).toBe(1);
  expect(idFromHostname('laptop')).toBeUndefined();
  expect(loadConfig([], { HOSTNAME: 'synod-1', SYNOD_PEERS: PEERS }).nodeId).toBe(2);
});

test.each([
  [[], { SYNOD_PEERS: PEERS }, /SYNOD_NODE_ID is required/],
  [['--node-id', '4'], { SYNOD_PEERS: PEERS }, /must list this member \(4\)/],
  [['--node-id', '1', '--peers', '1=nohost'], {}, /not host:port/],
  [['--node-id', '1', '--peers', PEERS, '--heartbeat-ms', '1000'], {}, /heartbeat \(1000 ms\) must be shorter/],
  [['--node-id', '1', '--peers', PEERS, '--election-ms', '155'], {}, /not a multiple of the 10 ms tick/],
  [['--node-id', '1', '--peers', PEERS, '--client-port', 'abc'], {}, /not a whole number/],
  [['--node-id', '1', '--peers', PEERS, '--tls-ca', '/nope'], {}, /TLS needs all three/],
  [['--node-id', '1', '--peers', PEERS, '--initial-cluster-state', 'maybe'], {}, /must be new or existing/],
  [['--node-id', '1', '--peers', PEERS, '--max-request-bytes', '2000'], {}, /must be at least/],
])('rejects %j with a clear message', (argv, env, message) => {
  expect(() => loadConfig(argv as string[], env as NodeJS.ProcessEnv)).toThrow(ConfigError);
  expect(() => loadConfig(argv as string[], env as NodeJS.ProcessEnv)).toThrow(message);
});

test('a member started with a bad configuration exits 2 and says why', () => {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, '--node-id', '1', '--peers', '2=127.0.0.1:1'], { cwd: ROOT, env, encoding: 'utf8', timeout: 20_000 });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/configuration error: --peers \/ SYNOD_PEERS must list this member \(1\) too/);
});
