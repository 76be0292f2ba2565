#!/usr/bin/env bash
# Build CloudNativePG's two images for the test node, without a registry or a Docker engine
# (buildah, as hack/node/images.sh), into image archives in the same cache:
#   operator    the manager from hack/cnpg/build.sh, on nothing (FROM scratch), where
#               CloudNativePG's Dockerfile puts it (/operator/manager_<arch>, /manager a link
#               to it): the operator's Deployment runs it, and each PostgreSQL pod's init
#               container copies it out of this image (`/manager bootstrap /controller/manager`)
#   postgresql  PostgreSQL 15 from Debian bookworm's packages on the project's Debian base
#               (hack/node/images.sh), laid out as CloudNativePG's own Debian images are: the
#               binaries in /usr/lib/postgresql/15/bin on PATH, the `postgres` user uid 26
#               (the Cluster's default postgresUID; initdb and postgres refuse to run as a
#               uid without a passwd entry). Its tag starts with the major version:
#               the operator reads the major from the image's tag.
# Each is tagged with a hash of what it is made from and skipped when its archive exists.
# Prints, one per line: `operator=<ref> <archive>`, `postgresql=<ref> <archive>`. `--check`
# never builds (exit 1 if missing).
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${KUBE_BINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joyn-scim/kube-bins}
IMAGES="$ROOT/images"
PG_MAJOR=15
PG_UID=26
PG_PACKAGES="postgresql-$PG_MAJOR"
check=""
[ "${1:-}" = "--check" ] && check=--check
hash_of() { sha256sum | cut -c1-12; }
archive() { echo "$IMAGES/$(echo "${1#localhost/}" | tr ':/' '--').tar"; }

BINS=$("$HERE/build.sh" $check)
BASE=$("$REPO/hack/node/images.sh" $check | sed -n 's/^base=//p')
BASE_REF=${BASE%% *}
BASE_ARCHIVE=${BASE#* }
CNPG_VERSION=$(basename "$BINS" | sed 's/^cnpg-v//')
# Each is keyed by what it is made of and by the recipe below (this script).
OPERATOR_REF="localhost/cloudnative-pg:$CNPG_VERSION-$(cat "$BINS/manager" "$0" | hash_of)"
PG_REF="localhost/cnpg-postgresql:$PG_MAJOR-bookworm-$( { echo "$BASE_REF $PG_PACKAGES $PG_UID"; \
  cat "$0"; } | hash_of)"

report() {
  echo "operator=$OPERATOR_REF $(archive "$OPERATOR_REF")"
  echo "postgresql=$PG_REF $(archive "$PG_REF")"
}
missing() { for r in "$OPERATOR_REF" "$PG_REF"; do [ -s "$(archive "$r")" ] || return 0; done; return 1; }
if ! missing; then report; exit 0; fi
[ -n "$check" ] && { echo "CloudNativePG's images not built yet in $IMAGES" >&2; exit 1; }
command -v buildah >/dev/null || { echo "buildah is not installed (make node-deps)" >&2; exit 1; }

mkdir -p "$IMAGES"
WORK=$(mktemp -d "$IMAGES/work.XXXXXX")
HOST_FOLDERS=""
for f in /run/containers /var/lib/containers; do [ -e "$f" ] || HOST_FOLDERS="$HOST_FOLDERS $f"; done
B=(buildah --root "$IMAGES/storage" --runroot "$WORK/run" --storage-driver overlay)
cleanup() {
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$WORK" $HOST_FOLDERS
}
trap cleanup EXIT
save() {  # an image from buildah's store into a docker-archive, atomically
  local out; out=$(archive "$1")
  "${B[@]}" push --quiet "$1" "docker-archive:$out.partial.$$:$1" >/dev/null
  mv "$out.partial.$$" "$out"
}
drop_older() {  # earlier builds of this image (by its name): archives and store
  local name=${1%%:*} keep; keep=$(archive "$1")
  for old in "$IMAGES/${name#localhost/}"-*.tar; do [ "$old" = "$keep" ] || rm -f "$old"; done
  "${B[@]}" images --format '{{.Name}}:{{.Tag}}' | grep "^$name:" | grep -vx "$1" \
    | xargs -r "${B[@]}" rmi >/dev/null 2>&1 || true
}

if [ ! -s "$(archive "$OPERATOR_REF")" ]; then
  echo "images: $OPERATOR_REF" >&2
  # Laid out as CloudNativePG's Dockerfile does: the operator finds the instance managers it
  # can hand out by the glob operator/manager_<GOARCH> (relative to /, its working folder),
  # and reconciles no Cluster without its own architecture's ("invalid architecture: amd64").
  mkdir -p "$WORK/operator/operator"
  install -m 0755 "$BINS/manager" "$WORK/operator/operator/manager_$(go env GOARCH)"
  ln -s "operator/manager_$(go env GOARCH)" "$WORK/operator/manager"
  c=$("${B[@]}" from scratch)
  "${B[@]}" copy "$c" "$WORK/operator/" / >/dev/null
  # The uid of CloudNativePG's own Deployment (runAsUser 10001).
  "${B[@]}" config --entrypoint '["/manager"]' --workingdir / --user 10001:10001 \
    --label "org.opencontainers.image.description=CloudNativePG $CNPG_VERSION's manager, built here" "$c"
  "${B[@]}" commit --quiet "$c" "$OPERATOR_REF" >/dev/null
  save "$OPERATOR_REF"
  drop_older "$OPERATOR_REF"
fi

if [ ! -s "$(archive "$PG_REF")" ]; then
  echo "images: $PG_REF ($PG_PACKAGES) on $BASE_REF" >&2
  if ! "${B[@]}" inspect --type image "$BASE_REF" >/dev/null 2>&1; then
    "${B[@]}" pull --quiet "docker-archive:$BASE_ARCHIVE" >/dev/null
  fi
  mirror=$(sed -n 's/^URIs: *\(\S*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  c=$("${B[@]}" from --pull=never "$BASE_REF")
  # The point release's and the security archive's fixes too, as the Debian images CloudNativePG
  # publishes carry them. --network host: apt reaches the mirror the way this machine does.
  "${B[@]}" run --network host --cni-config-dir "$WORK/cni" "$c" -- sh -euc "
    echo 'deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $mirror-security bookworm-security main' > /etc/apt/sources.list
    # Debian's gid 26 is \`tape\`: the group is another (the pod runs as gid 26 all the same,
    # and nothing looks its name up), as in CloudNativePG's own images.
    groupadd --system postgres
    useradd --system --uid $PG_UID --gid postgres --home-dir /var/lib/postgresql \\
      --shell /bin/bash postgres
    # Debian's package would make and start a cluster of its own (main); CloudNativePG runs
    # initdb itself, and nothing is started in an image.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/cnpg.conf
    printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      $PG_PACKAGES >/dev/null
    rm -rf /usr/sbin/policy-rc.d /var/lib/apt/lists/* /var/cache/apt/*
  " >&2
  pg_version=$("${B[@]}" run --network none "$c" -- dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")
  "${B[@]}" config --user $PG_UID \
    --env PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd postgres \
    --label "org.opencontainers.image.description=PostgreSQL $pg_version from Debian bookworm for CloudNativePG" \
    "$c"
  "${B[@]}" commit --quiet "$c" "$PG_REF" >/dev/null
  save "$PG_REF"
  drop_older "$PG_REF"
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
fi
report
