# MusQraTT entry points. See README.md and docs/testing.md.
#
#   make run           build the appliance image and boot it in QEMU, broker on 127.0.0.1:1883
#                      (NET=kernel, PORT=, ACCEL=kvm: runscripts/appliance.sh; Ctrl-C powers off)
#   make serve         build the release broker and run it natively on 127.0.0.1:1883
#   make image         the appliance image → target/appliance/ (docs/appliance.md)
#   make boot-disk     the image as a bootable UEFI disk image, for a physical machine
#   make test          everything CI runs: fmt check, clippy, cargo tests, Python paho tests,
#                      the musl build's tests, the appliance smoke test
#   make musl          static broker for our own musl target (std built from source)
#   make bench         side-by-side benchmark against Mosquitto (docs/benchmarks.md)
#   make fuzz          each cargo-fuzz target for FUZZ_SECONDS (default 600; docs/testing.md)
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

.PHONY: all serve run test build release fmt fmt-check lint cargo-test pytest deps-run deps-test clean \
        musl test-musl bench image boot-disk test-appliance fuzz test-fuzz

all: build

deps-run:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test

build:
	$(CARGO) build --workspace

# Every release binary carries the lwIP/DPDK path (`[network] stack = "lwip-dpdk"`); plain
# `cargo build` leaves it out so it builds where DPDK is not installed.
release: deps-run
	$(CARGO) build --release -p musqratt --features lwip-dpdk

serve: deps-run release
	exec target/release/musqratt serve --listen 127.0.0.1:1883

# The appliance (docs/appliance.md): the static broker, init, Debian's cloud kernel and the
# modules, booted in QEMU; the data disk target/appliance/data.img keeps the store.
image: deps-run
	scripts/build-image.sh

# The same image as a bootable UEFI disk (GPT: systemd-boot + kernel + initramfs, a data
# partition) to write to a boot medium: docs/deploy-dpdk.md.
boot-disk: image
	scripts/build-boot-disk.sh

run: deps-run image
	exec runscripts/appliance.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

# The components' optional path: tcpip over the nic (DPDK net_ring tests).
COMPONENT_FEATURES := -p musqratt-tcpip --features musqratt-tcpip/nic

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p musqratt --all-targets --features lwip-dpdk -- -D warnings
	$(CARGO) clippy $(COMPONENT_FEATURES) --all-targets -- -D warnings
	$(CARGO) clippy -p musqratt --all-targets --features fault-injection -- -D warnings

# The panic isolation test needs a broker built with the `fault-injection` feature (a debug build,
# for that test only; it runs that binary, not $(MUSQRATT_BIN)).
FAULT_TEST := -p musqratt --features fault-injection --test hardening_runtime_panic

# The release binary carries lwip-dpdk: its namespace test must run, not skip (lwip_netns.rs).
cargo-test: export MUSQRATT_LWIP_REQUIRED := 1
cargo-test: release
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc
	$(CARGO) nextest run $(FAULT_TEST) --no-fail-fast
	$(CARGO) nextest run $(COMPONENT_FEATURES) --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
	$(CARGO) test $(FAULT_TEST) --no-fail-fast
	$(CARGO) test $(COMPONENT_FEATURES) --no-fail-fast
endif

pytest: release
	$(VENV)/bin/python -m pytest -q broker-component/server/tests/paho $(PYTEST_ARGS)

MUSL_BIN := $(CURDIR)/target/x86_64-unknown-musqratt-musl/release/musqratt

# Static musqratt for our own target: std built from source over musl (rust-std-port/README.md).
musl:
	scripts/build-musl.sh

# The broker integration tests a second time, against the musl binary (same tests, other binary).
# The static binary carries the lwIP/DPDK path too: its lwip_netns variant must run, not skip.
test-musl: musl
ifeq ($(NEXTEST),yes)
	MUSQRATT_LWIP_REQUIRED=1 MUSQRATT_BIN=$(MUSL_BIN) $(CARGO) nextest run -p musqratt --no-fail-fast
else
	MUSQRATT_LWIP_REQUIRED=1 MUSQRATT_BIN=$(MUSL_BIN) $(CARGO) test -p musqratt --no-fail-fast
endif
	MUSQRATT_BIN=$(MUSL_BIN) $(VENV)/bin/python -m pytest -q broker-component/server/tests/paho $(PYTEST_ARGS)

# Boots the image on both network paths (DPDK's virtio PMD over uio_pci_generic and over
# vfio-pci, guest kernel sockets) and the UEFI boot disk, twice each;
# one test at a time so the printed boot-to-ready times are not two VMs sharing two cores.
test-appliance: deps-test image boot-disk
ifeq ($(NEXTEST),yes)
	MUSQRATT_APPLIANCE_TEST=1 $(CARGO) nextest run -p musqratt --test appliance --no-fail-fast --no-capture
else
	MUSQRATT_APPLIANCE_TEST=1 $(CARGO) test -p musqratt --test appliance -- --test-threads 1 --nocapture
endif

# Side-by-side benchmark against Debian's Mosquitto; rewrites docs/benchmarks.{md,png}.
bench:
	scripts/bench.sh

# The cargo-fuzz targets of fuzz/ (nightly; scripts/fuzz.sh, docs/testing.md "Fuzzing"): `fuzz`
# runs each for FUZZ_SECONDS, `test-fuzz` each briefly; both fail on a crash.
FUZZ_SECONDS ?= 600
fuzz: deps-test
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

test-fuzz: deps-test
	FUZZ_SECONDS=30 scripts/fuzz.sh

# Order: cheap checks first; the release binary is built once and shared by both test suites.
test: deps-test fmt-check lint cargo-test test-fuzz pytest test-musl test-appliance

clean:
	$(CARGO) clean
