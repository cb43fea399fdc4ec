/**
 * Mutual TLS between members: certificates from a throwaway CA made here with the system's openssl. A member
 * only accepts streams from peers presenting a certificate signed by the cluster CA.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { MessageType, NodeId, msg } from '@app/raft';
import { GrpcPeerTransport } from '@app/peer';
import { GrpcCluster, putVia } from './cluster-helpers.js';
import { Recorder, waitFor } from './helpers.js';

interface Pem {
  key: Buffer;
  cert: Buffer;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: 'pipe' });
  } catch (err) {
    throw new Error(`openssl ${args.join(' ')} failed (is the openssl binary installed? Debian package 'openssl'): ${String(err)}`);
  }
}

/** A CA and leaf certificates (SAN IP 127.0.0.1, server+client auth) signed by it. */
class TestCa {
  readonly cert: Buffer;
  constructor(
    private readonly dir: string,
    readonly name: string,
  ) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`], dir);
    this.cert = readFileSync(join(dir, `${name}.crt`));
  }

  issue(cn: string): Pem {
    const d = this.dir;
    writeFileSync(join(d, `${cn}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${cn}.key`, '-out', `${cn}.csr`, '-subj', `/CN=${cn}`], d);
    openssl(['x509', '-req', '-in', `${cn}.csr`, '-CA', `${this.name}.crt`, '-CAkey', `${this.name}.key`, '-CAcreateserial', '-out', `${cn}.crt`, '-days', '1', '-extfile', `${cn}.ext`], d);
    return { key: readFileSync(join(d, `${cn}.key`)), cert: readFileSync(join(d, `${cn}.crt`)) };
  }
}

/** Verify the server's name as 'localhost' (also in its SAN): Node refuses IP addresses as TLS server names (SNI). */
const tlsName: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'localhost' };

describe('GrpcPeerTransport with mutual TLS', () => {
  let dir: string;
  let ca: TestCa;
  let rogueCa: TestCa;
  const certs = new Map<NodeId, Pem>();
  let rogue: Pem;
  let c: GrpcCluster | undefined;
  const transports: GrpcPeerTransport[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'peer-tls-'));
    ca = new TestCa(dir, 'synod-ca');
    rogueCa = new TestCa(dir, 'rogue-ca');
    for (const id of [1, 2, 3]) certs.set(id, ca.issue(`member-${id}`));
    rogue = rogueCa.issue('intruder');
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await c?.destroy();
    c = undefined;
    await Promise.all(transports.splice(0).map((t) => t.close()));
  });

  const serverCreds = (id: NodeId): grpc.ServerCredentials =>
    grpc.ServerCredentials.createSsl(ca.cert, [{ private_key: certs.get(id)!.key, cert_chain: certs.get(id)!.cert }], true);
  const clientCreds = (id: NodeId): grpc.ChannelCredentials => grpc.credentials.createSsl(ca.cert, certs.get(id)!.key, certs.get(id)!.cert);

  it('runs a 3-node cluster over mTLS: elects a leader and replicates', async () => {
    c = new GrpcCluster([1, 2, 3], {}, { server: serverCreds, client: clientCreds }, { channelOptions: tlsName });
    await c.init();
    await c.startAll();
    const leader = await c.waitForLeader();
    await putVia(leader, 'secure', 'yes');
    const follower = c.running().find((m) => m.id !== leader.id)!;
    await putVia(follower, 'secure', 'still');
    await c.waitForValue('secure', 'still', [1, 2, 3]);
  });

  it('refuses peers without a certificate from the cluster CA, and accepts one with', async () => {
    const target = new GrpcPeerTransport({ selfId: 1, peers: new Map() });
    transports.push(target);
    const port = await target.listen('127.0.0.1:0', serverCreds(1));
    const recTarget = new Recorder();
    target.start(recTarget);
    const addr = `127.0.0.1:${port}`;

    const attempt = (selfId: NodeId, credentials: grpc.ChannelCredentials): { t: GrpcPeerTransport; rec: Recorder } => {
      const t = new GrpcPeerTransport({ selfId, peers: new Map([[1, addr]]), credentials, channelOptions: tlsName, backoff: { initialMs: 20, maxMs: 100 } });
      transports.push(t);
      const rec = new Recorder();
      t.start(rec);
      t.send([msg({ type: MessageType.Heartbeat, from: selfId, to: 1, term: 9 })]);
      return { t, rec };
    };

    // A certificate signed by another CA; trusting the right CA but presenting no certificate; no TLS at all.
    const intruder = attempt(4, grpc.credentials.createSsl(ca.cert, rogue.key, rogue.cert));
    const anonymous = attempt(5, grpc.credentials.createSsl(ca.cert));
    const plaintext = attempt(6, grpc.credentials.createInsecure());
    await waitFor('all three refused', () => [intruder, anonymous, plaintext].every((a) => a.rec.unreachable.includes(1)));
    for (const a of [intruder, anonymous, plaintext]) expect(a.t.stats.streamsOpened).toBe(0);

    // The control: a member with a valid certificate gets through.
    const member = attempt(2, clientCreds(2));
    await waitFor('the valid member delivered', () => recTarget.received.length === 1);
    expect(recTarget.received[0].from).toBe(2);
    expect(recTarget.received.every((m) => m.from === 2)).toBe(true);
    expect(member.rec.unreachable).toEqual([]);
  });
});
