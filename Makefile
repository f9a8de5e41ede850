# The README's first two commands: `make serve` (a local endpoint on :8080) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8080
STAMP := $(VENV)/.installed
# The locked dependency set (tools/lock/, from pyproject.toml by `make lock`): the venv and the image install it alike.
LOCK := tools/lock/torch.txt tools/lock/runtime.txt tools/lock/test.txt
UV_VERSION := 0.13.9
DEFAULT_MODEL = $$($(PY) -c 'import importlib.util as u; print(u.find_spec("fall_detection").submodule_search_locations[0] + "/models/best.pt")')

.PHONY: install lock serve image test test-run bench bench-threads bench-reliability page-deps

install: $(STAMP)

# Exactly the lock: every package by version and hash, nothing resolved here, and what the lock no longer names removed
# first (two distributions can share files: opencv-python and its headless twin both own cv2/).
$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) freeze --exclude-editable | python3 tools/lock/lock.py strays | xargs -r $(PIP) uninstall -q -y
	$(PIP) install -q --no-deps --require-hashes $(addprefix -r ,$(LOCK))
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve the lock from pyproject.toml (uv, in its own venv), then `make install` to apply it.
lock:
	test -x .venv-uv/bin/uv || { python3 -m venv .venv-uv && .venv-uv/bin/pip install -q uv==$(UV_VERSION); }
	.venv-uv/bin/python tools/lock/lock.py .venv-uv/bin/uv

# MALLOC_ARENA_MAX=2: glibc keeps freed memory in per-thread arenas otherwise (see docs/limits.md).
serve: install
	MALLOC_ARENA_MAX=2 MODEL="$${MODEL:-$(DEFAULT_MODEL)}" PORT=$(PORT) $(PY) -m function

# The image users deploy: ACCELERATOR=none (default, tagged yolo-cloud-run:cpu) | nvidia-l4 | nvidia-rtx-pro-6000,
# IMAGE= to rename; Docker (BuildKit) where an engine answers, else podman (tools/image/build.sh says how).
image:
	ACCELERATOR=$(ACCELERATOR) IMAGE=$(IMAGE) tools/image/build.sh

# Debian's Chromium for the Predict page's browser tests (Playwright drives it; it never downloads a browser).
page-deps:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# All of it timed (installs and the image too: what a fresh clone's CI pays), and pytest names its ten slowest tests,
# so a regression in the suite's time shows at once. The budget: docs/tests.md.
test:
	@started=$$(date +%s); status=0; $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) test-run || status=$$?; \
	elapsed=$$(( $$(date +%s) - started )); \
	printf 'make test: %d min %02d s in all (installs and image included; pytest: the line above)\n' \
		$$((elapsed / 60)) $$((elapsed % 60)); \
	exit $$status

# Two pytest processes side by side: the offline infra checks (Terraform, the scripts, the Dockerfile: CPU work and
# no server) beside everything else, which spends much of its time waiting on the servers and browsers it starts.
OFFLINE_TESTS := tests/test_infra.py tests/test_infra_validate.py tests/test_scripts.py tests/test_dockerfile.py

test-run: install infra-deps page-deps image
	@offline_log=$$(mktemp); \
	$(PY) -m pytest -q -p no:cacheprovider --durations=3 $(OFFLINE_TESTS) > $$offline_log 2>&1 & offline=$$!; \
	$(PY) -m pytest -q -p no:cacheprovider --durations=10 $(addprefix --ignore=,$(OFFLINE_TESTS)); rest=$$?; \
	wait $$offline; offline_status=$$?; \
	echo "--- beside it, the offline infra checks ($(OFFLINE_TESTS)):"; cat $$offline_log; rm -f $$offline_log; \
	test $$rest = 0 && test $$offline_status = 0

bench: install
	$(PY) bench/bench.py
	$(PY) bench/tasks.py
	$(PY) bench/models.py
	$(PY) bench/batch.py
	$(PY) bench/tracking.py
	$(PY) bench/streams.py
	$(PY) bench/slicing.py

# How an exported CPU engine should spend the cores (threads × copies, OpenVINO's pinning): the engine alone.
bench-threads: install
	$(PY) bench/engine_threads.py

# The serving core under attack (refused gigabytes, slow clients, bursts, huge images): figures, not pass/fail.
bench-reliability: install
	$(PY) bench/reliability.py

# deploy / start / stop / status, and the infra checks' tools (infra-deps).
include infra/infra.mk

# make deploy checks MODEL with the venv's Ultralytics before anything is built.
deploy: install

# make batch over a local folder runs the venv's python -m function batch.
batch batch-status: install
