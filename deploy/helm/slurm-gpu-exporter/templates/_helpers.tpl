{{/* Name of the chart (overridable). */}}
{{- define "sge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, or release-chart when they differ. */}}
{{- define "sge.fullname" -}}
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

{{- define "sge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "sge.labels" -}}
app.kubernetes.io/name: {{ include "sge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: slurm-gpu-exporter
{{- if .Values.helmLabels }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: sge.selector (list $ "cluster-scraper"). */}}
{{- define "sge.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "sge.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The job label the alerts and dashboards expect (alerts/*.yaml): fixed, whatever the release name. */}}
{{- define "sge.relabelings" -}}
- action: replace
  targetLabel: job
  replacement: {{ index . 1 }}
- action: replace
  targetLabel: cluster
  replacement: {{ (index . 0).Values.clusterName | quote }}
{{- end -}}
