# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FUZZ_SECONDS ?= 60
PYENV_VERSIONS ?= 3.10.13 3.11.7 3.12.1 3.13.0
# tox finds each interpreter by its path under pyenv (the shims hide versions not selected).
TOX_PYTHONS := $(foreach v,$(PYENV_VERSIONS),$(shell pyenv prefix $(v) 2>/dev/null)/bin/python3)

.PHONY: venv test demo lint types coverage conformance mutate tox load sweep versions fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 tests
	$(MAKE) conformance


# Three runs, each with its report; every run happens, the target fails if any failed.
conformance: $(STAMP)
	@status=0; \
	$(PY) -m conformance --server-cmd "$(PY) -m conformance.host" \
		--report out/conformance || status=1; \
	$(PY) -m conformance --server-cmd "$(PY) -m conformance.host --low-limits" \
		--limits low --cases g10 --report out/conformance-low || status=1; \
	$(PY) -m conformance --server-cmd "$(PY) -m conformance.host --layer aio" \
		--report out/conformance-aio || status=1; \
	exit $$status

# Mutation testing of the server against the conformance suite (slow; not part of `test`).
MUTATE_ARGS ?= --jobs 2
mutate: $(STAMP)
	$(PY) -m conformance.mutate $(MUTATE_ARGS) --report out/mutate

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check reverb tests examples conformance harness fuzz
	$(VENV)/bin/ruff format --check reverb

types: $(STAMP)
	$(VENV)/bin/mypy --strict reverb

coverage: $(STAMP)
	$(PY) -m coverage run -m pytest tests
	$(PY) -m coverage report

tox: $(STAMP)
	$(VENV)/bin/tox -p 2 --discover $(TOX_PYTHONS)

load: $(STAMP)
	$(PY) -m harness load --clients 32 --objects 500 --rate 30 --seconds 10 --json out/load/load.json --report out/load

sweep: $(STAMP)
	$(PY) -m harness sweep --seconds 3 --json out/sweep/sweep.json --report out/sweep

versions: $(STAMP)
	$(PY) -m harness versions --all-pairs --json out/versions.json

fuzz: $(STAMP)
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS) --jobs 2

clean:
	rm -rf $(VENV) out .tox .mypy_cache .ruff_cache .pytest_cache
