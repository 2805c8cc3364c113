# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYENV_VERSIONS ?= 3.11.7:3.10.13:3.12.1:3.13.0

.PHONY: venv test demo lint types coverage conformance tox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 tests


conformance: $(STAMP)
	$(PY) -m conformance --server-cmd "$(PY) -m conformance.host" --report out/conformance

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check reverb tests examples
	$(VENV)/bin/ruff format --check reverb

types: $(STAMP)
	$(VENV)/bin/mypy --strict reverb

coverage: $(STAMP)
	$(PY) -m coverage run -m pytest tests
	$(PY) -m coverage report

tox: $(STAMP)
	PYENV_VERSION=$(PYENV_VERSIONS) $(VENV)/bin/tox -p 2

clean:
	rm -rf $(VENV) out .tox .mypy_cache .ruff_cache .pytest_cache
