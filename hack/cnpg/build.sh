#!/usr/bin/env bash
# Build CloudNativePG's manager from the Go module proxy at the version pinned in this folder's
# go.mod, static (one binary is the operator, the initdb job and the instance manager inside
# every PostgreSQL pod, which copies it out of the operator's image), and take the release
# manifest (CRDs, RBAC, webhooks, the operator's Deployment) from the same module, into a cache
# folder outside the repository keyed by the version. hack/cnpg/images.sh makes the operator's
# image from it; tests/kube/cnpg.py installs it on the test cluster. Does nothing when already
# there. Prints the folder on stdout; `--check` never builds.
#
# Why v1.30.1: the newest release the Go module proxy serves here (v1.30.2, v1.30.3 and v1.31.0
# answer 403); its cmd/manager builds with `go build` as it is.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
. ../cache.sh
VERSION=$(sed -n 's#^\s*github.com/cloudnative-pg/cloudnative-pg \(v[0-9.]*\).*#\1#p' go.mod)
OUT="$CACHE_ROOT/cnpg-$VERSION"
cache_begin "${1:-}" "$OUT" manager cnpg.yaml
echo "building CloudNativePG $VERSION's manager into $OUT" >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/manager" \
  github.com/cloudnative-pg/cloudnative-pg/cmd/manager >&2
DIR=$(go list -m -f '{{.Dir}}' github.com/cloudnative-pg/cloudnative-pg)
# The module ships each release's whole manifest (what `kubectl apply -f` of the release takes).
cp "$DIR/releases/cnpg-${VERSION#v}.yaml" "$TMP/cnpg.yaml"
cache_end
