# jobtrail's front door: `make demo` and `make test` on a machine with Python 3.11 or later.
# Each target sets up what it needs first: a virtualenv in .venv, installed from the lock
# (constraints.txt) and reinstalled only when pyproject.toml or the lock changes.
# `make help` lists the targets.

PYTHON ?= $(shell command -v python3.11 || command -v python3 || command -v python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := dev,docs
# Extra arguments for the command a target runs: make test ARGS="tests/unit -x"
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test postgres lint docs docs-serve dist lock upgrade lock-check clean

help: ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "jobtrail needs Python 3.11 or later; this is " + sys.version.split()[0] + " (set PYTHON=/path/to/python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP) ## create .venv and install jobtrail with every pinned dependency

demo: $(STAMP) ## run the whole system on the embedded defaults (ARGS=--keep to look around)
	$(BIN)/jobtrail demo $(ARGS)

test: $(STAMP) postgres ## run the tests (DATABASE_URL when set, else an embedded PostgreSQL)
	$(BIN)/pytest $(ARGS)

postgres: ## start the machine's PostgreSQL if DATABASE_URL points at it and it is down
	@$(BIN)/python scripts/postgres_up.py

lint: $(STAMP) ## ruff, mypy, import-linter and the docstring rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: $(STAMP) ## build the documentation site into site/ (fails on a broken link)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP) ## serve the documentation at http://127.0.0.1:8000 while editing it
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

dist: $(STAMP) ## build the wheel and sdist into dist/ and check them with twine
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist
	$(BIN)/twine check --strict dist/*

lock: $(STAMP) ## re-pin constraints.txt after a change to pyproject.toml (keeps other pins)
	$(BIN)/python scripts/lock.py $(ARGS)

upgrade: $(STAMP) ## move every pin to the newest release allowed (or ARGS="--upgrade-package X")
	$(BIN)/python scripts/lock.py $(or $(ARGS),--upgrade)

lock-check: $(STAMP) ## fail if constraints.txt no longer matches pyproject.toml
	$(BIN)/python scripts/lock.py --check

clean: ## remove .venv, build output and the built site
	rm -rf $(VENV) build dist site
