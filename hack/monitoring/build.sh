#!/usr/bin/env bash
# Build promtool (Prometheus's rule checker and rule unit tester) from the Go module proxy at
# the version pinned in this folder's go.mod, and take the Prometheus Operator's CRDs for
# ServiceMonitor, PodMonitor and PrometheusRule from its module, into a cache folder outside
# the repository keyed by both versions. The chart's tests use them (tests/kube/
# test_chart_monitoring.py). Does nothing when already there. Prints the folder on stdout; `--check` never builds.
#   KUBE_BINS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/joyn-scim/kube-bins)
set -euo pipefail
cd "$(dirname "$0")"
. ../cache.sh
PROMETHEUS=$(sed -n 's#^\s*github.com/prometheus/prometheus \(v[0-9.]*\).*#\1#p' go.mod)
# The Operator's own module is no dependency of promtool's; its CRDs ship in its module zip.
OPERATOR=v0.85.0
CRDS="servicemonitors podmonitors prometheusrules"
OUT="$CACHE_ROOT/monitoring-prometheus-$PROMETHEUS-operator-$OPERATOR"
cache_begin "${1:-}" "$OUT" promtool crds
mkdir "$TMP/crds"
echo "building promtool $PROMETHEUS, Prometheus Operator $OPERATOR CRDs into $OUT" >&2
# remove_all_sd: none of Prometheus's cloud service discoveries, which promtool's rule
# commands never use (they would triple the build).
go build -trimpath -tags remove_all_sd -ldflags "-s -w" -o "$TMP/promtool" \
  github.com/prometheus/prometheus/cmd/promtool >&2
DIR=$(cd "$TMP" && GOFLAGS=-mod=mod go mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$OPERATOR" |
  sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
for crd in $CRDS; do
  cp "$DIR/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$TMP/crds/"
done
cache_end
