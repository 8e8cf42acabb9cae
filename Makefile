# One environment (.venv) for running, testing and benchmarking the worker.
# `make setup` is idempotent: it reinstalls only when a requirement file changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements/torch.txt requirements/runtime.txt requirements/dev.txt pyproject.toml

.PHONY: setup test run bench lint clean fuzz

setup: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

run: setup
	$(PY) -m gpu_worker.example

bench: setup
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.concurrency

fuzz: setup
	$(PY) -m benchmarks.fuzz_campaign

lint: setup
	$(VENV)/bin/hadolint Dockerfile.cuda Dockerfile.cpu

clean:
	rm -rf $(VENV) out
