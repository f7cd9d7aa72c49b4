# Kinline: `make run` (stack in the foreground with demo data), `make test`.
PY := .venv/bin/python
CONFIG ?= config/dev.toml

.PHONY: setup up down status run test lint unit e2e clean bench

setup:
	@sh tools/setup.sh

up: setup
	@$(PY) -m tools.stack up --config $(CONFIG)

down:
	@[ -x $(PY) ] && $(PY) -m tools.stack down --config $(CONFIG) || true

status:
	@$(PY) -m tools.stack status --config $(CONFIG)

run: setup
	@$(PY) -m tools.stack run --config $(CONFIG)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

test: setup lint
	$(PY) -m pytest -q tests

unit: setup
	$(PY) -m pytest -q tests/unit tests/component

# Kinline against a bare Asterisk on this box (bench/make_bench.py): one table, also in
# var/bench/latest.md. QUICK=1: one small step per switch (CI: the pipeline works).
bench: setup
	$(PY) -m bench.make_bench $(if $(QUICK),--quick)

clean: down
	rm -rf var .venv
