# OptiSync developer entry points. `make up` and `make test` work on a fresh machine: they
# install what they need (venv, Kafka jars, FerretDB build, redis-server) into caches outside
# the clone, so reruns are fast.

SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv install up down status topics schemas test unit lint typecheck bench lock \
        rebuild-projections clean

help:
	@echo "make up        start Kafka, Redis, FerretDB, all services and a demo chain"
	@echo "make down      stop everything 'make up' started"
	@echo "make test      lint, type-check and run the whole test suite"
	@echo "make topics    create/update Kafka topics from schemas/topics.yaml"
	@echo "make schemas   export JSON Schemas of the event contract (refuses breaking changes)"
	@echo "make bench     run the benchmarks; tables under bench/results/"
	@echo "make rebuild-projections  replay the booking projections from the topics"

$(STAMP): requirements.lock
	@echo "[make] creating $(VENV) with $(PY) and installing pinned dependencies"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --progress-bar off -q -r requirements.lock
	@echo "$(CURDIR)" > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/optisync-repo.pth
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

install: venv
	@$(BIN)/python -m deploy.local.infra install

up: venv
	@$(BIN)/python -m deploy.local.stack up

down:
	@$(BIN)/python -m deploy.local.stack down

status:
	@$(BIN)/python -m deploy.local.stack status

topics: venv
	@$(BIN)/python -m optisync_common.topics apply

schemas: venv
	@$(BIN)/python -m schemas.export

lint: venv
	@echo "[make] ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: venv
	@echo "[make] mypy"
	@$(BIN)/mypy .

unit: venv
	@$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

test: lint typecheck
	@echo "[make] pytest"
	@$(BIN)/python -m deploy.local.infra install
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	@$(BIN)/python -m bench.run
	@$(BIN)/python -m bench.notify
	@$(BIN)/python -m bench.pages
	@$(BIN)/python -m bench.waitlist
	@$(BIN)/python -m bench.analytics

# Drops the booking projections (MongoDB bookings, Redis views) and replays them from the
# topics; STORE=<id> limits it to one store. The local booking-projector is stopped for it
# and started again (the rebuild refuses to run beside it).
rebuild-projections: venv
	@$(BIN)/python -m deploy.local.stack rebuild-projections $(if $(STORE),--store $(STORE))

lock:
	@$(PY) -m pip install -q uv && $(PY) -m uv pip compile requirements.in -o requirements.lock --python-version 3.11

clean: down
	rm -rf .run .mypy_cache .ruff_cache .pytest_cache
