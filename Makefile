# Two commands on a fresh machine:  `make demo` (main job)  and  `make test` (test suite).
# Each creates .venv and installs the pinned dependencies first if they are missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

DEV_WARNING := ignore:Function `dev_command` is superseded:FutureWarning

.PHONY: setup system-deps demo test ui bench peers-venv clean

setup: $(STAMP)

# The test suite also starts Debian's redis-server (Celery broker) and drives Debian's
# chromium (UI tests) and runs initdb/pg_ctl of Debian's postgresql (postgres source tests);
# installed from Debian's registry when missing (root or sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@command -v redis-server >/dev/null && test -x /usr/bin/chromium && \
	  { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server chromium postgresql; }

# torch is installed first and pinned: its CPU wheel is on local disk; unpinned, pip would
# pull a multi-gigabyte CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,celery]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/embeddings-platform materialize

test: setup system-deps
	$(BIN)/ruff check embeddings_platform embeddings_platform_tests benchmarks
	$(BIN)/ruff format --check embeddings_platform embeddings_platform_tests benchmarks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `dagster dev` says on every start that `dg dev` supersedes it; dg is not installed here.
ui: setup $(DAGSTER_HOME)/dagster.yaml
	PYTHONWARNINGS='$(DEV_WARNING)' $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${PORT:-3000}

bench: setup peers-venv
	$(BIN)/python benchmarks/run_all.py

# benchmarks/bench_peers.py runs CocoIndex, LlamaIndex and LangChain beside ours. CocoIndex needs
# rich>=14, which the project's pinned instructor refuses, so the peers get their own venv:
# constraints.txt with the three pins of constraints-peers.txt moved. Next to the repository
# (../peers-venv) so that `git clean` keeps it; run_all.py finds it there.
PEERS_VENV ?= ../peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed
peers-venv: $(PEERS_STAMP)
$(PEERS_STAMP): pyproject.toml constraints.txt constraints-peers.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	grep -v -E '^(rich|instructor|jiter)==' constraints.txt > $(PEERS_VENV)/constraints.txt
	$(PEERS_VENV)/bin/python -m pip install -q -c $(PEERS_VENV)/constraints.txt torch==2.13.0
	$(PEERS_VENV)/bin/python -m pip install -q -c $(PEERS_VENV)/constraints.txt \
	  -c constraints-peers.txt -e '.[peers]'
	touch $(PEERS_STAMP)

clean:
	rm -rf .embeddings_platform .dagster_home
