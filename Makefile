# Two commands for a newcomer: `make repro` (set up .venv, run the pipeline on the embedded
# default) and `make test` (lint, type-check, tests). Everything else is optional; `make test-fast`
# is the edit-test loop (unit tests only).
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test test-fast lint params clean-outputs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[dev,sweep]'
	@# byte-compile on every core (pip compiles one file at a time: a third of the install), but not the
	@# packages' own test suites (a fifth of the files; nothing imports them); like pip, skip files that
	@# are not Python of this version (torch ships a 3.12-only test file)
	$(BIN)/python -c 'import compileall, re, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0, rx=re.compile(r"/tests?/"))' $(VENV)/lib
	touch $@

# every out-of-date stage on all cores (cnnscope repro: Dask workers, recorded by DVC as dvc repro
# records them; plain `dvc repro` gives the same bytes, one stage at a time)
repro: setup
	cnnscope repro

lint: setup
	ruff check src tests pipelines benchmarks
	ruff format --check src tests pipelines benchmarks
	mypy

test: lint
	pytest -n 2 --dist loadgroup -q  # loadgroup: the tests of one xdist_group share a worker

# The unit tests only: no lint, none of the tests marked `slow` (whole stages and pipelines,
# subprocesses, the browser), which `make test` and CI still run.
test-fast: setup
	pytest -n 2 -q -m "not slow"

# Regenerate params.yaml from conf/ after editing conf/ (dvc exp run does this by itself).
params: setup
	python -m cnnscope.compose
