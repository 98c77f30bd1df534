{{/* Resource names: the release name, with "-cimstream" unless it already contains it. */}}
{{- define "cimstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "cimstream" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cimstream" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name is always "cimstream": the alert rules select scraped series by it
(app_kubernetes_io_name="cimstream", see docs/operations.md), whatever the release is called.
*/}}
{{- define "cimstream.selectorLabels" -}}
app.kubernetes.io/name: cimstream
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cimstream.labels" -}}
{{ include "cimstream.selectorLabels" . }}
app.kubernetes.io/version: {{ include "cimstream.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cimstream
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "cimstream.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "cimstream.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "cimstream.tag" .) -}}
{{- end -}}
{{- end -}}

{{- define "cimstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "cimstream.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The shutdown budget in seconds (a Go duration such as 30s, 1m or 1m30s). */}}
{{- define "cimstream.shutdownSeconds" -}}
{{- $d := toString .Values.shutdownTimeout -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+(h|ms|m|s)" $d -1 -}}
{{- $n := regexFind "^[0-9]+" $part | int -}}
{{- $unit := regexFind "(h|ms|m|s)$" $part -}}
{{- if eq $unit "h" }}{{ $total = add $total (mul $n 3600) }}{{ else if eq $unit "m" }}{{ $total = add $total (mul $n 60) }}{{ else if eq $unit "s" }}{{ $total = add $total $n }}{{ else }}{{ $total = add $total 1 }}{{ end -}}
{{- end -}}
{{- if not (regexMatch "^([0-9]+(h|ms|m|s))+$" $d) -}}
{{- fail (printf "shutdownTimeout %q: want a duration such as 30s or 1m30s" $d) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* GOMEMLIMIT from resources.limits.memory and goMemLimitPercent, in MiB; empty without a limit. */}}
{{- define "cimstream.goMemLimit" -}}
{{- $limit := "" -}}
{{- with .Values.resources -}}{{- with .limits -}}
{{- $mem := .memory | default "" -}}
{{- /* A plain byte count is a valid quantity; YAML hands it over as a number, which toString would print in exponent form. */ -}}
{{- if or (kindIs "float64" $mem) (kindIs "int" $mem) (kindIs "int64" $mem) -}}
{{- $limit = printf "%.0f" (float64 $mem) -}}
{{- else -}}
{{- $limit = toString $mem -}}
{{- end -}}
{{- end -}}{{- end -}}
{{- if $limit -}}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?" $limit -}}
{{- $suffix := trimPrefix $m $limit -}}
{{- $units := dict "" 1.0 "k" 1000.0 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- if or (not $m) (not (hasKey $units $suffix)) -}}
{{- fail (printf "resources.limits.memory %q: want a quantity such as 512Mi or 2Gi" $limit) -}}
{{- end -}}
{{- $bytes := mulf (float64 $m) (get $units $suffix) -}}
{{- $mib := floor (divf (mulf $bytes (float64 .Values.goMemLimitPercent)) 104857600.0) | int64 -}}
{{- printf "%dMiB" $mib -}}
{{- end -}}
{{- end -}}

{{/* The service's configuration file. */}}
{{- define "cimstream.config" -}}
{{- $kafka := dict "brokers" .Values.kafka.brokers "consumer" (dict "groupId" .Values.kafka.consumerGroup) -}}
{{- with .Values.kafka.tls -}}
{{- if .enabled -}}
{{- $tls := dict "enabled" true -}}
{{- if .caKey }}{{ $_ := set $tls "caFile" (printf "/etc/cimstream/tls/%s" .caKey) }}{{ end -}}
{{- if .certKey }}{{ $_ := set $tls "certFile" (printf "/etc/cimstream/tls/%s" .certKey) }}{{ end -}}
{{- if .keyKey }}{{ $_ := set $tls "keyFile" (printf "/etc/cimstream/tls/%s" .keyKey) }}{{ end -}}
{{- if .serverName }}{{ $_ := set $tls "serverName" .serverName }}{{ end -}}
{{- $_ := set $kafka "tls" $tls -}}
{{- end -}}
{{- end -}}
{{- with .Values.kafka.sasl -}}
{{- if and .mechanism (ne .mechanism "none") -}}
{{- $_ := set $kafka "sasl" (dict "mechanism" .mechanism "username" .username "passwordFile" (printf "/etc/cimstream/sasl/%s" .passwordSecret.key)) -}}
{{- end -}}
{{- end -}}
{{- $outbound := dict -}}
{{- if .Values.routes }}{{ $_ := set $outbound "routes" .Values.routes }}{{ end -}}
{{- $cfg := dict
  "kafka" $kafka
  "topics" (dict "partitions" (int .Values.topics.partitions) "replicationFactor" (int .Values.topics.replicationFactor))
  "admin" (dict "address" (printf "0.0.0.0:%d" (int .Values.service.port)))
  "shutdown" (dict "timeout" .Values.shutdownTimeout)
-}}
{{- if $outbound }}{{ $_ := set $cfg "outbound" $outbound }}{{ end -}}
{{- if .Values.channels }}{{ $_ := set $cfg "channels" .Values.channels }}{{ end -}}
{{- if .Values.httpIngress.enabled }}{{ $_ := set $cfg "ingress" (dict "address" (printf "0.0.0.0:%d" (int .Values.httpIngress.port))) }}{{ end -}}

{{- if .Values.webhooks -}}
{{- $hooks := list -}}
{{- range .Values.webhooks -}}
{{- $hooks = append $hooks (dict "channel" .channel "url" .url "secretFile" (printf "/etc/cimstream/webhooks/%s/%s" .channel (.secret.key | default "secret"))) -}}
{{- end -}}
{{- $_ := set $cfg "egress" (dict "webhooks" $hooks) -}}
{{- end -}}
{{- mustMergeOverwrite $cfg (deepCopy .Values.config) | toYaml -}}
{{- end -}}

{{/* Volumes and mounts shared by the pods and the topic Job. */}}
{{- define "cimstream.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
{{- with .root.Values.kafka.tls }}
{{- if .enabled }}
- name: kafka-tls
  secret:
    secretName: {{ required "kafka.tls.secretName is required when kafka.tls.enabled" .secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- with .root.Values.kafka.sasl }}
{{- if and .mechanism (ne .mechanism "none") }}
- name: kafka-sasl
  secret:
    secretName: {{ required "kafka.sasl.passwordSecret.name is required with a SASL mechanism" .passwordSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .passwordSecret.key }}
        path: {{ .passwordSecret.key }}
{{- end }}
{{- end }}
{{- range $i, $w := .root.Values.webhooks }}
{{- with $w }}
- name: webhook-{{ $i }}
  secret:
    secretName: {{ .secret.name }}
    defaultMode: 0440
    items:
      - key: {{ .secret.key | default "secret" }}
        path: {{ .secret.key | default "secret" }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cimstream.volumeMounts" -}}
- name: config
  mountPath: /etc/cimstream/config
  readOnly: true
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/cimstream/tls
  readOnly: true
{{- end }}
{{- if and .Values.kafka.sasl.mechanism (ne .Values.kafka.sasl.mechanism "none") }}
- name: kafka-sasl
  mountPath: /etc/cimstream/sasl
  readOnly: true
{{- end }}
{{- range $i, $w := .Values.webhooks }}
- name: webhook-{{ $i }}
  mountPath: /etc/cimstream/webhooks/{{ $w.channel }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod Security "restricted". */}}
{{- define "cimstream.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cimstream.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
