# hookgate developer entry points. `make run` and `make test` work on a fresh machine
# with only python3 (3.11+) and make: everything else is installed from the lock file.

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
UV := .tools/bin/uv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint typecheck unit lock clean ampeco-catalog browser

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): requirements.lock pyproject.toml | $(UV)
	test -x $(VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(VENV)/bin/python --require-hashes requirements.lock
	$(UV) pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $(STAMP)

## setup: create .venv with the locked dependencies and hookgate itself
setup: $(STAMP)

## run: first start writes ./hookgate.toml (fresh secrets) and the SQLite database, then serves
run: setup
	$(VENV)/bin/hookgate init --if-missing
	$(VENV)/bin/hookgate migrate
	$(VENV)/bin/hookgate serve

## browser: Debian's chromium, which the console's browser tests drive (installed when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium) || \
		echo "chromium not installed: the console's browser tests will be skipped"

## test: lint (with the layering contracts in .importlinter), type-check and the whole test suite
test: setup browser lint typecheck
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy

## ampeco-catalog: regenerate providers/ampeco_catalog.py from AMPECO's OpenAPI copy
## (AMPECO_OPENAPI=contracts/ampeco/openapi-X.Y.Z.json for another version)
ampeco-catalog: setup
	$(VENV)/bin/python -m hookgate.providers.ampeco_gen $(AMPECO_OPENAPI)
	$(VENV)/bin/ruff format --check src/hookgate/providers/ampeco_catalog.py

## lock: re-resolve requirements.lock from pyproject.toml
lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --extra dev --extra bench --extra otlp --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
