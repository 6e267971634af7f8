# edgetag's entry points. The README names these targets; .ci/run calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fault-test lint bench clean system-test pi-test

## demo: the daemon tags the bundled sample photos; prints the events a subscriber receives
demo: $(STAMP)
	$(BIN)/edgetag demo

## test: lint, type-check and run the test suite
test: $(STAMP) lint
	$(BIN)/pytest

## fault-test: SIGKILLs, broker restarts, a full state disk and a hostile client during bursts (also in `make test`)
fault-test: $(STAMP)
	$(BIN)/pytest tests/fault -v

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: print speed and memory figures of edgetag tag and of the daemon (see docs/benchmarks.md)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tag.py
	$(BIN)/python benchmarks/bench_daemon.py

## system-test: install the service with systemd/install.sh in a booted Debian container and check it (root; docs/systemd.md)
system-test: $(STAMP)
	$(BIN)/python -m tests.system

## pi-test: install with systemd/install.sh on emulated 64- and 32-bit Raspberry Pi OS and compare the tags (root; docs/raspberry-pi.md)
pi-test: $(STAMP)
	$(BIN)/python -m tests.pi $(PI_TEST_ARGS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist
