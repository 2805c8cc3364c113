# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo needs only pygame-ce (reverb itself is used from the clone via PYTHONPATH): a small
# venv of its own, so `make demo` does not install the development toolchain.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
DEMO_SECONDS ?= 12
FUZZ_SECONDS ?= 60
PYENV_VERSIONS ?= 3.10.13 3.11.7 3.12.1 3.13.0
# tox finds each interpreter by its path under pyenv (the shims hide versions not selected).
TOX_PYTHONS := $(foreach v,$(PYENV_VERSIONS),$(shell pyenv prefix $(v) 2>/dev/null)/bin/python3)

.PHONY: venv test demo arena lint types coverage conformance mutate tox load sweep versions fuzz clean

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

$(DEMO_STAMP):
	@echo "demo: installing pygame-ce into $(DEMO_VENV) (once; the arena needs nothing else)"
	@$(PYTHON) -m venv $(DEMO_VENV)
	@$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'pygame-ce>=2.4'
	@touch $@

# The arena (examples/arena) played by three bots, headless, for DEMO_SECONDS; then a summary
# and the screenshots in out/arena. Without pygame-ce (offline?), the standard-library text demo.
# make demo MONITOR=1 runs the text demo with the web inspector and prints its URL (docs/monitor.md).
demo:
	@if [ -n "$(MONITOR)" ]; then \
	  $(MAKE) --no-print-directory -s $(STAMP) && PYTHONPATH=. $(PY) examples/demo.py --monitor; \
	elif $(MAKE) --no-print-directory -s $(DEMO_STAMP); then \
	  PYTHONPATH=. $(DEMO_VENV)/bin/python examples/arena --headless --bots 3 \
	    --seconds $(DEMO_SECONDS) --shots out/arena; \
	else \
	  echo "demo: pygame-ce could not be installed, so here is the text demo instead"; \
	  PYTHONPATH=. $(PYTHON) examples/demo.py; \
	fi

# Play the arena yourself in a window (WASD/arrows, mouse or space to shoot) against 2 bots.
arena: $(DEMO_STAMP)
	PYTHONPATH=. $(DEMO_VENV)/bin/python examples/arena --bots 2 --seconds 120

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

# PASS only when the tick rate holds (>= 0.95x), freshness p99 <= 100 ms, every update reaches
# every client and every planned call is answered (harness/README.md, "The load verdict").
load: $(STAMP)
	$(PY) -m harness load --clients 32 --objects 500 --rate 30 --seconds 10 --json out/load/load.json --report out/load

sweep: $(STAMP)
	$(PY) -m harness sweep --seconds 3 --json out/sweep/sweep.json --report out/sweep

.PHONY: bench
bench: $(STAMP)
	$(PY) -m harness bench --out out/bench $(BENCH_ARGS)

versions: $(STAMP)
	$(PY) -m harness versions --all-pairs --json out/versions.json

fuzz: $(STAMP)
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS) --jobs 2

clean:
	rm -rf $(VENV) $(DEMO_VENV) out .tox .mypy_cache .ruff_cache .pytest_cache
