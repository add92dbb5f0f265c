# Intraday trader: developer entry points (GNU make).
#   make demo   create .venv if needed, install pinned deps, run the sample trading day through
#               Dagster (premarket scan, live session in replay mode, daily report)
#   make ui     the Dagster UI (dagster dev) on the local instance, http://127.0.0.1:3000
#   make test   same setup, then the whole test suite

PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
BENCHES := $(sort $(wildcard bench/*.py))

.PHONY: demo ui test bench lock clean

# (Re)install whenever the project metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(PY) -m trading_pipeline.demo

# dagster dev (webserver + daemon) on the local SQLite instance under var/dagster.
ui: $(STAMP)
	mkdir -p var/dagster && cp dagster.local.yaml var/dagster/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/var/dagster $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# pytest's exit status is the recipe's status: failures (1) and "no tests collected" (5) fail make.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@set -e; for f in $(BENCHES); do echo "== $$f"; $(PY) $$f; done

# Exact pins of what is installed in .venv. To update a dependency:
#   $(PY) -m pip install -U <name>  (or edit pyproject.toml and reinstall), then `make lock`.
lock:
	test -x $(PY) || { echo "no $(VENV); run make test first" >&2; exit 1; }
	$(PY) -m pip freeze --exclude-editable > constraints.txt.freeze
	{ echo "# Exact pins of every package installed in .venv (the project itself excluded)."; \
	  echo "# Regenerate with \`make lock\` (pip freeze --exclude-editable); do not edit by hand."; \
	  echo "# Used by the Makefile as: pip install -c constraints.txt -e '.[dev]'"; \
	  grep -viE "^intraday[-_]trader([ =@]|$$)" constraints.txt.freeze; \
	} > constraints.txt.tmp
	rm -f constraints.txt.freeze
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) var
