# The two commands a new user types: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard proto/creditrisk/v1/*.proto)
GENERATED := creditrisk/v1/.generated-stamp
PACKAGES := records features models audit service settings

.PHONY: all venv proto lint test serve soak clean demo-data

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
		--config-settings editable_mode=compat
	@touch $(STAMP)

venv: $(STAMP)

# Generated protobuf code is built from proto/, never edited (it is git-ignored).
$(GENERATED): $(PROTOS) $(STAMP)
	@mkdir -p creditrisk/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@touch creditrisk/__init__.py creditrisk/v1/__init__.py $(GENERATED)

proto: $(GENERATED)

lint: $(GENERATED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(PACKAGES)

test: lint
	$(VENV)/bin/pytest

# Bootstraps, makes what var/ lacks (demo province, model, features, client keys), serves.
serve: $(GENERATED)
	$(VENV)/bin/credit-risk serve --demo

# Minutes of mixed traffic against a server in another process (makes the demo data in
# var/ first if it lacks it); figures into benchmarks/results/soak.json.
SOAK_MINUTES ?= 5
soak: $(GENERATED)
	$(PY) benchmarks/soak.py --data-dir var --minutes $(SOAK_MINUTES) \
		--out benchmarks/results/soak.json

clean:
	rm -rf creditrisk build *.egg-info .mypy_cache .ruff_cache .pytest_cache
