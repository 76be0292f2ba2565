#!/usr/bin/env bash
# Build krew, kubectl's plugin manager, from the Go module proxy at the version pinned in this
# folder's go.mod (v0.4.3: the newest the proxy serves), into a cache folder outside the
# repository keyed by that version. tests/kube/test_ctl.py installs `make kubectl-joyn`'s
# archive with the krew manifest it wrote, as a rep would. Does nothing when already there.
# Prints the folder on stdout; `--check` never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
. ../cache.sh
KREW=$(sed -n 's#^\(require \)\{0,1\}\s*sigs.k8s.io/krew \(v[0-9.]*\).*#\2#p' go.mod)
OUT="$CACHE_ROOT/krew-$KREW"
cache_begin "${1:-}" "$OUT" krew
echo "building krew $KREW into $OUT" >&2
go build -trimpath -ldflags "-s -w" -o "$TMP/krew" sigs.k8s.io/krew/cmd/krew >&2
cache_end
