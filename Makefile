# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench bench-events bench-operator chart client kubectl-joyn clean node-deps kube-bins image dev-cluster dev-cluster-down \
	kind-up kind-down test-e2e db-deps

$(STAMP): pyproject.toml client/pyproject.toml tests/conformance/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' -e client/
	npm ci --prefix tests/conformance --no-audit --no-fund --silent  # newman
	touch $@

demo: $(STAMP) kube-bins  ## the whole system here: cluster with a real node, operator, a tenant
	$(BIN)/python hack/demo.py $(ARGS)

serve: $(STAMP)  ## only the SCIM server on http://127.0.0.1:8080/scim/v2 (prints a token once)
	$(BIN)/joyn-scim serve $(ARGS)

lint: $(STAMP)  ## ruff, and the layering in .importlinter
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(STAMP) lint kube-bins db-deps  ## the whole test suite: SCIM, conformance, Kubernetes on a real node
	KUBE_BINS_DIR=$$(hack/kube/build.sh) TOOLS_BINS_DIR=$$(hack/tools/build.sh) \
		NODE_BINS_DIR=$$(hack/node/build.sh) MONITORING_BINS_DIR=$$(hack/monitoring/build.sh) \
		CERT_MANAGER_BINS_DIR=$$(hack/cert-manager/build.sh) \
		LUA_BINS_DIR=$$(hack/lua/build.sh) \
		REGISTRY_BINS_DIR=$$(hack/registry/build.sh) \
		KREW_BINS_DIR=$$(hack/krew/build.sh) \
		CNPG_BINS_DIR=$$(hack/cnpg/build.sh) \
		$(BIN)/pytest $(PYTEST_ARGS)

# The node's runtime and the image builder, from Debian's packages (as root); a no-op when
# they are all there. nftables: kube-proxy's nftables mode runs `nft` (buildah brings it too,
# but only as a dependency of a dependency).
NODE_DEPS := containerd runc containernetworking-plugins buildah debootstrap iptables iproute2 \
	nftables gcc libc6-dev
node-deps:  ## install containerd, runc, CNI plugins, buildah, debootstrap (apt-get)
	@test "$$(dpkg-query -W -f='$${Status}\n' $(NODE_DEPS) 2>/dev/null | grep -c 'ok installed')" \
		= $(words $(NODE_DEPS)) || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(NODE_DEPS) >/dev/null; }

# PostgreSQL for the tests of the PostgreSQL backend (tests/pgserver.py starts it as the
# `postgres` user in a temporary folder); a no-op when installed. Debian's package also starts a
# cluster of its own as a service where services run; the tests do not use it.
DB_DEPS := postgresql
db-deps:  ## install PostgreSQL (apt-get) for the tests
	@dpkg-query -W -f='$${Status}\n' $(DB_DEPS) 2>/dev/null | grep -q 'ok installed' || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		$(DB_DEPS) >/dev/null; }

# Kubernetes and the node's tools from the Go module proxy (versions pinned in hack/kube,
# hack/tools and hack/node), and the node's images (hack/node/images.sh), cached outside the
# repository; a no-op when already built.
kube-bins: node-deps  ## build or reuse the Kubernetes binaries, helm, kubeconform, kind, promtool, the Argo CD health runner, a registry, krew, traefik, local-path-provisioner, crictl, CloudNativePG and the images
	hack/kube/build.sh
	hack/tools/build.sh
	hack/monitoring/build.sh
	hack/cert-manager/build.sh
	hack/lua/build.sh
	hack/registry/build.sh
	hack/krew/build.sh
	hack/node/build.sh
	hack/node/images.sh
	hack/cnpg/build.sh
	hack/cnpg/images.sh

image: node-deps  ## build (or reuse) the image from the Dockerfile on a Debian base made here; print its size
	@hack/node/images.sh | sed -n 's/^app=\(\S*\) \(.*\)/\1 \2/p' | while read -r ref tar; do \
		echo "$$ref: $$(du -m "$$tar" | cut -f1) MB uncompressed ($$tar)"; done

dev-cluster: $(STAMP) kube-bins  ## start the local cluster (real node, ingress); prints the KUBECONFIG
	$(BIN)/python hack/kube/cluster.py up

dev-cluster-down:  ## stop it, leave nothing behind, remove its files
	$(BIN)/python hack/kube/cluster.py down

# Only where a Docker engine runs (kind needs one; this project's build machines have none).
KIND_CLUSTER ?= joyn-scim
kind-up: kube-bins
	@docker info >/dev/null 2>&1 || { echo "kind-up: no Docker engine answers 'docker info'; kind needs one" >&2; exit 1; }
	$$(hack/tools/build.sh)/kind create cluster --name $(KIND_CLUSTER)

kind-down: kube-bins
	$$(hack/tools/build.sh)/kind delete cluster --name $(KIND_CLUSTER)

test-e2e: $(STAMP) kube-bins  ## end-to-end on kind (skipped, with the reason, without Docker)
	TOOLS_BINS_DIR=$$(hack/tools/build.sh) KUBE_BINS_DIR=$$(hack/kube/build.sh) \
		$(BIN)/pytest -m e2e tests/e2e $(PYTEST_ARGS)

bench: $(STAMP) db-deps  ## our server vs scim2-server 0.8.3, same ASGI server (needs wrk)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/bench.py $(ARGS)

bench-events: $(STAMP)  ## the event stream: write cost, poll drain, push, a 100,000-user initial cycle
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/events.py $(ARGS)

bench-operator: $(STAMP) kube-bins  ## the operator with 500 tenants: cold start, idle, restart (ARGS="--baseline REF")
	KUBE_BINS_DIR=$$(hack/kube/build.sh) $(BIN)/python bench/operator_scale.py $(ARGS)

# The chart as an artifact: dist/joyn-scim-<version>.tgz, for `helm push ... oci://<registry>`.
# Its CRD is a copy of crds/ (no link, so the package carries it): refused when they differ.
CHART_DIST ?= dist
chart:  ## package the Helm chart into dist/ (helm from hack/tools)
	@cmp -s crds/joynscimtenants.scim.sevenlakes.com.yaml charts/joyn-scim/files/crd.yaml || { \
		echo "chart: charts/joyn-scim/files/crd.yaml differs from crds/; copy it:" >&2; \
		echo "  cp crds/joynscimtenants.scim.sevenlakes.com.yaml charts/joyn-scim/files/crd.yaml" >&2; \
		exit 1; }
	$$(hack/tools/build.sh)/helm package charts/joyn-scim -d $(CHART_DIST)

client: $(STAMP)  ## the wheel the Joyn FSM application installs: dist/joyn_scim_events-*.whl
	$(BIN)/python -m pip wheel -q --no-deps -w dist client/
	@ls dist/joyn_scim_events-*.whl

kubectl-joyn: $(STAMP)  ## kubectl joyn without a checkout: dist/kubectl-joyn (a zipapp), its krew archive and dist/krew/joyn.yaml, the wheel
	PYTHON=$(BIN)/python packaging/build-kubectl-joyn.sh

clean:
	rm -rf $(VENV) dist joyn-scim-data joyn-scim-demo .pytest_cache .ruff_cache
