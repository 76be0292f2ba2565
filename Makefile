# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)  ## run the SCIM server on http://127.0.0.1:8080/scim/v2 (prints a token once)
	$(BIN)/joyn-scim serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint  ## the whole test suite, conformance included
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## our server vs scim2-server 0.8.3, same ASGI server (needs wrk)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/bench.py $(ARGS)

clean:
	rm -rf $(VENV) joyn-scim-data .pytest_cache .ruff_cache
