# The one entry point for humans and CI. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install test lint proto proto-check bench bench-session bench-storage bench-sforg demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	# generated protobuf code lives in gen/; make it importable everywhere in the venv
	$(PY) -c 'import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], "sfvault-paths.pth").write_text("$(CURDIR)\n$(CURDIR)/gen\n")'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

proto: install
	$(PY) -m tools.protogen

proto-check: install
	$(PY) -m tools.protogen --check

test: install proto-check
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services tools $(wildcard sforg)

# Benchmarks print their figures; targets are checked here, never by timed assertions in tests.
bench: install
	$(PY) -m bench

bench-session: install
	$(PY) -m bench session

bench-storage: install
	$(PY) -m bench storage

bench-sforg: install
	$(PY) -m bench sforg

demo: install
	$(PY) -m services.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
