# The two commands README.md names: `make demo` (a reproduction with its claim table) and
# `make test` (the default test run). Both first install everything into .venv.
# torch 2.14.1 + torchvision 0.29.1 are the pair timm needs (on these machines they come from
# local disk; elsewhere from PyPI).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
SEED ?= 0
BUDGET ?= quick

.PHONY: setup demo test reproduce report bench lint

$(VENV)/bin/python:
	python3 -m venv $(VENV)

setup: $(VENV)/bin/python
	$(PIP) install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q -e ".[all,test]"
	$(PIP) install -q --no-deps "codebook-features==0.1.2"  # parity target; its pins are stale

demo: setup
	$(VENV)/bin/archlab reproduce medusa_med --budget $(BUDGET) --seed $(SEED)

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider

reproduce: setup
	$(VENV)/bin/archlab reproduce --all --budget $(BUDGET) --seed $(SEED)

report:
	$(VENV)/bin/archlab report --runs runs --docs docs --readme README.md --cards

bench: setup
	$(PYTHON) benchmarks/engine_overhead.py
	$(PYTHON) benchmarks/generate_vs_hf.py
	$(PYTHON) benchmarks/vision_vs_timm.py

lint:
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks
