# Optivex: `make run` starts the exchange, `make test` runs every test.
# Both create or reuse .venv, install the project with its dev dependencies and
# generate the protobuf code, so a fresh clone with Python 3.11 needs nothing else.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PB_DIR := services/common/pb
ST_PB_DIR := system_tests/pb
PROTOS := $(wildcard proto/*.proto)
VENV_STAMP  := $(VENV)/.stamp-install
PROTO_STAMP := $(PB_DIR)/.stamp-proto
ST_PROTO_STAMP := $(ST_PB_DIR)/.stamp-proto
BOTS ?= 0
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint bench proto clean grade soak setup

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# One run of the generator writes both packages (services/common/pb and the
# grader's own system_tests/pb), so both stamps are one grouped target.
$(PROTO_STAMP) $(ST_PROTO_STAMP) &: $(VENV_STAMP) $(PROTOS) scripts/gen_proto.py
	$(PY) scripts/gen_proto.py
	@touch $(PROTO_STAMP) $(ST_PROTO_STAMP)

setup: $(PROTO_STAMP) $(ST_PROTO_STAMP) ## Create .venv, install, generate protobuf code

proto: $(VENV_STAMP) ## Regenerate the protobuf package from proto/
	$(PY) scripts/gen_proto.py
	@touch $(PROTO_STAMP) $(ST_PROTO_STAMP)

run: setup ## Start the whole exchange on the demo configuration (BOTS=N adds bots)
	$(VENV)/bin/optivex up --with-bots $(BOTS) $(ARGS)

test: setup ## Run the whole test suite
	$(PY) -m pytest -q $(ARGS)

lint: setup ## ruff + mypy --strict on hand-written code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services clients system_tests tests scripts bench

bench: setup ## Benchmarks: writes bench/results/bench.md and bench.json
	$(PY) -m bench $(ARGS)

grade: setup ## Grade an exchange with the black-box system tests
	$(VENV)/bin/optivex grade $(ARGS)

soak: setup ## Long-running tests (soak, full load) excluded from `make test`
	$(PY) -m pytest -q -m slow $(ARGS)

clean: ## Remove the virtual environment, generated code and caches
	rm -rf $(VENV) $(PB_DIR)/*_pb2.py $(PB_DIR)/*_pb2.pyi $(PROTO_STAMP) $(ST_PB_DIR)/*_pb2.py $(ST_PB_DIR)/*_pb2.pyi $(ST_PB_DIR)/*.proto $(ST_PROTO_STAMP) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
