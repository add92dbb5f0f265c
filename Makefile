# Intraday trader: developer entry points (GNU make).
#   make demo   create .venv if needed, install pinned deps, run the sample trading day through
#               Dagster (premarket scan, live session in replay mode, daily report)
#   make ui     the Dagster UI (dagster dev) on the local instance, http://127.0.0.1:3000
#   make dashboard   the trader's web dashboard (Streamlit), http://127.0.0.1:8501
#   make test   same setup, then the whole test suite (and then `make test-legacy`)
#   make test-legacy   the legacy_sdk tests under the archived SDK generations, in .venv-legacy

PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
BENCHES := $(sort $(wildcard bench/*.py))

.PHONY: demo ui dashboard test bench lock clean

# (Re)install whenever the project metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[dev,dashboard]'
	touch $@

demo: $(STAMP)
	$(PY) -m trading_pipeline.demo

# dagster dev (webserver + daemon) on the local SQLite instance under var/dagster.
ui: $(STAMP)
	mkdir -p var/dagster && cp dagster.local.yaml var/dagster/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/var/dagster $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The live day and past sessions in the browser; env: TRADING_RUNNER_URL, TRADING_JOURNAL_URL,
# TRADING_CONTROL_TOKEN (see dashboard/settings.py).
dashboard: $(STAMP)
	$(VENV)/bin/streamlit run dashboard/app.py --server.port 8501 --server.address 127.0.0.1 \
	    --server.headless true --browser.gatherUsageStats false

# pytest's exit status is the recipe's status: failures (1) and "no tests collected" (5) fail make.
# TEST_WORKERS pytest-xdist workers (most tests wait on paced feeds and daemons, not the CPU), a
# file's tests on one worker; the PostgreSQL files one at a time (tests/conftest.py).
# TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-legacy

# The legacy SDK generation (ib_insync, polygon-api-client) in its own virtualenv: it can never
# share .venv with ib_async/massive (both SDK generations install a top-level `eventkit`). The
# project is installed without its dependencies (they name the current SDKs) plus LEGACY_DEPS,
# all pinned by constraints-legacy.txt. Only test files that mention `legacy_sdk` are collected
# (the others import current SDKs), and only tests marked legacy_sdk run. Reused when present.
LEGACY_VENV  := .venv-legacy
LEGACY_PY    := $(LEGACY_VENV)/bin/python
LEGACY_STAMP := $(LEGACY_VENV)/.installed
LEGACY_DEPS  := ib_insync polygon-api-client pydantic PyYAML msgspec orjson SQLAlchemy \
                exchange_calendars pandas pyarrow pytest pytest-timeout
LEGACY_TESTS  = $(shell grep -rlE --include='test_*.py' 'legacy_sdk' tests | sort)

$(LEGACY_STAMP): pyproject.toml constraints-legacy.txt
	test -x $(LEGACY_PY) || $(PYTHON3) -m venv $(LEGACY_VENV)
	$(LEGACY_PY) -m pip install -q --upgrade pip
	$(LEGACY_PY) -m pip install -q -c constraints-legacy.txt $(LEGACY_DEPS)
	$(LEGACY_PY) -m pip install -q --no-deps -e .
	@! $(LEGACY_PY) -c "import ib_async" 2>/dev/null || { echo "ib_async must not be in $(LEGACY_VENV)" >&2; exit 1; }
	touch $@

test-legacy: $(LEGACY_STAMP)
	@test -n "$(LEGACY_TESTS)" || { echo "no legacy_sdk tests found" >&2; exit 1; }
	LIVE_RUNNER_IB_LIBRARY=ib_insync $(LEGACY_PY) -m pytest -m legacy_sdk $(LEGACY_TESTS) $(LEGACY_PYTEST_ARGS)

bench: $(STAMP)
	@set -e; for f in $(BENCHES); do echo "== $$f"; $(PY) $$f; done

# Exact pins of what is installed in .venv. To update a dependency:
#   $(PY) -m pip install -U <name>  (or edit pyproject.toml and reinstall), then `make lock`.
lock:
	test -x $(PY) || { echo "no $(VENV); run make test first" >&2; exit 1; }
	$(PY) -m pip freeze --exclude-editable > constraints.txt.freeze
	{ echo "# Exact pins of every package installed in .venv (the project itself excluded)."; \
	  echo "# Regenerate with \`make lock\` (pip freeze --exclude-editable); do not edit by hand."; \
	  echo "# Used by the Makefile as: pip install -c constraints.txt -e '.[dev,dashboard]'"; \
	  grep -viE "^intraday[-_]trader([ =@]|$$)" constraints.txt.freeze; \
	} > constraints.txt.tmp
	rm -f constraints.txt.freeze
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) $(LEGACY_VENV) var
