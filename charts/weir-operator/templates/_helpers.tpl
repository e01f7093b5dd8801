{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "weir-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "weir-operator.fullname" -}}
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

{{- define "weir-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the chart, without a component. */}}
{{- define "weir-operator.commonLabels" -}}
helm.sh/chart: {{ include "weir-operator.chart" . }}
app.kubernetes.io/name: {{ include "weir-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weir
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "weir-operator.labels" -}}
{{ include "weir-operator.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels that select the operator pods. */}}
{{- define "weir-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "weir-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "weir-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "weir-operator.leaseName" -}}
{{- default (include "weir-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Namespaces where jobs run, as a JSON list (use with fromJsonArray):
jobNamespaces, else watchNamespaces, else the release namespace.
*/}}
{{- define "weir-operator.jobNamespaces" -}}
{{- $ns := .Values.jobNamespaces }}
{{- if not $ns }}{{ $ns = .Values.watchNamespaces }}{{ end }}
{{- if not $ns }}{{ $ns = list .Release.Namespace }}{{ end }}
{{- $ns | uniq | toJson }}
{{- end }}

{{/*
The operator's RBAC rules, from files/rbac.yaml (a copy of operator/rbac.yaml,
the list of API calls the operator makes; CI checks the copy is current).
Argument: a dict with "root" (the chart context) and "scope" ("cluster" or
"namespaced"): the rules for resources of that scope, one rule per
(apiGroup, resource) with its verbs, sorted so renders are stable.
*/}}
{{- define "weir-operator.rules" -}}
{{- $root := .root }}
{{- $calls := (fromYaml ($root.Files.Get "files/rbac.yaml")) }}
{{- $rules := list }}
{{- range $calls.rules }}
{{- if eq (.scope | default "namespaced") $.scope }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- range $rules }}
- apiGroups: [{{ .apiGroup | default "" | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: {{ .verbs | sortAlpha | toJson }}
{{- end }}
{{- end }}
