# Every target builds and uses its own virtual environment: nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch, pinned exactly so that no multi-GB CUDA build is ever downloaded.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-cluster fuzz bench lint venv clean

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
	@scripts/ensure_debian_package.sh chromium "the report's browser test" chromium
	@scripts/ensure_debian_package.sh postgresql "the PostgreSQL run-store tests" pg_ctl '/usr/lib/postgresql/*/bin/pg_ctl'
	$(PY) -m pytest -n 2 -q -m "not cluster"

# the heavy ones: sweeps on submitit and Ray, 8 writers x 500 checkpoints on both stores
test-cluster: $(STAMP)
	@scripts/ensure_debian_package.sh postgresql "the PostgreSQL run-store tests" pg_ctl '/usr/lib/postgresql/*/bin/pg_ctl'
	$(PY) -m pytest -n 2 -q -m cluster

# the fuzzer of tests/test_fuzz.py at 10,000 cases (make test runs a few hundred), at random;
# one JSON line per command in fuzz-log.jsonl, summed up at the end
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	rm -f fuzz-log.jsonl
	SCALINGLAB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SCALINGLAB_FUZZ_LOG=fuzz-log.jsonl \
		$(PY) -m pytest -n 2 -q -p no:cacheprovider tests/test_fuzz.py::test_fuzz
	$(PY) -c "import json; r=[json.loads(l) for l in open('fuzz-log.jsonl')]; \
		print('fuzz:', sum(x['cases'] for x in r), 'cases,', sum(x['exit_0'] for x in r), \
		'exit 0,', sum(x['exit_2'] for x in r), 'exit 2 with one line; no traceback, no hang')"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-bench .venv-bench312 .venv-bench-tbparse build dist
