#!/usr/bin/env bash
# Build the images the test node runs, without a registry or a Docker engine (buildah, from
# Debian), into image archives in a cache outside the repository:
#   base   a Debian bookworm root file system made by debootstrap from the configured apt
#          mirror (python3.11, venv, CA certificates): what the Dockerfile's PYTHON_IMAGE names
#   pause  the pod sandbox image (hack/node/pause.c, built static)
#   app    the project's Dockerfile, built on that base; tagged with a hash of what it copies,
#          so a changed source file means a new image and an unchanged one reuses the archive
# Each is skipped when its archive exists. Prints, one per line: `base=<ref> <archive>`,
# `pause=<ref> <archive>`, `app=<ref> <archive>`. `--check` never builds (exit 1 if missing).
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${KUBE_BINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joyn-scim/kube-bins}
IMAGES="$ROOT/images"
SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
# The machine's own extra trust anchors (a TLS-inspecting egress proxy, for one) go into the base
# so pip in the Dockerfile's build stage reaches PyPI as the host does; they are part of the key.
EXTRA_CAS=$(ls /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
hash_of() { sha256sum | cut -c1-12; }
BASE_KEY=$( { echo "$SUITE $PACKAGES"; [ -z "$EXTRA_CAS" ] || cat $EXTRA_CAS; } | hash_of)
PAUSE_KEY=$(hash_of < "$HERE/pause.c")
# Exactly what the Dockerfile copies (by content), plus the Dockerfile and the base.
APP_KEY=$( { echo "$BASE_KEY"; cd "$REPO" && find Dockerfile .dockerignore pyproject.toml README.md \
  scim_server operator -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' | LC_ALL=C sort \
  | xargs sha256sum; } | hash_of)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml")
BASE_REF="localhost/joyn-scim-base:$SUITE-$BASE_KEY"
PAUSE_REF="localhost/joyn-scim-pause:$PAUSE_KEY"
APP_REF="localhost/joyn-scim:$VERSION-$APP_KEY"
archive() { echo "$IMAGES/$(echo "${1#localhost/}" | tr ':/' '--').tar"; }

report() {
  for kind in base pause app; do
    ref_var="${kind^^}_REF"; ref=${!ref_var}
    echo "$kind=$ref $(archive "$ref")"
  done
}
missing() { for r in "$BASE_REF" "$PAUSE_REF" "$APP_REF"; do [ -s "$(archive "$r")" ] || return 0; done; return 1; }
if ! missing; then report; exit 0; fi
[ "${1:-}" = "--check" ] && { echo "images not built yet in $IMAGES" >&2; exit 1; }
for tool in buildah debootstrap gcc; do
  command -v $tool >/dev/null || { echo "$tool is not installed (make node-deps)" >&2; exit 1; }
done

mkdir -p "$IMAGES"
WORK=$(mktemp -d "$IMAGES/work.XXXXXX")
# buildah makes these host folders (its network state, a blob-info cache) whatever --root says;
# they go again at the end unless they were there before.
HOST_FOLDERS=""
for f in /run/containers /var/lib/containers; do [ -e "$f" ] || HOST_FOLDERS="$HOST_FOLDERS $f"; done
# buildah keeps its layers in the cache (--root) and its run state in the work folder.
B=(buildah --root "$IMAGES/storage" --runroot "$WORK/run" --storage-driver overlay)
cleanup() {
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  umount -R "$WORK/rootfs/proc" "$WORK/rootfs/sys" 2>/dev/null || true
  rm -rf "$WORK" $HOST_FOLDERS
}
trap cleanup EXIT
save() {  # an image from buildah's store into a docker-archive, atomically
  local out; out=$(archive "$1")
  "${B[@]}" push --quiet "$1" "docker-archive:$out.partial.$$:$1" >/dev/null
  mv "$out.partial.$$" "$out"
}

if [ ! -s "$(archive "$BASE_REF")" ]; then
  mirror=$(sed -n 's/^URIs: *\(\S*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "images: debootstrap $SUITE ($PACKAGES) from $mirror" >&2
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/rootfs" "$mirror" \
    > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  if [ -n "$EXTRA_CAS" ]; then
    cp $EXTRA_CAS "$WORK/rootfs/usr/local/share/ca-certificates/"
    chroot "$WORK/rootfs" update-ca-certificates >/dev/null
  fi
  # A container gets /dev, /proc and /sys from its runtime; apt's lists are not needed.
  rm -rf "$WORK/rootfs/dev/"* "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/"*
  c=$("${B[@]}" from scratch)
  "${B[@]}" copy "$c" "$WORK/rootfs/" / >/dev/null
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --cmd python3 \
    --label "org.opencontainers.image.description=Debian $SUITE ($PACKAGES), made by debootstrap" "$c"
  "${B[@]}" commit --quiet "$c" "$BASE_REF" >/dev/null
  save "$BASE_REF"
  rm -rf "$WORK/rootfs"
fi

if [ ! -s "$(archive "$PAUSE_REF")" ]; then
  echo "images: pause" >&2
  gcc -static -O2 -Wall -Wextra -o "$WORK/pause" "$HERE/pause.c"
  strip "$WORK/pause"
  c=$("${B[@]}" from scratch)
  "${B[@]}" copy "$c" "$WORK/pause" /pause >/dev/null
  "${B[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  "${B[@]}" commit --quiet "$c" "$PAUSE_REF" >/dev/null
  save "$PAUSE_REF"
fi

if [ ! -s "$(archive "$APP_REF")" ]; then
  echo "images: $APP_REF from the Dockerfile on $BASE_REF" >&2
  if ! "${B[@]}" inspect --type image "$BASE_REF" >/dev/null 2>&1; then
    "${B[@]}" pull --quiet "docker-archive:$(archive "$BASE_REF")" >/dev/null
  fi
  # --network host: the build stage's pip reaches PyPI the way this machine does.
  "${B[@]}" bud --quiet --layers --network host --cni-config-dir "$WORK/cni" --pull=never \
    --build-arg "PYTHON_IMAGE=$BASE_REF" -t "$APP_REF" -f "$REPO/Dockerfile" "$REPO" >&2
  save "$APP_REF"
  # Earlier builds of the app are not needed again; keep the cache from growing.
  for old in "$IMAGES"/joyn-scim-[0-9]*.tar; do [ "$old" = "$(archive "$APP_REF")" ] || rm -f "$old"; done
  "${B[@]}" images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/joyn-scim:' | grep -vx "$APP_REF" \
    | xargs -r "${B[@]}" rmi >/dev/null 2>&1 || true
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true  # the build stages and untagged images
fi
report
