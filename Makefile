# The README's two commands call `make demo` and `make test`; .ci/run calls `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all install build-dev demo lint test test-rust test-python test-wheel bench clean

all: lint test

# Build the Rust core (release profile) and install the package in editable mode with the test tools.
install:
	$(PIP) install --quiet "maturin>=1.7,<2"
	$(PIP) install --quiet -e ".[test]"
	cd tests/js && npm install --no-audit --no-fund --silent

build-dev:
	$(PYTHON) -m maturin develop --release

demo:
	$(PIP) install --quiet .
	agentgateway --demo

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(PYTHON) -m ruff check python tests benches
	$(PYTHON) -m ruff format --check python tests benches
	$(PYTHON) -m mypy python/agentgateway
	$(PYTHON) -m mypy.stubtest agentgateway._core

test-rust:
	cargo test --quiet

test-python:
	$(PYTHON) -m pytest

# The prebuilt wheel (manylinux2014, abi3) built from the sdist, installed with no Rust toolchain into a fresh
# venv, then the installed `agentgateway --demo` driven by the openai SDK. One release build: a few minutes.
test-wheel:
	PYTHON=$(PYTHON) bash tests/wheel/smoke.sh

# test-wheel before test-python, so that the last thing printed stays pytest's summary.
test: install lint test-rust test-wheel test-python

# 10 000 mixed requests at concurrency 64 (plain, streamed, aborted; every provider): no 5xx, flat memory.
soak:
	$(PYTHON) -m pytest --soak -m soak -s -q tests/test_soak.py

bench: install
	$(PYTHON) -m pytest benches --benchmark-enable -p no:cacheprovider
	PYTHON=$(PYTHON) bash benches/load.sh

clean:
	cargo clean
	rm -rf build dist .pytest_cache .ruff_cache .mypy_cache python/agentgateway/*.so
