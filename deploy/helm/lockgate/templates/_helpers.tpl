{{/* Names, labels and the environment shared by the gateway, the worker and the migration. */}}

{{- define "lockgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lockgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lockgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "lockgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (gateway, worker, migration): pass (list . "gateway"). */}}
{{- define "lockgate.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "lockgate.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "lockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lockgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lockgate.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The Secret the chart creates from secrets.*.value (absent when every secret is external). */}}
{{- define "lockgate.secretName" -}}
{{- printf "%s-secrets" (include "lockgate.fullname" .) -}}
{{- end -}}

{{- define "lockgate.providerKeysSecretName" -}}
{{- if .Values.secrets.providerKeysSecretName -}}
{{- .Values.secrets.providerKeysSecretName -}}
{{- else if .Values.secrets.providerKeys -}}
{{- printf "%s-provider-keys" (include "lockgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart's own Secret has anything in it. */}}
{{- define "lockgate.hasChartSecret" -}}
{{- range $item := list "databaseUrl" "adminKey" "redisUrl" "uiSessionSecret" -}}
{{- $s := index $.Values.secrets $item -}}
{{- if and $s.value (not $s.secretName) }}yes{{ end -}}
{{- end -}}
{{- end -}}

{{/*
An env entry read from a secret: (dict "root" . "item" "databaseUrl" "env" "LOCKGATE_DATABASE_URL"
"required" true "secret" NAME-OF-CHART-SECRET). Renders nothing for an optional secret that is
not given; fails, saying what to set, for a required one.
*/}}
{{- define "lockgate.secretEnv" -}}
{{- $s := index .root.Values.secrets .item -}}
{{- $name := "" -}}
{{- if $s.secretName -}}
{{- $name = $s.secretName -}}
{{- else if $s.value -}}
{{- $name = default (include "lockgate.secretName" .root) .secret -}}
{{- else if .required -}}
{{- fail (printf "secrets.%s: set secrets.%s.secretName (an existing Secret, recommended) or secrets.%s.value (%s; docs/deploying.md)" .item .item .item .what) -}}
{{- end -}}
{{- if $name -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $s.secretKey }}
{{- end -}}
{{- end -}}

{{/* The environment of every lockgate container but the migration's. */}}
{{- define "lockgate.env" -}}
- name: LOCKGATE_CONFIG
  value: /etc/lockgate/lockgate.yaml
- name: LOCKGATE_DATA_DIR
  value: /var/lib/lockgate/data
{{- if .Values.artifactUrl }}
- name: LOCKGATE_ARTIFACT_URL
  value: {{ .Values.artifactUrl | quote }}
{{- end }}
{{- if .Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlpEndpoint | quote }}
{{- end }}
{{- with include "lockgate.secretEnv" (dict "root" . "item" "databaseUrl" "env" "LOCKGATE_DATABASE_URL" "required" true "what" "the registry's PostgreSQL URL") }}
{{ . }}
{{- end }}
{{- with include "lockgate.secretEnv" (dict "root" . "item" "redisUrl" "env" "LOCKGATE_GATEWAY__REDIS_URL" "required" false) }}
{{ . }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "lockgate.envFrom" -}}
{{- $name := include "lockgate.providerKeysSecretName" . -}}
{{- if $name -}}
envFrom:
  - secretRef:
      name: {{ $name }}
{{- end -}}
{{- end -}}
