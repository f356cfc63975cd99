# Every target builds and uses its own virtual environment: nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch, pinned exactly so that no multi-GB CUDA build is ever downloaded.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-cluster bench lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[train,report,cluster,dev,import]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scalinglab study

test: $(STAMP)
	@scripts/ensure_chromium.sh
	@scripts/ensure_postgresql.sh
	$(PY) -m pytest -n 2 -q -m "not cluster"

# the heavy ones: sweeps on submitit and Ray, 8 writers x 500 checkpoints on both stores
test-cluster: $(STAMP)
	@scripts/ensure_postgresql.sh
	$(PY) -m pytest -n 2 -q -m cluster

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-bench .venv-bench312 .venv-bench-tbparse build dist
