# The two commands of the README: `make run` and `make test`. Each sets up everything it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test venv test-deps browser tryton lint bench clean

$(BIN)/flask: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/flask

venv: $(BIN)/flask

## run: set up and start the portal on its embedded default (SQLite in instance/, Demo ERP, first admin)
run: venv
	$(BIN)/flask --app wsgi init
	$(BIN)/gunicorn --workers 1 --threads 8 --timeout 120 --bind $(HOST):$(PORT) --access-logfile - wsgi:app

$(BIN)/pytest: $(BIN)/flask tests/requirements.txt
	$(BIN)/pip install --quiet -r tests/requirements.txt
	touch $(BIN)/pytest

test-deps: $(BIN)/pytest

## browser: Debian's Chromium for the Playwright tests (installed when missing and we are root)
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "Chromium missing: install Debian's chromium package to run the browser tests"; fi; \
	fi

## tryton: a pinned Tryton server in its own venv under instance/tryton (for the Tryton tests)
tryton: venv
	$(BIN)/flask --app wsgi tryton setup

## test: set up and run the whole test suite (unit, integration, Tryton, browser)
test: test-deps browser tryton
	$(BIN)/pytest

lint: test-deps
	$(BIN)/ruff check .

bench: test-deps
	$(BIN)/python -m bench.sync_bench

clean:
	rm -rf $(VENV) .pytest_cache
