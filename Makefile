# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: run test browser azurite dev manifest bench docs clean help

help:
	@echo "make run    set up, generate the demo data and bill it on DuckDB, show the result"
	@echo "make test   set up and run the test suite (starts its own PostgreSQL server; installs"
	@echo "            Chromium and Azurite, with npm, for two tests when it can)"
	@echo "make dev    open the Dagster UI over the same warehouse"
	@echo "make bench  benchmark 1M events (EVENTS=10000000 for more)"
	@echo "make docs   dbt docs generate (catalog and lineage of every model)"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,spark,s3,gcs,azure]"
	touch $(STAMP)

# dagster-dbt reads target/manifest.json when the definitions load: prepare it explicitly.
target/manifest.json: $(STAMP) dbt_project.yml $(shell find models macros seeds tests/dbt -type f 2>/dev/null)
	$(BIN)/dbt parse --project-dir . --profiles-dir . --quiet
	touch target/manifest.json

manifest: target/manifest.json

run: manifest
	$(BIN)/meterline demo

# The suite runs on every core, one test file per worker (files share their module fixtures).
test: manifest browser azurite
	$(BIN)/python -m pytest -n auto --dist loadfile

# The revenue report's test renders it in a headless browser: Debian's Chromium, installed
# here when it is missing and the machine lets us (root with apt); otherwise that test skips,
# except where REQUIRE_BROWSER is set (CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ echo "Installing Debian's chromium for the report's browser test"; \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; } \
		|| echo "No chromium and no way to install it: the browser test will skip"; }

# The Azure events-lake test reads its bucket from Azurite, Microsoft's storage emulator (a
# Node.js package; 3.35 is the last that runs on Node 20): installed here, inside the virtual
# environment, when npm and its registry are there; otherwise that test skips.
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob
# In a clean environment npm's `cafile` setting alone did not get it past this machine's TLS
# proxy (SELF_SIGNED_CERT_IN_CHAIN); the same bundle given to Node (NODE_EXTRA_CA_CERTS) does.
azurite: $(STAMP)
	@test -x $(AZURITE) || { command -v npm >/dev/null 2>&1 && \
		{ echo "Installing Azurite (npm) for the Azure events-lake test"; \
		  ca=$$(npm config get cafile 2>/dev/null); \
		  if [ -z "$${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$$ca" ]; then export NODE_EXTRA_CA_CERTS="$$ca"; fi; \
		  timeout 300 npm install --prefix $(VENV)/azurite --cache $(VENV)/azurite/.npm-cache \
		    --no-audit --no-fund --silent azurite@3.35.0; } \
		|| echo "Azurite not installed (no npm, or its registry unreachable): the Azure events-lake test will skip"; }

dev: manifest
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -m orchestration.definitions

EVENTS ?= 1000000
bench: manifest
	$(BIN)/meterline bench --events $(EVENTS)

docs: manifest
	METERLINE_HOME=$(CURDIR)/data $(BIN)/dbt docs generate --project-dir . --profiles-dir .

clean:
	rm -rf $(VENV) target logs data .dagster_home bench
