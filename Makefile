# inferd: `make demo` serves the iris example; `make test` runs the whole suite.
# Both create (or reuse) .venv with every runtime and build the example models first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLES := iris-onnx iris-predictor iris-tensorflow
SOURCES := src tests examples scripts bench

.PHONY: venv models demo test check lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

models: $(STAMP)
	@for example in $(EXAMPLES); do $(BIN)/python examples/$$example/build_model.py || exit 1; done

demo: models
	$(BIN)/python scripts/demo.py

test: models
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/mypy

check: models lint
	$(BIN)/python -m pytest

bench: models
	$(BIN)/python -m pip install --quiet -e '.[all,dev,bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) examples/*/models .pytest_cache .mypy_cache .ruff_cache
