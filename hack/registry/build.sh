#!/usr/bin/env bash
# Build a container registry (distribution's cmd/registry, the reference implementation
# behind Docker Hub, Harbor and GitLab's) from the Go module proxy at the version pinned in
# this folder's go.mod, and the small htpasswd writer beside it (htpasswd/), into a cache
# folder outside the repository keyed by that version. tests/kube/test_pull_secrets.py runs
# it with htpasswd auth, for a tenant whose server image needs credentials to pull. Does
# nothing when already there. Prints the folder on stdout; `--check` never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
REGISTRY=$(sed -n 's#^\s*github.com/distribution/distribution/v3 \(v[0-9.]*\).*#\1#p' go.mod)
# The writer's source is part of the key, so a change to it rebuilds.
HELPER=$(sha256sum htpasswd/main.go | cut -c1-12)
ROOT=${KUBE_BINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joyn-scim/kube-bins}
OUT="$ROOT/registry-distribution-$REGISTRY-htpasswd-$HELPER"
if [ -x "$OUT/registry" ] && [ -x "$OUT/htpasswd" ]; then
  echo "$OUT"
  exit 0
fi
[ "${1:-}" = "--check" ] && { echo "not built yet: $OUT" >&2; exit 1; }
TMP="$OUT.partial.$$"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
echo "building registry $REGISTRY into $OUT" >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/registry" \
  github.com/distribution/distribution/v3/cmd/registry >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/htpasswd" ./htpasswd >&2
rm -rf "$OUT"
mv "$TMP" "$OUT"
trap - EXIT
echo "$OUT"
