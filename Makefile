# Every target that runs Python first makes sure .venv matches pyproject.toml (and constraints.txt).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?=
RUN_ARGS ?= $(if $(DURATION),--duration $(DURATION),)

.DEFAULT_GOAL := help
.PHONY: help venv run test test-unit test-integration lint format schemas train-triage eval-triage bench clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create or refresh .venv from pyproject.toml

run: $(STAMP) ## Run the whole pipeline on embedded broker and database (DURATION=30 to stop by itself)
	$(BIN)/parley run $(RUN_ARGS)

test: $(STAMP) ## Run all tests (unit and integration, real broker and database)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## Run the fast unit tests only
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP) ## Run the integration tests only
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP) ## ruff and mypy --strict on services/ and schemas/
	$(BIN)/ruff check services schemas tests
	$(BIN)/ruff format --check services schemas tests
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's formatter and safe fixes
	$(BIN)/ruff check --fix services schemas tests
	$(BIN)/ruff format services schemas tests

schemas: $(STAMP) ## Regenerate JSON Schemas, AsyncAPI and schema history from the models (refuses breaking changes)
	$(BIN)/python -m schemas.generate

train-triage: $(STAMP) ## Retrain the triage classifiers from services/triage/data/train*.jsonl
	$(BIN)/python -m services.triage.train

eval-triage: $(STAMP) ## Score triage on the frozen evaluation set
	$(BIN)/python -m services.triage.evaluate

bench: $(STAMP) ## Benchmarks: triage texts/s, routing and tracker cases/s, planner requests/s, SLA timers (1M armed), CPU per record of faust's stream path against the batch consumer, then the whole pipeline (sustained events/s, latency, CPU and memory; .parley/bench/pipeline.json and .png)
	$(BIN)/python -m services.triage.bench
	$(BIN)/python -m services.routing.bench
	$(BIN)/python -m services.tracker.bench
	$(BIN)/python -m services.planner.bench
	$(BIN)/python -m services.sla.bench
	$(BIN)/python -m services.benchmark.consumers
	$(BIN)/python -m services.benchmark.pipeline

clean: ## Remove .venv and local state under .parley/
	rm -rf $(VENV) .parley .mypy_cache .ruff_cache .pytest_cache
