# parallel-orch: `make run` runs the plans in plans/, `make test` runs the test suite.
# Both set up .venv/ from requirements.lock first; nothing else needs installing by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLANS ?= plans
WORKERS ?=
WORKERS_FLAG := $(if $(WORKERS),-j $(WORKERS),)
PYTEST_ARGS ?=

.PHONY: run test test-fast lint bench fuzz clean install daemon submit examples browser FORCE

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'" >&2; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# An editable install leaves our own modules uncompiled, and where PYTHONDONTWRITEBYTECODE
	@# is set (CI images, these machines) every command would compile them again: compile once,
	@# as installing a wheel does.
	$(BIN)/python -m compileall -q parallel_orch
	@touch $(STAMP)

REPORTS := .parallel-orch
run: $(STAMP)
	$(BIN)/parallel-orch run $(PLANS) $(WORKERS_FLAG) --junit-xml $(REPORTS)/report.xml \
		--markdown $(REPORTS)/report.md --html $(REPORTS)/report.html

# One plan directory or file: `make plans/unit`.
plans/%: $(STAMP) FORCE
	$(BIN)/parallel-orch run $@ $(WORKERS_FLAG)

# Three xdist workers on two cores: the suite waits on its subprocesses (git, tests, Dask
# workers) about half of the time; measured idle, 159 s against 220 s with two.
test: $(STAMP) browser
	$(BIN)/python -m pytest -n 3 $(PYTEST_ARGS)

# Headless Chromium for the HTML report's browser tests: Debian's package, installed when it
# is missing and we are root. Never fails: without it those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the HTML report's browser tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "note: chromium could not be installed; the browser tests will skip"; \
	  else \
	    echo "note: chromium is not installed ('make browser' as root installs it); the browser tests will skip"; \
	  fi; }

# Local loop: skip the slow end-to-end cases (CI runs them).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 3 -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check parallel_orch tests bench
	$(BIN)/ruff format --check parallel_orch tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# Property-based fuzzing of the plan loader and protocol decoder: 10,000 examples each.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_fuzz.py --hypothesis-show-statistics -o timeout=1800

daemon: $(STAMP)
	$(BIN)/parallel-orch daemon $(WORKERS_FLAG)

submit: $(STAMP)
	$(BIN)/parallel-orch submit $(PLANS) --wait --follow

examples: $(STAMP)
	$(BIN)/python examples/make_demo_repo.py

clean:
	rm -rf $(VENV) .parallel-orch .pytest_cache .mypy_cache .ruff_cache .hypothesis

FORCE:
