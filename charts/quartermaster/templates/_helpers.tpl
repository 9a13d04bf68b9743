{{/* Chart name (nameOverride wins). */}}
{{- define "quartermaster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object: <release>-<chart>, or the release name when it contains the chart's. */}}
{{- define "quartermaster.fullname" -}}
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

{{/* <fullname>-<suffix>, kept within 63 characters. */}}
{{- define "quartermaster.suffixed" -}}
{{- $full := include "quartermaster.fullname" .root }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "quartermaster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "quartermaster.labels" -}}
helm.sh/chart: {{ include "quartermaster.chart" . }}
{{ include "quartermaster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quartermaster
{{- end }}

{{/* Labels added to the generated CRDs (which already carry app.kubernetes.io/part-of). */}}
{{- define "quartermaster.crdLabels" -}}
helm.sh/chart: {{ include "quartermaster.chart" . }}
app.kubernetes.io/name: {{ include "quartermaster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "quartermaster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quartermaster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "operator"). */}}
{{- define "quartermaster.componentSelectorLabels" -}}
{{ include "quartermaster.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "quartermaster.componentLabels" -}}
{{ include "quartermaster.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "quartermaster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "quartermaster.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false: name an existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; (dict "image" <image values> "fallback" .Values.image "root" $). */}}
{{- define "quartermaster.imageRef" -}}
{{- $repo := .image.repository | default .fallback.repository }}
{{- $digest := .image.digest }}
{{- $tag := .image.tag }}
{{- if and (not .image.repository) (not $digest) (not $tag) }}
{{- $digest = .fallback.digest }}
{{- $tag = .fallback.tag }}
{{- end }}
{{- if $digest }}
{{- printf "%s@%s" $repo $digest }}
{{- else }}
{{- printf "%s:%s" $repo ($tag | default .root.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "quartermaster.image" -}}
{{- include "quartermaster.imageRef" (dict "image" .Values.image "fallback" .Values.image "root" .) }}
{{- end }}

{{- define "quartermaster.routerImage" -}}
{{- include "quartermaster.imageRef" (dict "image" .Values.router.image "fallback" .Values.image "root" .) }}
{{- end }}

{{- define "quartermaster.routerPullPolicy" -}}
{{- .Values.router.image.pullPolicy | default .Values.image.pullPolicy }}
{{- end }}

{{/* Peering is on when more than one operator replica runs. */}}
{{- define "quartermaster.peeringEnabled" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "quartermaster.peeringName" -}}
{{- default (include "quartermaster.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "quartermaster.routerNamespace" -}}
{{- default .Release.Namespace .Values.router.namespace }}
{{- end }}

{{- define "quartermaster.routerConfigMap" -}}
{{- if .Values.router.configMap }}
{{- .Values.router.configMap }}
{{- else }}
{{- printf "%s-router" (required "router.inferencePool is required when router.enabled=true: name the InferencePool whose router ConfigMap to mount (or set router.configMap)" .Values.router.inferencePool) }}
{{- end }}
{{- end }}
