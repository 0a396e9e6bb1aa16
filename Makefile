# inferd: `make demo` serves the iris example; `make test` runs the whole suite.
# Both create (or reuse) .venv with every runtime and build the example models first.
# `make test` checks style and types (ruff, mypy) beside the suite, so CI checks what `make check` did.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLES := iris-onnx iris-predictor iris-tensorflow text-generator
MODEL_TARGETS := $(EXAMPLES:%=model-%)
SOURCES := src tests examples scripts bench

# Python caches each module's bytecode on first import, in every process make starts (a
# replica would otherwise compile TensorFlow's sources at each start where the shell sets it).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv models demo test check lint bench soak clean browser constraints $(MODEL_TARGETS)

# Set-up steps run two at a time where nothing orders them: apt installing Chromium beside pip
# filling .venv, and the example models beside each other (TensorFlow's import is most of one).
# Their output may interleave.
MAKEFLAGS += --jobs=2

venv: $(STAMP)

# constraints.txt pins what `make test` was last green with; pyproject.toml keeps ranges for users.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# --no-compile: of the 28,000 .py files installed, the tests import about 6,000; Python
	@# writes their bytecode on first import (the `unexport` above) instead of
	@# pip compiling all of them one at a time (3 min 22 s on 2 cores; compileall: 1 min 25 s).
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[all,dev,cortex]'
	touch $(STAMP)

# Re-pin constraints.txt to what .venv holds now (after `make test` passed with newer packages).
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^inferd' > constraints.txt

models: $(MODEL_TARGETS)

$(MODEL_TARGETS): model-%: $(STAMP)
	$(BIN)/python examples/$*/build_model.py

demo: models
	$(BIN)/python scripts/demo.py

# The dashboard's end-to-end test drives Debian's chromium through playwright (no browser download);
# two tests open a dashboard link as another user with curl, which a slim image lacks (a skip
# fails the run under CI).
browser:
	test -x /usr/bin/chromium && test -x /usr/bin/curl \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium curl)

# Two workers, each test file in one of them (a file's shared servers stay shared): most tests
# wait on replica processes, so two at a time take 13 minutes where one at a time took 17.
# Files go out in collection order, the slowest first (tests/conftest.py, SLOWEST_FILES).
TEST_WORKERS ?= 2

# ruff and mypy run beside the suite, not before it: about a minute of one core, which the
# suite's waits on replicas mostly absorb (a fresh clone: the cores were 93% busy during the
# suite, /proc/stat; the run outside pytest took 1.9 minutes instead of 2.7).
# Their output comes after pytest's; either failing fails `make test`, and an interrupted run
# stops them too.
LINT_LOG := $(VENV)/lint.log

test: models browser
	@($(LINT)) > $(LINT_LOG) 2>&1 & lint=$$!; \
	trap 'pkill -P $$lint 2>/dev/null; kill $$lint 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder; tests=$$?; \
	wait $$lint; linted=$$?; cat $(LINT_LOG); \
	if [ $$linted -ne 0 ]; then echo "make test: style or type checks failed (above)"; fi; \
	[ $$linted -eq 0 ] && [ $$tests -eq 0 ]

LINT := echo "ruff format --check, ruff check, mypy --strict" && $(BIN)/ruff format --check $(SOURCES) \
	&& $(BIN)/ruff check $(SOURCES) && $(BIN)/mypy

lint: $(STAMP)
	@$(LINT)

# Kept for habit: the same steps as `make test`.
check: test

# cost.py measures inferd at BENCH_BASELINE too (empty: skip): main before round two's hot-path work.
BENCH_BASELINE ?= 83f226e

bench: models
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,dev,bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/batching.py
	$(BIN)/python bench/metrics_cost.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/cost.py --doc $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))
	$(BIN)/python bench/memory.py

soak: models
	$(BIN)/python scripts/soak.py --duration $${SOAK_SECONDS:-600}

clean:
	rm -rf $(VENV) examples/*/models .pytest_cache .mypy_cache .ruff_cache
