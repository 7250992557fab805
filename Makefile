# The two commands: `make run` and `make test`. Each does all set-up it needs, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps

.PHONY: run test setup venv engine image web browser proxy postgres lint format bench clean

run: setup
	$(BIN)/execstream serve

test: setup browser proxy postgres
	$(BIN)/pytest -q

setup: venv engine image web

venv: $(STAMPS)/venv
$(STAMPS)/venv: requirements.lock pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

engine:
	@scripts/ensure-docker.sh

image: engine
	@scripts/ensure-image.sh

web: $(STAMPS)/web
$(STAMPS)/web: web/package.json web/package-lock.json
	@mkdir -p $(STAMPS)
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

browser:
	@scripts/ensure-chromium.sh

# Debian's nginx, for the load-balancer tests and bench (run as a process, not a service).
proxy:
	@scripts/ensure-nginx.sh

# PostgreSQL 15's server programs, for the tests on PostgreSQL (started by the tests).
postgres:
	@scripts/ensure-postgres.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server sandbox storage client bench

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv engine image proxy
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(STAMPS) web/node_modules
