#!/usr/bin/env bash
# Build the test node's helpers from the Go module proxy, at the versions pinned in the pin
# modules beside this script: Traefik (the ingress controller), Rancher's local-path-provisioner
# (the default StorageClass), crictl (the CRI client the harness uses to tear pods down) and
# kube-network-policies (NetworkPolicy enforcement). Into a cache folder outside the repository
# keyed by those versions; does nothing when they are already there. Prints the folder on
# stdout; `--check` never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
version() { sed -n "s#^\s*$2 \(v[0-9.]*\).*#\1#p" "$1/go.mod"; }
TRAEFIK=$(version traefik github.com/traefik/traefik/v3)
LPP=$(version local-path-provisioner github.com/rancher/local-path-provisioner)
CRICTL=$(version crictl sigs.k8s.io/cri-tools)
NETPOL=$(version kube-network-policies sigs.k8s.io/kube-network-policies)
ROOT=${KUBE_BINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joyn-scim/kube-bins}
OUT="$ROOT/node-traefik-$TRAEFIK-local-path-$LPP-crictl-$CRICTL-netpol-$NETPOL"
BINS="traefik local-path-provisioner crictl kube-network-policies"
have_all() { for b in $BINS; do [ -x "$OUT/$b" ] || return 1; done; }
if have_all; then
  echo "$OUT"
  exit 0
fi
[ "${1:-}" = "--check" ] && { echo "not built yet: $OUT" >&2; exit 1; }
command -v go >/dev/null || { echo "go is not installed" >&2; exit 1; }
TMP="$OUT.partial.$$"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
echo "building traefik $TRAEFIK, local-path-provisioner $LPP, crictl $CRICTL," \
  "kube-network-policies $NETPOL into $OUT" >&2
(cd traefik && go build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK" \
  -o "$TMP/traefik" github.com/traefik/traefik/v3/cmd/traefik) >&2
(cd local-path-provisioner && go build -trimpath -ldflags "-s -w -X main.VERSION=$LPP" \
  -o "$TMP/local-path-provisioner" github.com/rancher/local-path-provisioner) >&2
(cd crictl && go build -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL" \
  -o "$TMP/crictl" sigs.k8s.io/cri-tools/cmd/crictl) >&2
(cd kube-network-policies && go build -trimpath -ldflags "-s -w" \
  -o "$TMP/kube-network-policies" sigs.k8s.io/kube-network-policies/cmd) >&2
rm -rf "$OUT"
mv "$TMP" "$OUT"
trap - EXIT
echo "$OUT"
