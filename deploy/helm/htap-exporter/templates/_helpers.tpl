{{/*
Expand the name of the chart.
*/}}
{{- define "htap-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A default fully qualified app name, at most 63 characters (DNS names). A release name that contains
the chart name is used as it is.
*/}}
{{- define "htap-exporter.fullname" -}}
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

{{- define "htap-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "htap-exporter.labels" -}}
helm.sh/chart: {{ include "htap-exporter.chart" . }}
{{ include "htap-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: htap-exporter
{{- end }}

{{/*
Selector labels
*/}}
{{- define "htap-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "htap-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "htap-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "htap-exporter.configMapName" -}}
{{- .Values.config.existingConfigMap | default (printf "%s-config" (include "htap-exporter.fullname" .)) }}
{{- end }}

{{/*
The web config (--web.config.file): an existing Secret, or one this chart makes from
webConfig.inline plus the TLS files of tls.existingSecret.
*/}}
{{- define "htap-exporter.webConfigEnabled" -}}
{{- if or .Values.webConfig.existingSecret .Values.webConfig.inline .Values.tls.enabled }}true{{ end }}
{{- end }}

{{- define "htap-exporter.webConfigSecretName" -}}
{{- .Values.webConfig.existingSecret | default (printf "%s-web-config" (include "htap-exporter.fullname" .)) }}
{{- end }}

{{- define "htap-exporter.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
The pod template, shared by the Deployment and the sharded StatefulSet.
*/}}
{{- define "htap-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "htap-exporter.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A changed config or web config rolls the pods (the exporter reads its config at start).
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    checksum/web-config: {{ include (print $.Template.BasePath "/secret-web-config.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: 15
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    - name: htap-exporter
      image: {{ include "htap-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file=/etc/htap-exporter/config.yaml
        - --log.format={{ .Values.log.format }}
        - --log.level={{ .Values.log.level }}
        {{- if include "htap-exporter.webConfigEnabled" . }}
        - --web.config.file=/etc/htap-exporter-web/web.yml
        {{- end }}
        {{- if .Values.sharding.enabled }}
        - --shard.count={{ .Values.sharding.shards }}
        - --shard.index-from-hostname
        {{- end }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: 9978
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /-/healthy
          port: http-metrics
          scheme: {{ include "htap-exporter.scheme" . }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          # /-/ready needs the basic auth of /metrics when the web config has users: set
          # readinessPath to /-/healthy then.
          path: {{ .Values.readinessPath }}
          port: http-metrics
          scheme: {{ include "htap-exporter.scheme" . }}
        periodSeconds: 5
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/htap-exporter
          readOnly: true
        {{- if .Values.credentials.existingSecret }}
        # Every key of the Secret is a file here (access_key_file: {{ .Values.credentials.mountPath }}/KEY);
        # the kubelet updates the files when the Secret changes and the exporter re-reads them.
        - name: credentials
          mountPath: {{ .Values.credentials.mountPath }}
          readOnly: true
        {{- end }}
        {{- if include "htap-exporter.webConfigEnabled" . }}
        - name: web-config
          mountPath: /etc/htap-exporter-web
          readOnly: true
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/htap-exporter-tls
          readOnly: true
        # The root filesystem is read-only; a small private /tmp for the TLS setup.
        - name: tmp
          mountPath: /tmp
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "htap-exporter.configMapName" . }}
    {{- if .Values.credentials.existingSecret }}
    - name: credentials
      secret:
        secretName: {{ .Values.credentials.existingSecret }}
    {{- end }}
    {{- if include "htap-exporter.webConfigEnabled" . }}
    - name: web-config
      secret:
        secretName: {{ include "htap-exporter.webConfigSecretName" . }}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ required "tls.existingSecret: the name of a kubernetes.io/tls Secret" .Values.tls.existingSecret }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 1Mi
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
