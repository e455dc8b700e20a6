{{/* Names, labels and the settings checks shared by every template. */}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchboard.secretName" -}}
{{- default (include "switchboard.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "switchboard.asymmetric" -}}
{{- if has .Values.jwt.algorithm (list "HS256" "HS384" "HS512") }}{{- else }}true{{- end }}
{{- end }}

{{/*
Refuses, at render time, the settings a node would refuse at boot (or that cannot work in a
cluster), so `helm install` fails with a clear message instead of pods in CrashLoopBackOff.
*/}}
{{- define "switchboard.validate" -}}
{{- $asym := include "switchboard.asymmetric" . }}
{{- if not .Values.existingSecret }}
{{- if not .Values.externalRedis.url }}
{{- fail "externalRedis.url is required (or existingSecret with REDIS_URL): several pods act as one cluster through Redis" }}
{{- end }}
{{- if not .Values.externalMongodb.uri }}
{{- fail "externalMongodb.uri is required (or existingSecret with MONGODB_URI): the embedded store cannot be shared by several pods" }}
{{- end }}
{{- if and (not $asym) (not .Values.jwt.secret) }}
{{- fail "jwt.secret is required with HS256/HS384/HS512 (or existingSecret with JWT_SECRET)" }}
{{- end }}
{{- if and (not $asym) (lt (len .Values.jwt.secret) 16) }}
{{- fail "jwt.secret must be at least 16 bytes" }}
{{- end }}
{{- if and $asym (not .Values.fileUrlSecret) }}
{{- fail "fileUrlSecret is required with an asymmetric jwt.algorithm (or existingSecret with FILE_URL_SECRET)" }}
{{- end }}
{{- end }}
{{- if and $asym (not .Values.jwt.publicKey) }}
{{- fail "jwt.publicKey (PEM) is required with an asymmetric jwt.algorithm" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add .Values.preStopSleepSeconds .Values.config.shutdownGraceSecs | int) }}
{{- fail "terminationGracePeriodSeconds must exceed preStopSleepSeconds + config.shutdownGraceSecs, or pods are killed mid-drain" }}
{{- end }}
{{- end }}
