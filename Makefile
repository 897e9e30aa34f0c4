# TokenHub — the commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench bench-instructions soak venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

## run: migrate SQLite, seed a demo admin/team/key, serve gateway + portal on http://127.0.0.1:8000
run: venv
	DEBUG=$${DEBUG:-1} $(PY) manage.py serve --host $(HOST) --port $(PORT)

## lint: ruff (style, import order), the layer contract (import-linter), mypy on the typed core
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

## test: the linters, then the whole suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set)
test: lint
	@# (sh is dash here: its -nt is false when the right-hand file is missing, so test that apart)
	@if command -v npm >/dev/null && { [ ! -e tests/node/node_modules/.package-lock.json ] \
		|| [ tests/node/package.json -nt tests/node/node_modules/.package-lock.json ] \
		|| [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; }; then \
		cd tests/node && npm install --no-audit --no-fund --silent; fi
	$(PY) -m pytest

## bench: gateway overhead against the simulator (direct vs through the gateway)
bench: venv
	$(PY) -m bench.gateway

## bench-instructions: instructions per call of one gateway process under valgrind (noise-free A/B;
##       BENCH_ARGS="--checkout ../old" compares another checkout; needs valgrind and DATABASE_URL)
bench-instructions: venv
	$(PY) -m bench.instructions $(BENCH_ARGS)

## soak: 2 gateway workers, PostgreSQL, Redis, Celery at a fixed rate for SOAK_MINUTES (default 10):
##       RSS/FDs per process, p50/p99 per minute, ledger reconciliation (needs DATABASE_URL and REDIS_URL)
soak: venv
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) var db.sqlite3
