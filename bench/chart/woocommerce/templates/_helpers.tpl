{{/*
Shared definitions. Each template mirrors the blueprint template of the same name in
templates/woocommerce/ (namespace.yaml <- namespace.yaml.j2, …). What Storeplane's
renderer adds to every object — the standard labels, the blueprint and phase
annotations, the namespace — the templates add through "woocommerce.metadata".
*/}}

{{/* The store's namespace: store-<release name>-<last 8 hex digits of store.id>. */}}
{{- define "woocommerce.namespace" -}}
{{- printf "store-%s-%s" .Release.Name (.Values.store.id | replace "-" "" | trunc -8) -}}
{{- end }}

{{/* The store's host: `domain`, else <release name>.<platform.base_domain>. */}}
{{- define "woocommerce.host" -}}
{{- .Values.domain | default (printf "%s.%s" .Release.Name .Values.platform.base_domain) -}}
{{- end }}

{{/* https when cert-manager issues the store's certificate, else http. */}}
{{- define "woocommerce.url" -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.platform.tls_issuer))) (include "woocommerce.host" .) -}}
{{- end }}

{{/* The selected row of `plans`, as YAML (use with `fromYaml`). */}}
{{- define "woocommerce.plan" -}}
{{- if not (hasKey .Values.plans .Values.plan) }}
{{- fail (printf "plan %q is not one of: %s" .Values.plan (keys .Values.plans | sortAlpha | join ", ")) }}
{{- end }}
{{- index .Values.plans .Values.plan | toYaml }}
{{- end }}

{{/* A volume size (NMi, NGi or NTi, as the schema allows) in MiB. */}}
{{- define "woocommerce.mebibytes" -}}
{{- $q := toString . -}}
{{- $n := regexReplaceAll "(Mi|Gi|Ti)$" $q "" | int64 -}}
{{- if hasSuffix "Ti" $q }}{{ mul $n 1048576 }}{{ else if hasSuffix "Gi" $q }}{{ mul $n 1024 }}{{ else if hasSuffix "Mi" $q }}{{ $n }}{{ else }}{{ fail (printf "size %q must end in Mi, Gi or Ti" $q) }}{{ end -}}
{{- end }}

{{/*
Checks what values.schema.json cannot: the release (store) name, that the release
namespace is the store's, and that the volumes fit the plan's storage quota — the same
input checks Storeplane's renderer makes.
*/}}
{{- define "woocommerce.validate" -}}
{{- $name := .Release.Name }}
{{- if gt (len $name) 40 }}
{{- fail (printf "release name %q is %d characters long; a store name has at most 40" $name (len $name)) }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "release name %q is not a store name: lowercase letters, digits and '-', starting with a letter, not ending with '-'" $name) }}
{{- end }}
{{- $namespace := include "woocommerce.namespace" . }}
{{- if ne .Release.Namespace $namespace }}
{{- fail (printf "namespace %q does not match the store; install with --namespace %s" .Release.Namespace $namespace) }}
{{- end }}
{{- $quota := index (include "woocommerce.plan" . | fromYaml).quota "requests.storage" }}
{{- $needed := add (include "woocommerce.mebibytes" .Values.storage.database | int64) (include "woocommerce.mebibytes" .Values.storage.content | int64) }}
{{- if gt $needed (include "woocommerce.mebibytes" $quota | int64) }}
{{- fail (printf "plan %q is too small: the volumes need %dMi of storage, the plan allows %s; choose smaller sizes or a larger plan" .Values.plan $needed $quota) }}
{{- end }}
{{- end }}

{{/*
The labels every object of the store carries, plus app.kubernetes.io/component and
app.kubernetes.io/name when given.
Call: include "woocommerce.labels" (dict "root" $ "component" "web" "app" "wordpress")
*/}}
{{- define "woocommerce.labels" -}}
app.kubernetes.io/managed-by: storeplane
app.kubernetes.io/part-of: storeplane
app.kubernetes.io/instance: {{ .root.Release.Namespace | quote }}
storeplane.dev/store-id: {{ .root.Values.store.id | quote }}
storeplane.dev/store-name: {{ .root.Release.Name | quote }}
storeplane.dev/engine: {{ .root.Chart.Name | quote }}
{{- with .component }}
app.kubernetes.io/component: {{ . | quote }}
{{- end }}
{{- with .app }}
app.kubernetes.io/name: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The minimal, never-changing labels that select one component's pods.
Call: include "woocommerce.selectorLabels" (dict "root" $ "component" "web")
*/}}
{{- define "woocommerce.selectorLabels" -}}
app.kubernetes.io/instance: {{ .root.Release.Namespace | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end }}

{{/*
An object's metadata: name, namespace (unless cluster-scoped), labels and the
blueprint/phase annotations Storeplane applies by.
Call: include "woocommerce.metadata" (dict "root" $ "name" "mysql" "phase" "data"
  ["component" "database"] ["app" "mysql"] ["clusterScoped" true]
  ["labels" (dict …)] ["annotations" (dict …)])
*/}}
{{- define "woocommerce.metadata" -}}
name: {{ .name | quote }}
{{- if not .clusterScoped }}
namespace: {{ .root.Release.Namespace | quote }}
{{- end }}
labels:
  {{- include "woocommerce.labels" . | nindent 2 }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  storeplane.dev/blueprint: {{ printf "%s@%s" .root.Chart.Name .root.Chart.Version | quote }}
  storeplane.dev/phase: {{ .phase | quote }}
  {{- with .annotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Pod-level security context: a fixed non-root uid/gid, RuntimeDefault seccomp. */}}
{{- define "woocommerce.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context of the `restricted` Pod Security profile, read-only root. */}}
{{- define "woocommerce.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The environment WordPress and WP-CLI share: how to reach MySQL and wp-config.php
additions (the site URL, no loopback WP-cron, direct file writes).
*/}}
{{- define "woocommerce.wordpressEnv" -}}
- name: WORDPRESS_DB_HOST
  value: mysql:3306
- name: WORDPRESS_DB_USER
  value: wordpress
- name: WORDPRESS_DB_NAME
  value: wordpress
- name: WORDPRESS_TABLE_PREFIX
  value: wp_
- name: STOREPLANE_URL
  value: {{ include "woocommerce.url" . | quote }}
- name: WORDPRESS_CONFIG_EXTRA
  value: |
    define('WP_HOME', getenv('STOREPLANE_URL'));
    define('WP_SITEURL', getenv('STOREPLANE_URL'));
    define('DISABLE_WP_CRON', true);
    define('FS_METHOD', 'direct');
{{- range list "WORDPRESS_DB_PASSWORD" "WORDPRESS_AUTH_KEY" "WORDPRESS_SECURE_AUTH_KEY" "WORDPRESS_LOGGED_IN_KEY" "WORDPRESS_NONCE_KEY" "WORDPRESS_AUTH_SALT" "WORDPRESS_SECURE_AUTH_SALT" "WORDPRESS_LOGGED_IN_SALT" "WORDPRESS_NONCE_SALT" }}
- name: {{ . }}_FILE
  value: /run/secrets/wordpress/{{ . }}
{{- end }}
{{- end }}

{{/* The wordpress-credentials Secret as files, for the _FILE variables above. */}}
{{- define "woocommerce.credentialsMount" -}}
- name: credentials
  mountPath: /run/secrets/wordpress
  readOnly: true
{{- end }}
{{- define "woocommerce.credentialsVolume" -}}
- name: credentials
  secret:
    secretName: wordpress-credentials
    defaultMode: 288
{{- end }}

{{/* Runs a pod on WordPress's node: the content volume is ReadWriteOnce. */}}
{{- define "woocommerce.besideWordpress" -}}
podAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "woocommerce.selectorLabels" (dict "root" . "component" "web") | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- end }}
