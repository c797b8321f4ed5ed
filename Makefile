# The two commands a new user runs: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spineassist-setup
DEMO_OUT ?= demo-output
export YOLO_OFFLINE := 1
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib

.PHONY: setup demo test test-slow benchmark clean

setup: $(STAMP) ## idempotent: a second run only checks the stamp

$(STAMP): requirements-dev.txt requirements-web.txt Resources/requirements.txt Resources/constraints.txt pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c Resources/constraints.txt
	$(PY) -m pip install --quiet --no-deps slicer-layer-dm==2.0.0 -c Resources/constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@# the package's bytecode, as a wheel install compiles it: a fresh `spineassist assess` otherwise compiles
	@# every module it imports where PYTHONDONTWRITEBYTECODE is set, as on the project's machines
	$(PY) -m compileall -q SpineAssistLib
	@bash .ci/system-packages.sh
	$(VENV)/bin/spineassist prepare
	@touch $(STAMP)
	@echo "SpineAssist is set up in $(VENV) (spineassist $$($(VENV)/bin/spineassist --version | cut -d' ' -f2))."

demo: setup ## make a synthetic study, assess it, write every output
	$(PY) -m SpineAssistLib.cli.demo --out $(DEMO_OUT)

test: setup ## the whole default suite (slow tests excluded; see test-slow)
	$(PY) -m pytest -m "not slow" Testing

test-slow: setup ## the slow tests too (training, many studies)
	$(PY) -m pytest Testing

benchmark: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .hypothesis .cache

.PHONY: models
models: setup ## retrain every bundled model as its shipped weights were made (the manifest's recorded commands, 5.5 h as recorded on this 2-core CPU), then re-score them
	$(VENV)/bin/spineassist train --replay --scratch .cache/replay --device auto
	$(VENV)/bin/spineassist evaluate --out .cache/evaluation --cache .cache/phantom-cache --update-manifest
