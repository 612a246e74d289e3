# One target each for what people and .ci/run do. Run `make venv` once.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv check test bench bench-quick bench-exposure bench-exposure-quick bench-exposure-analyser bench-log-scale bench-log-scale-quick bench-client demo serve activity-store

venv:
	python3 -m venv $(VENV) && $(BIN)/pip install -q -e '.[dev]'

check:
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

test:
	$(BIN)/python -m pytest

bench:
	$(BIN)/python -m bench.check

bench-quick:
	$(BIN)/python -m bench.check --quick

bench-exposure:
	$(BIN)/python -m bench.exposure

bench-exposure-quick:
	$(BIN)/python -m bench.exposure --quick

bench-exposure-analyser:
	$(BIN)/python -m bench.exposure_analyser

# PostgreSQL on 127.0.0.1:5432; 10 million entries (--quick: 200k)
bench-log-scale:
	$(BIN)/python -m bench.log_scale

bench-log-scale-quick:
	$(BIN)/python -m bench.log_scale --quick

bench-client:
	$(BIN)/python -m bench.client

demo:
	$(BIN)/aclaudit demo

serve:
	$(BIN)/aclaudit serve

# The example store; needs ACTIVITY_STORE_ACLAUDIT_TOKEN (a token with the `check` scope).
activity-store:
	$(BIN)/python -m examples.activity_store
