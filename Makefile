# MusQraTT entry points. See README.md and docs/testing.md.
#
#   make serve | run   build the release broker and run it on 127.0.0.1:1883
#   make test          everything CI runs: fmt check, clippy, cargo tests, Python paho tests
#   make build | fmt | lint

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

CARGO        ?= cargo
VENV         ?= $(CURDIR)/.venv
PYTEST_ARGS  ?=
# The broker binary every test runs (Rust integration tests and Python tests alike).
MUSQRATT_BIN ?= $(CURDIR)/target/release/musqratt
export MUSQRATT_BIN

# cargo-nextest when installed (faster, per-test processes), else plain cargo test.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: all serve run test build release fmt fmt-check lint cargo-test pytest deps-run deps-test clean

all: build

deps-run:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p musqratt

serve: deps-run release
	exec target/release/musqratt serve --listen 127.0.0.1:1883

run: serve

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cargo-test: release
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc
else
	$(CARGO) test --workspace --no-fail-fast
endif

pytest: release
	$(VENV)/bin/python -m pytest -q broker-component/server/tests/paho $(PYTEST_ARGS)

# Order: cheap checks first; the release binary is built once and shared by both test suites.
test: deps-test fmt-check lint cargo-test pytest

clean:
	$(CARGO) clean
