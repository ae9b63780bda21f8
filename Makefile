# Two commands on a fresh machine: `make run` and `make test`. Everything else is a step of those.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test venv migrate lint db-start db-stop clean-var bench browser promtool

$(STAMP): requirements.txt
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# Embedded PostgreSQL (var/pgdata) unless DATABASE_URL is set; the schema gate migrates.
migrate: venv
	$(PYTHON) manage.py migrate

# The whole system until Ctrl-C: sample data, a staff user (password printed once), the web
# server on 127.0.0.1:$(PORT) and the scheduler (CRONJOBS). Running it again reuses everything.
PORT ?= 8000
run: migrate
	PORT=$(PORT) $(PYTHON) scripts/run_demo.py

test: venv browser promtool
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

# The /operations browser test drives Debian's Chromium through Playwright's Python package
# (launched with executable_path); it never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

# The alert rules (deploy/prometheus/alerts.yml) are checked with promtool, from Debian's
# prometheus package (installed once when missing; the server it brings is not started).
PROMTOOL := /usr/bin/promtool
promtool:
	@test -x $(PROMTOOL) || { \
	  echo "installing Debian's prometheus package for promtool"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }

lint: venv
	$(PYTHON) -m ruff check .

db-start: venv
	$(PYTHON) -m config.embedded_pg start

db-stop: venv
	$(PYTHON) -m config.embedded_pg stop

bench: migrate
	$(PYTHON) bench/schema_gate.py
	$(PYTHON) bench/drain_throughput.py
