# One environment (.venv) for running, testing and benchmarking the worker.
# `make setup` is idempotent: it reinstalls only when a requirement file changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements/torch.txt requirements/runtime.txt requirements/dev.txt pyproject.toml

.PHONY: setup test run bench lint clean fuzz serve chromium

setup: $(STAMP) chromium

# pip names every file it downloads and its size (no --quiet).
$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "make setup: pip installs requirements/dev.txt into $(VENV). A first install downloads several GB"
	@echo "  and takes about 6.3 GB on disk, most of it torch 2.14.1, which on PyPI is the CUDA 13.0 build:"
	@echo "  torch 1.2 GB, its nvidia-* CUDA libraries 3.2 GB, triton 0.9 GB. pip lists each download below."
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

run: setup
	$(PY) -m gpu_worker.example

bench: setup
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.concurrency
	$(PY) -m benchmarks.operations

fuzz: setup
	$(PY) -m benchmarks.fuzz_campaign

lint: setup
	$(VENV)/bin/hadolint Dockerfile Dockerfile.cuda Dockerfile.cpu

# The local endpoint (RunPod's API, the page, /metrics): HOST=0.0.0.0 needs API_KEY.
HOST ?= 127.0.0.1
PORT ?= 8000
serve: setup
	$(PY) -m gpu_worker serve --host $(HOST) --port $(PORT)

# Debian's chromium, for the page's browser test (tests/test_server_page.py); only when missing.
# Without apt-get (not Debian) it says so and goes on: that test is then skipped.
chromium:
	@test -x /usr/bin/chromium || { \
	  if ! command -v apt-get >/dev/null; then \
	    echo "make setup: no apt-get here; install chromium at /usr/bin/chromium for the browser test"; exit 0; fi; \
	  echo "make setup: installing Debian's chromium with apt-get (about 400 MB with its libraries)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; }

clean:
	rm -rf $(VENV) out
