{{/* Chart name. */}}
{{- define "synod.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name prefix of every resource: <release>-synod, or <release> when it already contains the chart name. */}}
{{- define "synod.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "synod.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels of every object. */}}
{{- define "synod.labels" -}}
helm.sh/chart: {{ include "synod.chart" . }}
app.kubernetes.io/name: {{ include "synod.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: synod
{{- end -}}

{{/* Selector labels of one component: include "synod.selectorLabels" (dict "ctx" $ "component" "consensus"). */}}
{{- define "synod.selectorLabels" -}}
app.kubernetes.io/name: {{ include "synod.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects and pods. */}}
{{- define "synod.componentLabels" -}}
{{ include "synod.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "synod.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Names of the consensus objects. */}}
{{- define "synod.consensus.fullname" -}}{{ include "synod.fullname" . }}-consensus{{- end -}}
{{- define "synod.consensus.headless" -}}{{ include "synod.fullname" . }}-consensus-headless{{- end -}}

{{/* DNS name of consensus pod <i>: <fullname>-consensus-<i>.<headless>.<namespace>.svc.<domain>. */}}
{{- define "synod.consensus.podHost" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "synod.consensus.fullname" .ctx) (int .i) (include "synod.consensus.headless" .ctx) .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* SYNOD_PEERS: 1=<pod-0 DNS>:<peer port>,2=... (member id = ordinal + 1, as the process derives it from HOSTNAME). */}}
{{- define "synod.consensus.peers" -}}
{{- $ctx := . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.consensus.replicas) -}}
{{- $out = append $out (printf "%d=%s:%d" (add1 $i) (include "synod.consensus.podHost" (dict "ctx" $ctx "i" $i)) (int $ctx.Values.consensus.ports.peer)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* SYNOD_CLIENT_URLS: 1=<pod-0 DNS>:<client port>,2=... */}}
{{- define "synod.consensus.clientUrls" -}}
{{- $ctx := . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.consensus.replicas) -}}
{{- $out = append $out (printf "%d=%s:%d" (add1 $i) (include "synod.consensus.podHost" (dict "ctx" $ctx "i" $i)) (int $ctx.Values.consensus.ports.client)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* SYNOD_CONSENSUS_ENDPOINTS of lock and txn: the consensus client Service. */}}
{{- define "synod.consensus.endpoints" -}}
{{- printf "%s.%s.svc.%s:%d" (include "synod.consensus.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.consensus.ports.client) -}}
{{- end -}}

{{/* True ("true") when lock and txn use an external etcd. */}}
{{- define "synod.useEtcd" -}}
{{- if gt (len .Values.externalEtcd.endpoints) 0 -}}true{{- end -}}
{{- end -}}

{{/* Pod anti-affinity of one component: dict "ctx" $ "component" "consensus" "mode" "soft". */}}
{{- define "synod.antiAffinity" -}}
{{- if eq .mode "soft" -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "synod.selectorLabels" . | nindent 14 }}
{{- else if eq .mode "hard" -}}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "synod.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end -}}

{{/* Checks that fail the render with a clear message. */}}
{{- define "synod.validate" -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a Secret with ca.crt, tls.crt and tls.key" -}}
{{- end -}}
{{- $c := .Values.consensus -}}
{{- if $c.enabled -}}
{{- if or (mod (int $c.heartbeatMs) (int $c.tickMs)) (mod (int $c.electionMs) (int $c.tickMs)) -}}
{{- fail (printf "consensus.heartbeatMs (%v) and consensus.electionMs (%v) must be multiples of consensus.tickMs (%v)" $c.heartbeatMs $c.electionMs $c.tickMs) -}}
{{- end -}}
{{- if ge (int $c.heartbeatMs) (int $c.electionMs) -}}
{{- fail (printf "consensus.heartbeatMs (%v) must be shorter than consensus.electionMs (%v)" $c.heartbeatMs $c.electionMs) -}}
{{- end -}}
{{- if lt (int $c.maxRequestBytes) (int $c.maxDataBytes) -}}
{{- fail "consensus.maxRequestBytes must be at least consensus.maxDataBytes" -}}
{{- end -}}
{{- if le (mul (int $c.terminationGracePeriodSeconds) 1000) (add (int $c.shutdownTransferMs) 5000) -}}
{{- fail (printf "consensus.terminationGracePeriodSeconds (%v s) must exceed consensus.shutdownTransferMs (%v ms) by at least 5 s, or the kubelet kills a leader during its hand-over" $c.terminationGracePeriodSeconds $c.shutdownTransferMs) -}}
{{- end -}}
{{- if lt (len (uniq (list (int $c.ports.client) (int $c.ports.peer) (int $c.ports.metrics)))) 3 -}}
{{- fail "consensus.ports: client, peer and metrics must differ" -}}
{{- end -}}
{{- end -}}
{{- if and (not $c.enabled) (not (include "synod.useEtcd" .)) (or .Values.lock.enabled .Values.txn.enabled) -}}
{{- fail "lock and txn need a store: keep consensus.enabled or set externalEtcd.endpoints" -}}
{{- end -}}
{{- end -}}
