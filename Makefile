# Lemal verifying nodes: the two commands of the quickstart are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: test lint fmt doc unit demo down bench

## Run the whole suite: formatting, lints, docs and every test.
test: lint doc unit

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

unit:
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

## Benchmarks (criterion) and the proof-cost report.
bench:
	$(CARGO) bench -p lemal-contracts --locked
	$(CARGO) run --release --locked -p lemal-contracts --example proof-costs -- --json

demo:
	@echo "make demo needs the localnet and the lemal CLI, which are not built yet." >&2
	@exit 1
