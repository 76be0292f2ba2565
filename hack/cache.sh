# Sourced by hack/*/build.sh: each pinned build goes into a cache folder of its own outside the
# repository, keyed by what it is built from, made whole or not at all (a build stopped halfway
# leaves only its .partial folder, removed on exit), and reused when it is there.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
CACHE_ROOT=${KUBE_BINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joyn-scim/kube-bins}

# cache_begin ARG OUT PATH...: when every PATH is in folder OUT, print OUT and exit 0; when ARG
# is --check, say it is not built and exit 1; else make $TMP, the folder to build into.
cache_begin() {
  local arg=$1 path built=1
  OUT=$2
  shift 2
  for path in "$@"; do [ -e "$OUT/$path" ] || built=; done
  if [ -n "$built" ]; then
    echo "$OUT"
    exit 0
  fi
  [ "$arg" = "--check" ] && { echo "not built yet: $OUT" >&2; exit 1; }
  TMP="$OUT.partial.$$"
  mkdir -p "$TMP"
  trap 'rm -rf "$TMP"' EXIT
}

# cache_end: $TMP becomes OUT, whole; print OUT.
cache_end() {
  rm -rf "$OUT"
  mv "$TMP" "$OUT"
  trap - EXIT
  echo "$OUT"
}
