# The one entry point for humans and CI. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install tools test test-long lint proto proto-check bench bench-session bench-storage bench-sforg demo images clean

install: $(STAMP) tools

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	# generated protobuf code lives in gen/; make it importable everywhere in the venv
	$(PY) -c 'import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], "sfvault-paths.pth").write_text("$(CURDIR)\n$(CURDIR)/gen\n")'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# checkov (the k8s policy check in tests/k8s) pins boto3 & co. differently from the app: its own venv.
TOOLS_STAMP := $(VENV)/tools/.installed-checkov-3.3.30
tools: $(TOOLS_STAMP)
$(TOOLS_STAMP):
	test -x $(VENV)/tools/bin/python || python3 -m venv $(VENV)/tools
	$(VENV)/tools/bin/python -m pip install -q --disable-pip-version-check checkov==3.3.30
	touch $@

# The four service images (needs a Docker engine; see k8s/README.md).
IMAGE_TAG ?= dev
images:
	for s in discovery jobrunner session storage; do \
		docker build -f services/$$s/Dockerfile -t sfvault/$$s:$(IMAGE_TAG) . || exit 1; done

proto: install
	$(PY) -m tools.protogen

proto-check: install
	$(PY) -m tools.protogen --check

test: install proto-check
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The long outage runs: many chaos trials (each a backup with kills and restarts, its own seed) and the NATS
# cluster test; CHAOS_TRIALS sets how many, SFVAULT_CHAOS_SEED the first seed (to replay a failing one).
CHAOS_TRIALS ?= 20
test-long: install
	SFVAULT_CHAOS_TRIALS=$(CHAOS_TRIALS) $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_chaos.py \
		tests/e2e/test_nats_cluster.py $(PYTEST_ARGS)

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
	$(PY) -m services.cli.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
