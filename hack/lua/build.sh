#!/usr/bin/env bash
# Build argocd-health (main.go: Argo CD's health check Lua run as Argo CD runs it) with
# gopher-lua from the Go module proxy at the version pinned in this folder's go.mod, into a
# cache folder outside the repository keyed by that version and the runner's source. The
# Argo CD health check tests use it (tests/test_chart_artifact.py, tests/kube/
# test_argocd_health.py). Does nothing when already there. Prints the folder on stdout;
# `--check` never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
. ../cache.sh
LUA=$(sed -n 's#^\s*require github.com/yuin/gopher-lua \(v[0-9.]*\).*#\1#p' go.mod)
SOURCE=$(cat main.go go.sum | sha256sum | cut -c1-12)
OUT="$CACHE_ROOT/argocd-health-gopher-lua-$LUA-$SOURCE"
cache_begin "${1:-}" "$OUT" argocd-health
echo "building argocd-health with gopher-lua $LUA into $OUT" >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/argocd-health" . >&2
cache_end
