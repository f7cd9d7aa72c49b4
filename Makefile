# Kinline: `make run` (stack in the foreground with demo data), `make test`.
PY := .venv/bin/python
CONFIG ?= config/dev.toml

.PHONY: setup up down status run test lint unit e2e clean

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

clean: down
	rm -rf var .venv
