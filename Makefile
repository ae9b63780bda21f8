# Two commands on a fresh machine: `make run` and `make test`. Everything else is a step of those.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test venv migrate lint db-start db-stop clean-var bench test-packages claude-cli

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
# A port already taken is one line and exit 2 before anything else runs.
PORT ?= 8000
run: venv
	@PORT=$(PORT) $(PYTHON) scripts/run_demo.py --check-port
	$(PYTHON) manage.py migrate
	PORT=$(PORT) $(PYTHON) scripts/run_demo.py

# The project is byte-compiled first: the suite starts about a thousand child processes, and
# where PYTHONDONTWRITEBYTECODE is set Python never writes __pycache__ itself, so each of them
# compiled the project's ~100 modules again (0.15 s of CPU per process, a fifth of the suite).
test: venv test-packages claude-cli
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
	$(PYTHON) -m compileall -q -j 0 config drains halacha operations tests scripts manage.py
	$(PYTHON) -m pytest

# Debian packages the tests drive, installed when missing (as root, or with sudo):
# - chromium: the /operations browser test, through Playwright's Python package launched with
#   executable_path; it never downloads a browser of its own;
# - nftables: the many-host tests cut a host's connections without closing them;
# - pgbouncer: the many-host tests run every job through a session-pooling PgBouncer;
# - prometheus: its promtool checks and unit-tests deploy/prometheus/alerts.yml (the server it
#   brings is not started);
# - postgresql: the fault tests (tests/drains/test_db_faults.py, bench/db_faults.py) run a
#   server of their own from its binaries in /usr/lib/postgresql/*/bin (restart it, shut it
#   down, fill its disk); the cluster the package sets up is not used.
TEST_PACKAGES := chromium:/usr/bin/chromium nftables:/usr/sbin/nft pgbouncer:/usr/sbin/pgbouncer \
  prometheus:/usr/bin/promtool
test-packages:
	@missing=""; for entry in $(TEST_PACKAGES); do \
	  test -x "$${entry#*:}" || missing="$$missing $${entry%%:*}"; done; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The real Claude CLI for the claude-cli backend's tests and bench/cli_overhead.py: the version
# pinned in package.json + package-lock.json, from the npm registry only, into node_modules/
# (git-ignored). npm fetches the wrapper and this platform's native binary (an optional
# dependency, also on the registry). The wrapper's postinstall only hard-links that binary over
# its placeholder, so it runs here explicitly rather than as an npm lifecycle script; it
# downloads nothing. npm warns that the package's engines field asks for Node 22: the CLI is a
# native executable, and Node (20 here) only runs that small link step.
CLAUDE_CLI_STAMP := node_modules/.installed-$(shell cksum package-lock.json | cut -d' ' -f1)
$(CLAUDE_CLI_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { \
	  echo "installing Debian's nodejs and npm for the real Claude CLI"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q nodejs npm; }
	npm ci --ignore-scripts --no-audit --no-fund --registry=https://registry.npmjs.org/
	node node_modules/@anthropic-ai/claude-code/install.cjs
	node_modules/.bin/claude --version
	@touch $@

claude-cli: $(CLAUDE_CLI_STAMP)

lint: venv
	$(PYTHON) -m ruff check .

db-start: venv
	$(PYTHON) -m config.embedded_pg start

db-stop: venv
	$(PYTHON) -m config.embedded_pg stop

bench: migrate
	$(PYTHON) bench/schema_gate.py
	$(PYTHON) bench/drain_throughput.py
