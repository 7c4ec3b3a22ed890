# The two commands README.md names: `make demo` (a reproduction with its claim table) and
# `make test` (the default test run). Both install what they need first.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SEED ?= 0
BUDGET ?= quick

.PHONY: setup demo test reproduce report bench lint

setup:
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[language,test]"

demo: setup
	$(PYTHON) -m archlab.cli reproduce pointer_net --budget $(BUDGET) --seed $(SEED)

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider

reproduce: setup
	$(PYTHON) -m archlab.cli reproduce --all --budget $(BUDGET) --seed $(SEED)

report:
	$(PYTHON) -m archlab.cli report --runs runs --docs docs --readme README.md

bench: setup
	$(PYTHON) benchmarks/engine_overhead.py

lint:
	ruff format --check src tests benchmarks
	ruff check src tests benchmarks
