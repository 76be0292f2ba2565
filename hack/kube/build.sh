#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and
# etcd from the Go module proxy, at the versions pinned in this folder's go.mod, into a cache
# folder outside the repository keyed by those versions. Builds only the binaries the folder
# lacks: every one comes from the same pinned modules and flags, so a folder made before a binary
# joined the list gains it without the others being rebuilt. Prints the folder on stdout.
# `build.sh --check` only prints it (exit 1 if a binary is missing) and never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
V=$(sed -n 's#^\s*k8s.io/kubernetes \(v[0-9.]*\).*#\1#p' go.mod)
ETCD=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[0-9.]*\).*#\1#p' go.mod)
ROOT=${KUBE_BINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joyn-scim/kube-bins}
OUT="$ROOT/kubernetes-$V-etcd-$ETCD"
KUBE_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
missing=""
for b in $KUBE_CMDS etcd; do [ -x "$OUT/$b" ] || missing="$missing $b"; done
if [ -z "$missing" ]; then
  echo "$OUT"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then  # report only: never build
  echo "not built yet: $OUT (missing:$missing)" >&2
  exit 1
fi
command -v go >/dev/null || { echo "go is not installed" >&2; exit 1; }
minor=${V#v1.}; minor=${minor%%.*}
LDF="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF="$LDF -X $pkg.gitVersion=$V -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  LDF="$LDF -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
TMP="$OUT.partial.$$"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
echo "building$missing (kubernetes $V, etcd $ETCD) into $OUT" \
  "(all of them cold: ~12 min on 2 cores, ~2 GB RAM)" >&2
pkgs=""
for b in $missing; do [ "$b" = etcd ] || pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done
[ -z "$pkgs" ] || go build -trimpath -ldflags "$LDF" -o "$TMP/" $pkgs >&2
case " $missing " in
  *" etcd "*) go build -trimpath -ldflags "-s -w" -o "$TMP/etcd" go.etcd.io/etcd/server/v3 >&2 ;;
esac
# One rename per binary (same file system): a reader sees each whole or not at all.
mkdir -p "$OUT"
for b in $missing; do mv "$TMP/$b" "$OUT/$b"; done
echo "$OUT"
