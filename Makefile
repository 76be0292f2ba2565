# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench clean kube-bins dev-cluster dev-cluster-down kind-up kind-down test-e2e

$(STAMP): pyproject.toml tests/conformance/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	npm ci --prefix tests/conformance --no-audit --no-fund --silent  # newman
	touch $@

demo: $(STAMP) kube-bins  ## the whole system here: control plane, operator, a tenant, its server
	$(BIN)/python hack/demo.py $(ARGS)

serve: $(STAMP)  ## only the SCIM server on http://127.0.0.1:8080/scim/v2 (prints a token once)
	$(BIN)/joyn-scim serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint kube-bins  ## the whole test suite: SCIM, conformance, Kubernetes
	KUBE_BINS_DIR=$$(hack/kube/build.sh) TOOLS_BINS_DIR=$$(hack/tools/build.sh) \
		$(BIN)/pytest $(PYTEST_ARGS)

# Kubernetes from the Go module proxy (versions pinned in hack/kube/go.mod, hack/tools/go.mod),
# cached outside the repository; a no-op when already built.
kube-bins:  ## build or reuse kube-apiserver, kube-controller-manager, kubectl, etcd, helm, kubeconform, kind
	hack/kube/build.sh
	hack/tools/build.sh

dev-cluster: $(STAMP) kube-bins  ## start a local control plane; prints the KUBECONFIG to export
	$(BIN)/python hack/kube/controlplane.py up

dev-cluster-down:  ## stop it and remove its files
	$(BIN)/python hack/kube/controlplane.py down

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

bench: $(STAMP)  ## our server vs scim2-server 0.8.3, same ASGI server (needs wrk)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/bench.py $(ARGS)

clean:
	rm -rf $(VENV) joyn-scim-data .pytest_cache .ruff_cache
