# Everything runs inside a local virtual environment that this Makefile creates:
# nothing relies on what happens to be installed on the machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-deep lint bench bench-store serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint,fast]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py
	@echo "\n== The same from the command line: pith-graph verify examples/registry/*.json"
	$(VENV)/bin/pith-graph verify examples/registry/*.json

test: $(STAMP)
	$(PY) -m pytest -q

test-deep: $(STAMP)
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q property_tests

lint: $(STAMP)
	$(PY) -m ruff check pith_graph tests property_tests benchmarks examples _pith_graph_command.py
	$(PY) -m ruff format --check pith_graph tests property_tests _pith_graph_command.py
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.mirror

# A mirror of the registry's documents on http://127.0.0.1:$(PORT) (docs/mirror.md).
PORT ?= 8080
MIRROR_DB ?= mirror.sqlite
serve: $(STAMP)
	$(VENV)/bin/pith-graph store import --db $(MIRROR_DB) examples/registry/bundle-AG3PAJ22.json
	$(VENV)/bin/pith-graph serve --db $(MIRROR_DB) --port $(PORT)

# Only the event store on PostgreSQL against SQLite (benchmarks/backends.py).
bench-store: $(STAMP)
	$(PY) -m benchmarks.backends

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
