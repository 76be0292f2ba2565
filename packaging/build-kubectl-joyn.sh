#!/usr/bin/env bash
# `make kubectl-joyn`: kubectl joyn as one file a rep installs without a checkout.
#
#   dist/kubectl-joyn                      a zipapp (PEP 441) of joyn-scim and its dependencies,
#                                          run by python3 (3.11); kubectl runs it as a plugin
#   dist/kubectl-joyn-linux-amd64.tar.gz   the same, as krew wants it
#   dist/krew/joyn.yaml                    packaging/krew/joyn.yaml with VERSION, URI, SHA256
#   dist/joyn_scim-<version>-py3-none-any.whl   for other platforms: pipx install it
#
# Why shiv and not a plain `python -m zipapp` of pure-Python packages: the plugin imports
# cryptography (joserfc, through the operator's token code) and orjson (through the server's
# schemas), which are compiled and cannot be imported from inside a zip. shiv builds the
# zipapp with stdlib zipapp's layout and, on the first run, unpacks the packages once under
# ~/.shiv, where compiled modules load. It is a build tool only, installed in a temporary
# folder, not a dependency of the project. The wheels are this platform's (linux amd64,
# CPython 3.11): a rep elsewhere installs the wheel, dist/joyn_scim-<version>-py3-none-any.whl
# (pipx install ...), which pip completes with the wheels of that platform.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-dist}
SHIV_VERSION=1.0.8
VERSION=v$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
KREW_URI=${KREW_URI:-https://downloads.example.com/kubectl-joyn/$VERSION/kubectl-joyn-linux-amd64.tar.gz}

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m pip install -q --target "$tools/shiv" "shiv==$SHIV_VERSION"
# Built from a copy: setuptools reuses a build/ folder, which would carry modules since deleted.
mkdir -p "$tools/src" "$OUT/krew"
cp -r pyproject.toml README.md scim_server operator "$tools/src/"
find "$tools/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel -q --no-deps -w "$OUT" "$tools/src"
# --reproducible: the zip's times come from SOURCE_DATE_EPOCH, so a rebuild of the same
# sources gives the same sha256.
PYTHONPATH=$tools/shiv "$PYTHON" -m shiv --reproducible --compressed --console-script kubectl-joyn \
    --python '/usr/bin/env python3' --output-file "$OUT/kubectl-joyn" --quiet "$tools/src"
archive=$OUT/kubectl-joyn-linux-amd64.tar.gz
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$OUT" -cf - kubectl-joyn \
    | gzip -n > "$archive"
sha=$(sha256sum "$archive" | cut -d' ' -f1)
sed -e "s|^  version: VERSION$|  version: $VERSION|" -e "s|^      uri: URI$|      uri: $KREW_URI|" \
    -e "s|^      sha256: SHA256$|      sha256: $sha|" packaging/krew/joyn.yaml > "$OUT/krew/joyn.yaml"
echo "$OUT/kubectl-joyn ($(du -h "$OUT/kubectl-joyn" | cut -f1)), $archive (sha256 $sha), $OUT/krew/joyn.yaml"
