#!/usr/bin/env bash
# Build cert-manager's controller from the Go module proxy at the version pinned in this
# folder's go.mod, and take its CRDs (cert-manager.io, acme.cert-manager.io) from the same
# module, into a cache folder outside the repository keyed by the version. The tests run it as
# a process against the test control plane (tests/kube/test_readiness.py). Does nothing when
# already there. Prints the folder on stdout; `--check` never builds.
#
# Why v1.11: since v1.12 the controller's main package lives in its own module
# (github.com/cert-manager/cert-manager/controller-binary) that replaces the main module by a
# relative path and is not served by the Go module proxy (404); v1.11.x is the newest release
# whose controller `go build` can make from the proxy. Its API (cert-manager.io/v1, the
# Certificate's Ready and Issuing conditions, ingress-shim's annotations) is the one current
# releases serve.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
. ../cache.sh
VERSION=$(sed -n 's#^\s*github.com/cert-manager/cert-manager \(v[0-9.]*\).*#\1#p' go.mod)
OUT="$CACHE_ROOT/cert-manager-$VERSION"
cache_begin "${1:-}" "$OUT" controller crds
mkdir "$TMP/crds"
echo "building cert-manager $VERSION's controller into $OUT" >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/controller" \
  github.com/cert-manager/cert-manager/cmd/controller >&2
DIR=$(go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
# The module's CRDs are its Helm chart's templates: their only template lines are labels.
for crd in "$DIR"/deploy/crds/crd-*.yaml; do
  grep -v '{{' "$crd" > "$TMP/crds/$(basename "$crd")"
done
cache_end
