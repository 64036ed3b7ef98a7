# Everything a newcomer needs: `make run` and `make test`. Each target installs what it uses: the system packages
# (devtools/system-deps: installed with apt when run as root on Debian/Ubuntu, otherwise named with the command to
# run) and exactly the Python versions CI tested (requirements/*.lock, with hashes; `make lock` refreshes them).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PIP := $(BIN)/pip install -q --disable-pip-version-check
# Two processes on a two-core machine; PYTEST_WORKERS=0 runs the suite in one process (for debugging).
PYTEST_WORKERS ?= auto

.PHONY: run test lint bench install install-dev migrate seed system-deps system-deps-test lock clean

$(BIN)/activate:
	@PY=$(PY) devtools/system-deps run
	$(PY) -m venv $(VENV)

# The stamp files re-run pip when a lock file changes, and not otherwise.
$(VENV)/.installed: requirements/run.lock pyproject.toml | $(BIN)/activate
	$(PIP) --require-hashes -r requirements/run.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: requirements/dev.lock pyproject.toml | $(BIN)/activate
	$(PIP) --require-hashes -r requirements/dev.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed

# axe-core for the browser tests' accessibility checks, exactly as package-lock.json pins it (npm ci).
AXE := devtools/axe
$(AXE)/node_modules/.installed: $(AXE)/package-lock.json | system-deps-test
	cd $(AXE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

system-deps:
	@PY=$(PY) devtools/system-deps run

system-deps-test:
	@PY=$(PY) devtools/system-deps test

install: system-deps $(VENV)/.installed
install-dev: system-deps-test $(VENV)/.installed-dev

migrate: install
	@$(FLASK) db upgrade

seed: migrate
	@$(FLASK) seed-demo

run: seed
	@$(FLASK) run-demo

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install-dev $(AXE)/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python -m tests.bench

# Refresh the lock files from pyproject.toml (newest versions that fit); commit them with the change that needs them.
lock: $(VENV)/.installed-dev
	$(BIN)/uv pip compile -q pyproject.toml requirements/build.in --generate-hashes --python-version 3.11 \
		--custom-compile-command "make lock" -o requirements/run.lock
	$(BIN)/uv pip compile -q pyproject.toml requirements/build.in --extra dev --generate-hashes --python-version 3.11 \
		--custom-compile-command "make lock" -o requirements/dev.lock

clean:
	rm -rf $(VENV) instance .pytest_cache
