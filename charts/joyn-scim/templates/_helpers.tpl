{{/* The release's name, or <release>-joyn-scim when the release name does not hold it. */}}
{{- define "joyn-scim.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "joyn-scim.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "joyn-scim.labels" -}}
{{ include "joyn-scim.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: joyn-scim
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "joyn-scim.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "joyn-scim.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository@digest, else repository:tag (default: the appVersion). */}}
{{- define "joyn-scim.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Exact namespace names get a Role each; none, or a glob, needs a ClusterRole. */}}
{{- define "joyn-scim.clusterwide" -}}
{{- $glob := false -}}
{{- range .Values.operator.watchNamespaces -}}
{{- if regexMatch "[*?\\[]" . -}}{{- $glob = true -}}{{- end -}}
{{- end -}}
{{- if or (not .Values.operator.watchNamespaces) $glob -}}true{{- end -}}
{{- end -}}

{{/* Whether to render a monitoring.coreos.com/v1 object: true, false, or auto (served). */}}
{{- define "joyn-scim.monitoring" -}}
{{- $mode := index . 0 -}}{{- $root := index . 1 -}}{{- $kind := index . 2 -}}
{{- if or (eq (toString $mode) "true") (and (eq (toString $mode) "auto") ($root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind))) -}}true{{- end -}}
{{- end -}}

{{/* The rules for tenants' namespaces; docs/platform/install.md's permission table mirrors them. */}}
{{- define "joyn-scim.namespacedRules" -}}
# Tenants: watched (kopf), read afresh before each reconcile, annotated by kopf with the last
# handled spec; their status written by the operator.
- apiGroups: [scim.sevenlakes.com]
  resources: [joynscimtenants]
  verbs: [get, list, watch, patch]
- apiGroups: [scim.sevenlakes.com]
  resources: [joynscimtenants/status]
  verbs: [patch]
# Children, applied server-side (create + patch); watched so that a deleted or edited child is
# repaired at once. Never deleted: the token Secret and the data volume claim.
- apiGroups: [""]
  resources: [secrets, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch]
# Recreated when a hand edit cannot be merged; the Ingress and NetworkPolicy also deleted when a
# tenant turns them off.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# A PostgreSQL tenant's PodDisruptionBudget (with more than one replica; deleted at one).
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# The Job that copies a tenant's data from its volume to PostgreSQL, once.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, patch]
{{ include "joyn-scim.cloudNativePGRules" . }}
# The servers' pods: read for the Ready condition's reasons (ImagePullBackOff, Pending, ...).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Events about tenants (TokenRotated, DriftCorrected, ...; kopf's handler errors).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# cert-manager's Certificate for a tenant's Ingress: watched, so Ready follows its issuance
# (CertificatePending / CertificateFailed); while it is not Ready, its CertificateRequests and
# a namespaced Issuer are read for cert-manager's reason. Only read; harmless without
# cert-manager.
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [get, list, watch]
- apiGroups: [cert-manager.io]
  resources: [certificaterequests]
  verbs: [list]
- apiGroups: [cert-manager.io]
  resources: [issuers]
  verbs: [get]
{{- end -}}

{{- /*
A tenant's role and database in a CloudNativePG Cluster (spec.storage.postgresql.cluster): the
Cluster read, the DatabaseRole, Database and the role's password Secret declared. In the tenant
namespaces (a Cluster there), and in each of operator.postgresql.clusterNamespaces.
*/ -}}
{{- define "joyn-scim.cloudNativePGRules" -}}
- apiGroups: [postgresql.cnpg.io]
  resources: [clusters]
  verbs: [get]
- apiGroups: [postgresql.cnpg.io]
  resources: [databases, databaseroles]
  verbs: [get, create, patch]
{{- end }}
