# Lemal verifying nodes: the two commands of the quickstart are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: test lint fmt doc unit e2e parties multihost faults soak flood fuzz release demo down bench

## Run the whole suite: formatting, lints, docs and every test.
test: lint doc unit

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

## Every test, the end-to-end one included: it starts a real 4-validator CometBFT localnet
## (127.0.0.1, ports 21656+) and drives the binaries `lemal` and `lemal-vn`, built first.
## Binaries and tests are built in one invocation, with the features `cargo test` unifies, so
## the dependency tree is compiled once for both.
unit:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --workspace --locked

## The end-to-end test alone.
e2e:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --locked -p lemal-tests --test integration end_to_end

## The parties test alone: a daemon per data provider and computing node on a 4-validator
## localnet (127.0.0.1, ports 25656+ or LEMAL_PARTIES_BASE_PORT); part of `make test`.
parties:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --locked -p lemal-tests --test integration parties -- --nocapture

## The multi-host test alone: `lemal network generate` for 4 hosts, every validator, computing
## node and data provider started from its start script in a network namespace of its own (made
## and removed by the test; needs root and iproute2); part of `make test`.
multihost:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --locked -p lemal-tests --test integration multihost -- --nocapture

## The fault tests alone (crashes, two of four validators down, a damaged store) on their own
## 4-validator localnet (127.0.0.1, ports 23656+ or LEMAL_FAULTS_BASE_PORT); part of `make test`.
faults:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --locked -p lemal-tests --test integration faults -- --nocapture

## The long fault variant: 24 SIGKILLs across the block cycle, then the same stall and damaged
## store (about 2 minutes; not part of `make test`).
soak:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --locked -p lemal-tests --test integration faults::many_crashes -- --ignored --nocapture

## Load while hostile (under a minute; not part of `make test`): the report's query three times
## at rest and three times under a keyless flood of refused 8 MiB / 4 MiB transactions (at most
## 60 s, 127.0.0.1 only, ports 24656+ or LEMAL_FLOOD_BASE_PORT); query time within 1.5x, block
## interval within 2x of rest.
flood:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --locked -p lemal-tests --test integration flood -- --ignored --nocapture

## Long fuzzing (not in `make test`, which runs 96 cases per target): 200 000 cases per target
## of arbitrary bytes, mutated transactions and query paths (dependencies optimised, as in make test).
fuzz:
	LEMAL_FUZZ_CASES=200000 $(CARGO) test --locked -p lemal-tests --test integration fuzz -- --nocapture

release:
	$(CARGO) build --release --bins --locked

fmt:
	$(CARGO) fmt --all

## Benchmarks (criterion) and the proof-cost report.
bench:
	$(CARGO) bench -p lemal-contracts --locked
	$(CARGO) run --release --locked -p lemal-contracts --example proof-costs -- --json

LEMAL := ./target/release/lemal

## From a fresh clone: build, start a 4-validator localnet on 127.0.0.1 (installing CometBFT
## v0.38.25 into .lemal/bin with `go install` when missing), run the report's example query end
## to end and print the decrypted result and the verified skipblock. The localnet keeps running;
## `make down` stops it, and the next `make demo` resumes it from its state (or, when that state
## was written by an incompatible earlier version or runs no party daemons, replaces it with a
## new localnet).
demo: release
	@command -v go >/dev/null || [ -x .lemal/bin/cometbft ] || { \
	  echo "make demo: Go (1.22 or newer) is needed once, to install CometBFT" >&2; exit 1; }
	@if [ -f .lemal/net/localnet.json ] && ! grep -q '"parties": \[$$' .lemal/net/localnet.json; then \
	  echo "demo: the localnet in .lemal runs no party daemons; starting a new one with them" >&2; \
	  $(LEMAL) localnet down; $(LEMAL) localnet up --validators 4; \
	elif [ -f .lemal/net/localnet.json ]; then \
	  echo "demo: reusing the localnet in .lemal (starting what is stopped)" >&2; \
	  $(LEMAL) localnet start || { \
	    echo "demo: the localnet in .lemal cannot be resumed (see above); starting a new one" >&2; \
	    $(LEMAL) localnet down; $(LEMAL) localnet up --validators 4; }; \
	else \
	  $(LEMAL) localnet up --validators 4; \
	fi
	$(LEMAL) run --query "SELECT avg(x) FROM y WHERE z < 321" --noise 2

## Stop the localnet the demo started.
down:
	@if [ -x $(LEMAL) ]; then $(LEMAL) localnet down; else echo "nothing to stop: $(LEMAL) is not built" >&2; fi
