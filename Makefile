# edgebench: `make run` and `make test` do all the set-up they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: help setup data browser run test test-all bench clean
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,tflite]'
	touch $(STAMP)

# the `ray` extra (Hydra's Ray launcher), for the slow Ray test of `make test-all`
$(RAY_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,tflite,ray]'
	touch $(RAY_STAMP)

data: ## install Fashion-MNIST from Debian's dataset-fashion-mnist when it is missing
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist) \
	  || echo "WARNING: could not install dataset-fashion-mnist; set data.root or use data=digits"; \
	fi

browser: ## install Debian's chromium (the MLflow UI test renders the UI headless) when it is missing
	@if ! command -v chromium >/dev/null 2>&1; then \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium) \
	  || echo "WARNING: could not install chromium; the MLflow UI rendering test will be skipped"; \
	fi

setup: $(STAMP) data ## virtual environment in .venv, the package, the data

run: setup ## the default experiment (dense LeNet-300-100 on Fashion-MNIST); extra overrides: make run ARGS="..."
	$(PY) -m edgebench $(ARGS)

# -n auto: one pytest-xdist worker per core (at most 4). --dist worksteal hands each worker a contiguous share of
# the tests (a module's shared fixture is mostly made once) and lets an idle worker take tests from a busy one
# (the end-to-end tests take from 1 s to over a minute: a per-file split leaves one worker finishing alone)
XDIST := -n auto --maxprocesses 4 --dist worksteal

test: setup browser ## the default test suite (no slow tests), in parallel over the cores
	$(PY) -m pytest -m "not slow" $(XDIST) $(ARGS)

test-all: setup $(RAY_STAMP) browser ## every test, slow ones included (installs the ray extra for the Ray test)
	$(PY) -m pytest $(XDIST) $(ARGS)

bench: setup ## harness-overhead benchmark -> results/harness_overhead.json
	$(PY) experiments/harness_overhead.py

clean: ## remove the virtual environment and caches (not results/)
	rm -rf $(VENV) build *.egg-info .pytest_cache
