/**
 * Mutual TLS: a 3-member cluster whose client and peer ports require certificates signed by the cluster CA
 * (made here with /usr/bin/openssl). The members reach each other (a leader is elected and writes commit over
 * mTLS peer links); a client with a CA-signed certificate is served; a client without a certificate, with a
 * certificate from another CA, or without TLS is refused.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadConsensusProto } from '@app/proto';
import { Client, FAST, ProcessCluster, bytes, rpc } from './harness.js';

const OPENSSL = '/usr/bin/openssl';
let dir = '';
let cluster: ProcessCluster;

function openssl(...args: string[]): void {
  execFileSync(OPENSSL, args, { cwd: dir, stdio: 'pipe' });
}

/** A CA and a certificate signed by it, valid for server and client auth on 127.0.0.1 / localhost. */
function makePki(name: string): { ca: string; cert: string; key: string } {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '2', '-subj', `/CN=${name} test CA`);
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name} member`);
  writeFileSync(
    join(dir, `${name}.ext`),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n',
  );
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${name}-ca.pem`, '-CAkey', `${name}-ca.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  return { ca: join(dir, `${name}-ca.pem`), cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

let good: { ca: string; cert: string; key: string };
let rogue: { ca: string; cert: string; key: string };

beforeAll(async () => {
  if (!existsSync(OPENSSL)) throw new Error(`${OPENSSL} is missing: install the Debian package openssl (scripts/setup.sh)`);
  dir = await mkdtemp(join(tmpdir(), 'synod-tls-'));
  good = makePki('cluster');
  rogue = makePki('rogue');
  const creds = grpc.credentials.createSsl(readFileSync(good.ca), readFileSync(good.key), readFileSync(good.cert));
  cluster = new ProcessCluster([1, 2, 3], FAST, good, creds);
  await cluster.start();
}, 60_000);

afterAll(async () => {
  await cluster?.stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function client(id: number, creds: grpc.ChannelCredentials): Client {
  const { Coordination } = loadConsensusProto();
  return new Coordination(`127.0.0.1:${cluster.members.get(id)!.clientPort}`, creds, { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Client;
}

test('members elect a leader and replicate over mTLS; a client with a CA-signed certificate is served', async () => {
  const leader = await cluster.waitLeader();
  const follower = [1, 2, 3].find((id) => id !== leader)!;
  await rpc(cluster.coordination(follower), 'Create', { path: '/tls', data: bytes('secret') });
  for (const id of [1, 2, 3]) expect((await rpc(cluster.coordination(id), 'Get', { path: '/tls' })).data.toString()).toBe('secret');
});

test('clients without a valid certificate are refused', async () => {
  const ca = readFileSync(good.ca);
  const attempts: [string, grpc.ChannelCredentials][] = [
    ['no client certificate', grpc.credentials.createSsl(ca)],
    ['a certificate from another CA', grpc.credentials.createSsl(ca, readFileSync(rogue.key), readFileSync(rogue.cert))],
    ['plaintext', grpc.credentials.createInsecure()],
  ];
  for (const [what, creds] of attempts) {
    const c = client(1, creds);
    try {
      await expect(rpc(c, 'Exists', { path: '/tls' }, 3000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } catch (err) {
      throw new Error(`${what}: ${(err as Error).message}`);
    } finally {
      c.close();
    }
  }
});

test('the lock service and the coordinator serve mutual TLS and reach the TLS cluster with their certificate', async () => {
  const { LockClient, TxnClient } = await import('@app/client');
  const { ServiceProcess, TXN_MAIN } = await import('../../lock/test/harness.js');
  const eps = [...cluster.members.values()].map((m) => `127.0.0.1:${m.clientPort}`).join(',');
  const tlsFlags = ['--tls-ca', good.ca, '--tls-cert', good.cert, '--tls-key', good.key];
  const lock = new ServiceProcess(['--backend', 'consensus', '--consensus-endpoints', eps, ...tlsFlags]);
  const txn = new ServiceProcess(['--consensus-endpoints', eps, ...tlsFlags], TXN_MAIN);
  const tls = { ca: readFileSync(good.ca), cert: readFileSync(good.cert), key: readFileSync(good.key) };
  try {
    await lock.start();
    await txn.start();
    const locks = new LockClient({ endpoints: [lock.endpoint], tls });
    const l = await locks.acquire('tls/lock', { ttlMs: 5000 });
    expect(l.token).toBeGreaterThan(0);
    expect(await l.release()).toBe(true);
    locks.close();
    const noCert = new LockClient({ endpoints: [lock.endpoint], tls: { ca: tls.ca } });
    await expect(noCert.acquire('tls/lock', { waitMs: 0 })).rejects.toMatchObject({ codeName: 'UNAVAILABLE' });
    noCert.close();
    const txns = new TxnClient({ endpoints: [txn.endpoint], tls });
    const { globalId } = await txns.begin({ timeoutMs: 5000 });
    expect(await txns.commit(globalId, { wait: true })).toMatchObject({ state: 'COMMITTED', completed: true });
    txns.close();
  } finally {
    await lock.stop();
    await txn.stop();
  }
}, 90_000);
