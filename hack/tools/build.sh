#!/usr/bin/env bash
# Build helm, kubeconform and kind from the Go module proxy at the versions pinned in this
# folder's go.mod, into a cache folder outside the repository keyed by those versions. Does
# nothing when they are already there. Prints the folder on stdout; `--check` never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
. ../cache.sh
version() { sed -n "s#^\s*$1 \(v[0-9.]*\).*#\1#p" go.mod; }
HELM=$(version helm.sh/helm/v3); KUBECONFORM=$(version github.com/yannh/kubeconform)
KIND=$(version sigs.k8s.io/kind)
# helm's own Makefile stamps the Kubernetes version its client-go speaks as the default of
# `helm template` and `helm lint` (Capabilities.KubeVersion); without it helm says v1.20 and
# refuses the chart's kubeVersion. Same rule as helm's Makefile: client-go v0.N is Kubernetes 1.N.
CLIENT_GO=$(go list -m -f '{{.Version}}' k8s.io/client-go)
K8S_MINOR=$(echo "$CLIENT_GO" | cut -d. -f2)
OUT="$CACHE_ROOT/tools-helm-$HELM-k8s-1.$K8S_MINOR-kubeconform-$KUBECONFORM-kind-$KIND"
cache_begin "${1:-}" "$OUT" helm kubeconform kind
echo "building helm $HELM, kubeconform $KUBECONFORM, kind $KIND into $OUT" >&2
K8S_FLAGS=""
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  K8S_FLAGS="$K8S_FLAGS -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM$K8S_FLAGS" \
  -o "$TMP/helm" helm.sh/helm/v3/cmd/helm >&2
go build -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM" -o "$TMP/kubeconform" github.com/yannh/kubeconform/cmd/kubeconform >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/kind" sigs.k8s.io/kind >&2
cache_end
