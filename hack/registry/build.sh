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
. ../cache.sh
REGISTRY=$(sed -n 's#^\s*github.com/distribution/distribution/v3 \(v[0-9.]*\).*#\1#p' go.mod)
# The writer's source is part of the key, so a change to it rebuilds.
HELPER=$(sha256sum htpasswd/main.go | cut -c1-12)
OUT="$CACHE_ROOT/registry-distribution-$REGISTRY-htpasswd-$HELPER"
cache_begin "${1:-}" "$OUT" registry htpasswd
echo "building registry $REGISTRY into $OUT" >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/registry" \
  github.com/distribution/distribution/v3/cmd/registry >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/htpasswd" ./htpasswd >&2
cache_end
