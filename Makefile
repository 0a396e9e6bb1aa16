# inferd: `make demo` serves the iris example; `make test` runs the whole suite.
# Both create (or reuse) .venv with every runtime and build the example models first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLES := iris-onnx iris-predictor iris-tensorflow
SOURCES := src tests examples scripts bench

.PHONY: venv models demo test check lint bench soak clean browser

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

# The dashboard's end-to-end test drives Debian's chromium through playwright (no browser download).
browser:
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

test: models browser
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/mypy

check: models lint browser
	$(BIN)/python -m pytest

bench: models
	$(BIN)/python -m pip install --quiet -e '.[all,dev,bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/batching.py
	$(BIN)/python bench/metrics_cost.py
	$(BIN)/python bench/startup.py

soak: models
	$(BIN)/python scripts/soak.py --duration $${SOAK_SECONDS:-600}

clean:
	rm -rf $(VENV) examples/*/models .pytest_cache .mypy_cache .ruff_cache
